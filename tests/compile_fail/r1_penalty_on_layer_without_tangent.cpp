// Rejected: an R1 penalty on a critic with dropout, a layer without a
// tangent pass, so the critic cannot be differentiated twice.
// Twin: r1_penalty_on_twice_differentiable_critic.cpp.
#include <advgan/advgan.hpp>

using namespace advgan;

using critic = sequential<input<1, 8, 8>, conv2d<4, 4, 2, 1>, leaky_relu<>, dropout<>, flatten,
                          dense<1>>;

double penalty(model<critic, cpu<float>>& d, const cpu<float>::tensor& points) {
  return r1_penalty<>::at(d, points).value;
}
