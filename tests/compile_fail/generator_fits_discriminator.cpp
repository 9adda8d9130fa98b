// The twin of generator_does_not_fit_discriminator.cpp with matching shapes.
#include <advgan/advgan.hpp>

using namespace advgan;

using generator = sequential<input<16>, dense<1024>, reshape<1, 32, 32>, tanh_activation>;
using discriminator = sequential<input<1, 32, 32>, flatten, dense<1>>;

int main() { return gan_pair<generator, discriminator>::fits ? 0 : 1; }
