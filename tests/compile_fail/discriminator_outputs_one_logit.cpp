// The twin of discriminator_outputs_many_values.cpp, ending in one logit.
#include <advgan/advgan.hpp>

using namespace advgan;

using generator = sequential<input<16>, dense<64>, reshape<1, 8, 8>, tanh_activation>;
using discriminator = sequential<input<1, 8, 8>, flatten, dense<1>>;

int main() { return gan_pair<generator, discriminator>::fits ? 0 : 1; }
