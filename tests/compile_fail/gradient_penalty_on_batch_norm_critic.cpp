// Rejected: a gradient penalty on a critic with batch norm, which makes each
// sample's input gradient depend on the rest of the batch.
// Twin: gradient_penalty_on_layer_norm_critic.cpp.
#include <advgan/advgan.hpp>

using namespace advgan;

using critic = sequential<input<1, 8, 8>, conv2d<4, 4, 2, 1>, batch_norm, leaky_relu<>, flatten,
                          dense<1>>;

double penalty(model<critic, cpu<float>>& d, const cpu<float>::tensor& points) {
  return gradient_penalty<>::at(d, points).value;
}
