// Accepted twin of gradient_penalty_on_batch_norm_critic.cpp: layer_norm in
// place of batch_norm.
#include <advgan/advgan.hpp>

using namespace advgan;

using critic = sequential<input<1, 8, 8>, conv2d<4, 4, 2, 1>, layer_norm, leaky_relu<>, flatten,
                          dense<1>>;

double penalty(model<critic, cpu<float>>& d, const cpu<float>::tensor& points) {
  return gradient_penalty<>::at(d, points).value;
}
