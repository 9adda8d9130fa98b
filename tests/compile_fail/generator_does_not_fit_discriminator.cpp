// A generator of 1x28x28 images paired with a discriminator of 1x32x32
// images: gan_pair must reject it and show both shapes.
#include <advgan/advgan.hpp>

using namespace advgan;

using generator = sequential<input<16>, dense<784>, reshape<1, 28, 28>, tanh_activation>;
using discriminator = sequential<input<1, 32, 32>, flatten, dense<1>>;

int main() { return gan_pair<generator, discriminator>::fits ? 0 : 1; }
