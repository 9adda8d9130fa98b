// Rejected: a gradient penalty on a critic with minibatch_discrimination,
// whose L1 distances have no second derivative and which mixes the samples
// of the batch.
// Twin: gradient_penalty_on_critic_without_minibatch_discrimination.cpp.
#include <advgan/advgan.hpp>

using namespace advgan;

using critic = sequential<input<1, 4, 4>, flatten, dense<6>, leaky_relu<>,
                          minibatch_discrimination<3, 2>, dense<1>>;

double penalty(model<critic, cpu<float>>& d, const cpu<float>::tensor& points) {
  return gradient_penalty<>::at(d, points).value;
}
