// Rejected: weight clipping on a critic with spectral normalization; both
// bound the critic's Lipschitz constant and clipping fights the power
// iteration. Twin: weight_clipping_without_spectral_norm.cpp.
#include <advgan/advgan.hpp>

using namespace advgan;

using generator = sequential<input<4>, dense<16>, reshape<1, 4, 4>, tanh_activation>;
using critic = sequential<input<1, 4, 4>, spectral_norm<conv2d<2, 3>>, leaky_relu<>, flatten,
                          dense<1>>;

int main() {
  gan_trainer<generator, critic, wasserstein, cpu<float>, weight_clipping<>> trainer;
  return trainer.iteration() == 0 ? 0 : 1;
}
