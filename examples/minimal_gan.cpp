// The smallest complete advgan program: a DCGAN defined as types, trained
// for 200 steps on Fashion-MNIST, then a grid of samples. The README shows
// this file.
#include <advgan/advgan.hpp>

using namespace advgan;

using generator = sequential<input<64, 1, 1>,                                             //
                             conv_transpose2d<128, 4, 1, 0, 0, false>, batch_norm, relu,  // 4x4
                             conv_transpose2d<64, 4, 2, 1, 0, false>, batch_norm, relu,   // 8x8
                             conv_transpose2d<32, 4, 2, 1, 0, false>, batch_norm, relu,   // 16x16
                             conv_transpose2d<1, 4, 2, 1, 0, false>, tanh_activation>;    // 32x32

using discriminator = sequential<input<1, 32, 32>,                                       //
                                 conv2d<32, 4, 2, 1>, leaky_relu<>,                      // 16x16
                                 conv2d<64, 4, 2, 1, false>, batch_norm, leaky_relu<>,   // 8x8
                                 conv2d<128, 4, 2, 1, false>, batch_norm, leaky_relu<>,  // 4x4
                                 conv2d<1, 4, 1, 0>, flatten>;                           // 1 logit

int main() {
  const auto images = data::fashion_mnist(data::split::train);
  data::batcher<float> batches(images, 64, /*seed=*/1, {.pad_to = 32});
  gan_trainer<generator, discriminator, non_saturating, cpu<float>> trainer;

  cpu<float>::tensor real;
  cpu<float>::resize(real, 64, 1, 32, 32);
  std::vector<std::int64_t> labels(64);
  for (int step = 0; step < 200; ++step) {
    if (!batches.next({real.data(), real.size()}, labels)) continue;  // a new epoch begins
    const step_record record = trainer.step(real);
    if (step % 50 == 0)
      std::printf("step %d: D %.3f G %.3f\n", step, record.discriminator_loss,
                  record.generator_loss);
  }
  cpu<float>::tensor samples;
  trainer.sample_fixed(samples);
  io::write_png_grid<float>("minimal_gan.png", {samples.data(), samples.size()}, 64, 1, 32, 32);
}
