// Accepted twin of gradient_penalty_on_minibatch_discrimination_critic.cpp:
// the critic without minibatch_discrimination.
#include <advgan/advgan.hpp>

using namespace advgan;

using critic = sequential<input<1, 4, 4>, flatten, dense<6>, leaky_relu<>, dense<1>>;

double penalty(model<critic, cpu<float>>& d, const cpu<float>::tensor& points) {
  return gradient_penalty<>::at(d, points).value;
}
