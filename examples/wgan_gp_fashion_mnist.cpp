// Trains a WGAN-GP on Fashion-MNIST on the CPU.
//
// The same data, generator, outputs and options as dcgan_fashion_mnist
// (training_run.hpp), with the WGAN-GP recipe of Gulrajani et al. (2017).
// The critic has layer norm in place of batch norm, which would make each
// sample's input gradient depend on the batch. The loss is the Wasserstein
// objective plus a gradient penalty with lambda 10 at random interpolates of
// real and fake images. Five critic updates come before each generator
// update, and both networks use Adam with lr 1e-4 and betas (0, 0.9).
//
// The defaults train on all 60,000 images for 6 epochs (5,622 critic steps,
// 1,124 generator updates) or 480 seconds of wall time, whichever comes
// first, and score each epoch. A WGAN-GP critic step costs about three times
// a DCGAN discriminator step, because the penalty adds a forward pass, a
// backward pass, and a tangent pass and its backward at the interpolates.
//
// Run with --help for the options.

#include <cstdio>     // std::printf, std::fprintf, std::snprintf
#include <cstdlib>    // std::exit
#include <exception>  // std::exception
#include <memory>     // std::make_unique
#include <string>     // std::string

#include <nlohmann/json.hpp>

#include <advgan/advgan.hpp>

#include "dcgan_models.hpp"
#include "training_run.hpp"

namespace {

using namespace advgan;

/// The critic: the DCGAN discriminator with layer_norm over (C, H, W) in
/// place of batch_norm, ending in one score per sample.
template <std::size_t Width>
using critic = sequential<input<1, 32, 32>,                                      //
                          conv2d<Width, 4, 2, 1>, leaky_relu<>,                  // 16x16
                          conv2d<2 * Width, 4, 2, 1>, layer_norm, leaky_relu<>,  // 8x8
                          conv2d<4 * Width, 4, 2, 1>, layer_norm, leaky_relu<>,  // 4x4
                          conv2d<1, 4, 1, 0>, flatten>;                          // 1

struct options {
  training_run::options common;
  std::size_t n_critic = 5;
};

options parse_options(int argc, char** argv) {
  options parsed;
  parsed.common.epochs = 6;
  parsed.common.lr = 1e-4;
  parsed.common.out = "out_wgan_gp";
  // Keeps the default run, with its end-of-epoch metrics, within 10 minutes
  // of wall time on two cores.
  parsed.common.max_seconds = 480;
  const std::string usage = "usage: wgan_gp_fashion_mnist [options]\n" +
                            training_run::usage(parsed.common) +
                            "  --n-critic N     critic updates per generator update (default 5)\n";
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::printf("%s", usage.c_str());
      std::exit(0);
    }
    if (training_run::parse_switch(parsed.common, flag)) continue;
    if (i + 1 >= argc) throw argument_error(detail::concat(flag, ": missing value\n", usage));
    const std::string value = argv[++i];
    if (flag == "--n-critic")
      parsed.n_critic = command_line::parse_unsigned(flag, value);
    else if (!training_run::parse_value(parsed.common, flag, value))
      throw argument_error(detail::concat("unknown option ", flag, "\n", usage));
  }
  training_run::validate(parsed.common);
  if (parsed.n_critic == 0) throw argument_error("--n-critic: must be at least 1, got 0");
  return parsed;
}

/// Returns the penalty, the critic's input-gradient norm (which WGAN-GP
/// drives towards 1) and the Wasserstein estimate, for the log.
nlohmann::json penalty_fields(const step_record& record) {
  return {{"gradient_penalty", record.penalty},
          {"critic_gradient_norm", record.penalty_gradient_norm},
          {"wasserstein_estimate", -record.discriminator_loss}};
}

/// Returns the penalty and the gradient norm for the progress line.
std::string penalty_text(const step_record& record) {
  char text[64];
  std::snprintf(text, sizeof text, " GP %.4f |grad| %.3f", record.penalty,
                record.penalty_gradient_norm);
  return text;
}

template <std::size_t GeneratorWidth, std::size_t CriticWidth>
void run(const options& opts) {
  set_threads(opts.common.threads);
  trainer_options settings;
  settings.seed = opts.common.seed;
  settings.n_critic = opts.n_critic;
  settings.generator_optimizer = {opts.common.lr, 0.0, 0.9};
  settings.discriminator_optimizer = {opts.common.lr, 0.0, 0.9};
  using trainer_type = gan_trainer<dcgan::generator<GeneratorWidth>, critic<CriticWidth>,
                                   wasserstein, cpu<float>, gradient_penalty<>>;
  auto trainer = std::make_unique<trainer_type>(settings);
  training_run::train(opts.common, *trainer, "critic steps", penalty_fields, penalty_text);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const options opts = parse_options(argc, argv);
    if (opts.common.width == "reference")
      run<dcgan::reference_width, 64>(opts);
    else
      run<dcgan::small_width, dcgan::small_width>(opts);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "wgan_gp_fashion_mnist: %s\n", e.what());
    return 1;
  }
  return 0;
}
