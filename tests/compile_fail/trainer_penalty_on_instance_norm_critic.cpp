// Accepted twin of trainer_penalty_on_batch_norm_critic.cpp: instance_norm
// in place of batch_norm.
#include <advgan/advgan.hpp>

using namespace advgan;

using generator = sequential<input<4>, dense<16>, reshape<1, 4, 4>, tanh_activation>;
using critic = sequential<input<1, 4, 4>, conv2d<2, 3>, instance_norm, leaky_relu<>, flatten,
                          dense<1>>;

int main() {
  gan_trainer<generator, critic, wasserstein, cpu<float>, gradient_penalty<>> trainer;
  return trainer.iteration() == 0 ? 0 : 1;
}
