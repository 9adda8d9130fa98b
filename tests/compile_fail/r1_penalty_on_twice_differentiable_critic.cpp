// Accepted twin of r1_penalty_on_layer_without_tangent.cpp: the critic
// without dropout.
#include <advgan/advgan.hpp>

using namespace advgan;

using critic = sequential<input<1, 8, 8>, conv2d<4, 4, 2, 1>, leaky_relu<>, flatten, dense<1>>;

double penalty(model<critic, cpu<float>>& d, const cpu<float>::tensor& points) {
  return r1_penalty<>::at(d, points).value;
}
