// A discriminator that ends in 4 values per sample instead of one logit.
#include <advgan/advgan.hpp>

using namespace advgan;

using generator = sequential<input<16>, dense<64>, reshape<1, 8, 8>, tanh_activation>;
using discriminator = sequential<input<1, 8, 8>, flatten, dense<4>>;

int main() { return gan_pair<generator, discriminator>::fits ? 0 : 1; }
