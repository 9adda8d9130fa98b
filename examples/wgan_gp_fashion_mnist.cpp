// Trains a WGAN-GP on Fashion-MNIST on the CPU.
//
// The same data, generator, outputs and options as dcgan_fashion_mnist, with
// the WGAN-GP recipe of Gulrajani et al. (2017). The critic has layer norm in
// place of batch norm, which would make each sample's input gradient depend
// on the batch. The loss is the Wasserstein objective plus a gradient
// penalty with lambda 10 at random interpolates of real and fake images.
// Five critic updates come before each generator update, and both networks
// use Adam with lr 1e-4 and betas (0, 0.9). Each epoch writes a grid of samples from a fixed noise
// batch and a checkpoint to --out; the end of the run writes the generator
// alone. --resume continues from the checkpoint in --out.
//
// The defaults train on the first 30,000 images for 2 epochs: 936 critic
// steps and 187 generator updates. A critic step of 64 images took about
// 0.16 s of CPU time on one thread of the shared two-core machine this was
// written on (measured with /usr/bin/time), so the run needs about 150 s of
// CPU time. A WGAN-GP critic step costs about three times a DCGAN
// discriminator step, because the penalty adds a forward pass, a backward
// pass, and a tangent pass and its backward at the interpolates.
//
// Run with --help for the options.

#include <unistd.h>  // isatty

#include <cstdio>      // std::printf, std::fflush, std::snprintf
#include <cstdlib>     // std::exit
#include <exception>   // std::exception
#include <filesystem>  // std::filesystem::path
#include <fstream>     // std::ofstream
#include <memory>      // std::make_unique
#include <string>      // std::string
#include <vector>      // std::vector

#include <nlohmann/json.hpp>

#include <advgan/advgan.hpp>

#include "dcgan_models.hpp"

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
  std::size_t epochs = 2;
  std::size_t batch_size = 64;
  double lr = 1e-4;
  std::size_t n_critic = 5;
  std::string out = "out_wgan_gp";
  bool resume = false;
  int threads = 2;
  std::uint64_t seed = 1;
  std::string data = "/usr/share/datasets/fashion-mnist";
  std::string width = "small";
  std::size_t limit = 30000;  // 0 = the whole training set
};

constexpr const char* usage =
    "usage: wgan_gp_fashion_mnist [options]\n"
    "  --epochs N       passes over the training images (default 2)\n"
    "  --batch-size N   images per batch (default 64)\n"
    "  --lr X           Adam learning rate of both networks (default 0.0001)\n"
    "  --n-critic N     critic updates per generator update (default 5)\n"
    "  --out DIR        output folder for grids, checkpoint, generator, log\n"
    "                   (default out_wgan_gp)\n"
    "  --resume         continue from DIR/checkpoint.safetensors\n"
    "  --threads N      threads for OpenMP and OpenBLAS (default 2)\n"
    "  --seed N         seed of every random choice (default 1)\n"
    "  --data DIR       folder with the Fashion-MNIST .gz files\n"
    "                   (default /usr/share/datasets/fashion-mnist)\n"
    "  --width NAME     small (G 128-64-32, critic 32-64-128) or reference\n"
    "                   (G 512-256-128, critic 64-128-256) (default small)\n"
    "  --limit N        train on the first N images only, 0 for all 60,000\n"
    "                   (default 30000)\n";

std::uint64_t parse_unsigned(const std::string& flag, const std::string& text) {
  std::size_t used = 0;
  unsigned long long value = 0;
  try {
    value = std::stoull(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || text.empty() || text[0] == '-')
    throw argument_error(detail::concat(flag, ": invalid number \"", text, "\""));
  return value;
}

double parse_positive(const std::string& flag, const std::string& text) {
  std::size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || text.empty() || !(value > 0))
    throw argument_error(detail::concat(flag, ": expected a positive number, got \"", text, "\""));
  return value;
}

options parse_options(int argc, char** argv) {
  options parsed;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::printf("%s", usage);
      std::exit(0);
    }
    if (flag == "--resume") {
      parsed.resume = true;
      continue;
    }
    if (i + 1 >= argc) throw argument_error(detail::concat(flag, ": missing value\n", usage));
    const std::string value = argv[++i];
    if (flag == "--epochs")
      parsed.epochs = parse_unsigned(flag, value);
    else if (flag == "--batch-size")
      parsed.batch_size = parse_unsigned(flag, value);
    else if (flag == "--lr")
      parsed.lr = parse_positive(flag, value);
    else if (flag == "--n-critic")
      parsed.n_critic = parse_unsigned(flag, value);
    else if (flag == "--out")
      parsed.out = value;
    else if (flag == "--threads")
      parsed.threads = static_cast<int>(parse_unsigned(flag, value));
    else if (flag == "--seed")
      parsed.seed = parse_unsigned(flag, value);
    else if (flag == "--data")
      parsed.data = value;
    else if (flag == "--width")
      parsed.width = value;
    else if (flag == "--limit")
      parsed.limit = parse_unsigned(flag, value);
    else
      throw argument_error(detail::concat("unknown option ", flag, "\n", usage));
  }
  if (parsed.width != "small" && parsed.width != "reference")
    throw argument_error("--width: expected small or reference, got " + parsed.width);
  if (parsed.batch_size < 2)
    throw argument_error("--batch-size: the generator's batch norm needs at least 2");
  if (parsed.n_critic == 0) throw argument_error("--n-critic: must be at least 1");
  return parsed;
}

/// Appends one JSON object per line to the metrics log.
class metrics_log {
 public:
  explicit metrics_log(const std::filesystem::path& path) : out_(path, std::ios::app) {
    if (!out_) throw file_error(path.string(), "", "cannot open the metrics log for appending");
  }
  void write(const nlohmann::json& record) {
    out_ << record.dump() << '\n';
    out_.flush();
  }

 private:
  std::ofstream out_;
};

template <class Trainer>
void write_grid(Trainer& trainer, const std::filesystem::path& path) {
  typename cpu<float>::tensor samples;
  trainer.sample_fixed(samples);
  const auto shape = cpu<float>::shape(samples);
  io::write_png_grid<float>(path, std::span<const float>(samples.data(), samples.size()), shape[0],
                            shape[1], shape[2], shape[3]);
}

/// Returns the progress line with the penalty and the critic's
/// input-gradient norm, which WGAN-GP drives towards 1.
std::string progress_line(const progress_meter& meter, const step_record& record, bool bar) {
  char penalty[64];
  std::snprintf(penalty, sizeof penalty, " GP %.4f |grad| %.3f", record.penalty,
                record.penalty_gradient_norm);
  return meter.line(record, bar) + penalty;
}

template <std::size_t GeneratorWidth, std::size_t CriticWidth>
void run(const options& opts) {
  set_threads(opts.threads);
  std::filesystem::create_directories(opts.out);
  const std::filesystem::path out = opts.out;
  const std::filesystem::path checkpoint = out / "checkpoint.safetensors";

  data::labelled_images images = data::fashion_mnist(data::split::train, opts.data);
  if (opts.limit != 0 && opts.limit < images.count) {
    images.count = opts.limit;
    images.pixels.resize(opts.limit * images.height * images.width);
    images.labels.resize(opts.limit);
  }
  data::batcher<float> batches(images, opts.batch_size, opts.seed, {.pad_to = 32});

  trainer_options settings;
  settings.seed = opts.seed;
  settings.n_critic = opts.n_critic;
  settings.generator_optimizer = {opts.lr, 0.0, 0.9};
  settings.discriminator_optimizer = {opts.lr, 0.0, 0.9};
  using trainer_type = gan_trainer<dcgan::generator<GeneratorWidth>, critic<CriticWidth>,
                                   wasserstein, cpu<float>, gradient_penalty<>>;
  auto trainer = std::make_unique<trainer_type>(settings);

  std::size_t first_epoch = 0;
  if (opts.resume) {
    const auto extra = trainer->load_checkpoint(checkpoint);
    batches.restore({static_cast<std::uint64_t>(extra.at("batcher_epoch")),
                     static_cast<std::uint64_t>(extra.at("batcher_position"))});
    first_epoch = static_cast<std::size_t>(extra.at("epochs_done"));
    std::printf("resumed from %s at epoch %zu, iteration %lld\n", checkpoint.c_str(), first_epoch,
                static_cast<long long>(trainer->iteration()));
  }

  const auto per_epoch = static_cast<std::int64_t>(batches.batches_per_epoch());
  const std::int64_t total = per_epoch * static_cast<std::int64_t>(opts.epochs);
  progress_meter meter(total, trainer->iteration());
  metrics_log log(out / "metrics.jsonl");
  const bool terminal = isatty(fileno(stdout)) != 0;
  std::printf("training on %zu images, %lld critic steps of %zu per epoch, %zu threads\n",
              images.count, static_cast<long long>(per_epoch), opts.batch_size,
              static_cast<std::size_t>(opts.threads));

  cpu<float>::tensor real;
  cpu<float>::resize(real, opts.batch_size, 1, 32, 32);
  std::vector<std::int64_t> labels(opts.batch_size);
  for (std::size_t epoch = first_epoch; epoch < opts.epochs; ++epoch) {
    step_record record;
    while (batches.next(std::span<float>(real.data(), real.size()), labels)) {
      record = trainer->step(real);
      if (record.iteration % 10 == 0)
        log.write({{"iteration", record.iteration},
                   {"epoch", epoch + 1},
                   {"d_loss", record.discriminator_loss},
                   {"g_loss", record.generator_loss},
                   {"gradient_penalty", record.penalty},
                   {"critic_gradient_norm", record.penalty_gradient_norm},
                   {"wasserstein_estimate", -record.discriminator_loss},
                   {"it_per_s", meter.rate(record.iteration)}});
      if (terminal) {
        std::printf("\repoch %zu/%zu %s", epoch + 1, opts.epochs,
                    progress_line(meter, record, true).c_str());
        std::fflush(stdout);
      } else if (record.iteration % 100 == 0) {
        std::printf("epoch %zu/%zu %s\n", epoch + 1, opts.epochs,
                    progress_line(meter, record, false).c_str());
        std::fflush(stdout);
      }
    }
    const auto grid = out / detail::concat("epoch_", epoch + 1, ".png");
    write_grid(*trainer, grid);
    const auto state = batches.state();
    trainer->save_checkpoint(checkpoint,
                             {{"batcher_epoch", static_cast<std::int64_t>(state.epoch)},
                              {"batcher_position", static_cast<std::int64_t>(state.position)},
                              {"epochs_done", static_cast<std::int64_t>(epoch + 1)}});
    log.write({{"epoch_end", epoch + 1},
               {"iteration", trainer->iteration()},
               {"seconds", meter.elapsed_seconds()}});
    std::printf("%sepoch %zu done: %s, %s, %s\n", terminal ? "\n" : "", epoch + 1, grid.c_str(),
                checkpoint.c_str(), progress_line(meter, record, false).c_str());
  }
  trainer->save_generator(out / "generator.safetensors");
  std::printf("generator written to %s\n", (out / "generator.safetensors").c_str());
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const options opts = parse_options(argc, argv);
    if (opts.width == "reference")
      run<dcgan::reference_width, 64>(opts);
    else
      run<dcgan::small_width, dcgan::small_width>(opts);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "wgan_gp_fashion_mnist: %s\n", e.what());
    return 1;
  }
  return 0;
}
