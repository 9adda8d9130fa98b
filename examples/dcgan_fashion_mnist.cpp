// Trains a DCGAN on Fashion-MNIST on the CPU.
//
// Reads the dataset that Debian's dataset-fashion-mnist package installs,
// pads the 28x28 images to 32x32, and alternates one discriminator and one
// generator update per batch. Each epoch writes a grid of samples from a
// fixed noise batch and a checkpoint to --out; the end of the run writes
// the generator alone. --resume continues from the checkpoint in --out.
//
// After each epoch, 10,000 samples from the averaged generator are scored
// against the 10,000 test images with domain FID, KID and mode coverage on
// the features of the committed Fashion-MNIST classifier (see
// advgan/metrics/domain.hpp; these are not Inception-based values). The
// scores go to the epoch line and to metrics.jsonl; --no-metrics skips them.
//
// Run with --help for the options.

#include <unistd.h>  // isatty

#include <cstdio>     // std::printf, std::fflush
#include <cstdlib>    // std::strtod
#include <exception>  // std::exception
#include <fstream>    // std::ofstream
#include <iostream>   // std::cerr
#include <string>     // std::string

#include <nlohmann/json.hpp>

#include <advgan/advgan.hpp>

#include "classifier_model.hpp"
#include "dcgan_models.hpp"

namespace {

using namespace advgan;

struct options {
  std::size_t epochs = 5;
  std::size_t batch_size = 64;
  double lr = 2e-4;
  std::string out = "out";
  bool resume = false;
  int threads = 2;
  std::uint64_t seed = 1;
  std::string data = "/usr/share/datasets/fashion-mnist";
  std::string width = "small";
  std::size_t limit = 0;  // 0 = the whole training set
  bool metrics = true;
  // Keeps the default run, with its end-of-epoch metrics, within 5 minutes
  // of wall time on two cores; 0 removes the limit.
  double max_seconds = 240;
  std::string classifier = classifier_tools::default_classifier_file().string();
};

constexpr const char* usage =
    "usage: dcgan_fashion_mnist [options]\n"
    "  --epochs N       passes over the training set (default 5)\n"
    "  --batch-size N   images per batch (default 64)\n"
    "  --lr X           Adam learning rate of both networks (default 0.0002)\n"
    "  --out DIR        output folder for grids, checkpoint, generator, log (default out)\n"
    "  --resume         continue from DIR/checkpoint.safetensors\n"
    "  --threads N      threads for OpenMP and OpenBLAS (default 2)\n"
    "  --seed N         seed of every random choice (default 1)\n"
    "  --data DIR       folder with the Fashion-MNIST .gz files\n"
    "                   (default /usr/share/datasets/fashion-mnist)\n"
    "  --width NAME     small (G 128-64-32, D 32-64-128) or reference\n"
    "                   (G 512-256-128, D 64-128-256) (default small)\n"
    "  --limit N        train on the first N images only (default: all)\n"
    "  --max-seconds S  stop training after S seconds of wall time and write the\n"
    "                   outputs as at the end of an epoch; 0 = no limit (default 240)\n"
    "  --no-metrics     skip the end-of-epoch domain FID, KID and mode coverage\n"
    "  --classifier FILE  classifier weights for those metrics (default the committed\n"
    "                   examples/weights/fashion_mnist_classifier.safetensors)\n";

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
    if (flag == "--no-metrics") {
      parsed.metrics = false;
      continue;
    }
    if (i + 1 >= argc) throw argument_error(detail::concat(flag, ": missing value\n", usage));
    const std::string value = argv[++i];
    if (flag == "--epochs")
      parsed.epochs = parse_unsigned(flag, value);
    else if (flag == "--batch-size")
      parsed.batch_size = parse_unsigned(flag, value);
    else if (flag == "--lr")
      parsed.lr = std::stod(value);
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
    else if (flag == "--max-seconds")
      parsed.max_seconds = static_cast<double>(parse_unsigned(flag, value));
    else if (flag == "--classifier")
      parsed.classifier = value;
    else
      throw argument_error(detail::concat("unknown option ", flag, "\n", usage));
  }
  if (parsed.width != "small" && parsed.width != "reference")
    throw argument_error("--width: expected small or reference, got " + parsed.width);
  if (parsed.batch_size < 2) throw argument_error("--batch-size: batch norm needs at least 2");
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

/// Loads the classifier and computes the test-set features once per run,
/// or returns nothing with --no-metrics.
std::unique_ptr<classifier_tools::test_set_scorer> make_scorer(const options& opts) {
  if (!opts.metrics) return nullptr;
  if (!std::filesystem::exists(opts.classifier)) {
    throw file_error(opts.classifier, "",
                     "classifier weights not found; pass --classifier FILE, or --no-metrics to "
                     "train without the end-of-epoch metrics");
  }
  return std::make_unique<classifier_tools::test_set_scorer>(opts.classifier, opts.data, opts.seed);
}

/// Scores 10,000 samples of the averaged generator in evaluation mode,
/// writes the scores to the log and returns them as text for the epoch line.
template <class Trainer>
std::string score_epoch(classifier_tools::test_set_scorer& scorer, Trainer& trainer,
                        std::size_t epoch, metrics_log& log) {
  const classifier_tools::sample_scores scores =
      scorer.score([&](const cpu<float>::tensor& latent, cpu<float>::tensor& images) {
        trainer.generate(latent, images);
      });
  for (const std::string& warning : scores.warnings)
    std::printf("epoch %zu: domain FID warning: %s\n", epoch, warning.c_str());
  log.write({{"epoch", epoch},
             {"fid", scores.fid},
             {"kid", scores.kid},
             {"kid_std", scores.kid_std},
             {"mode_coverage", scores.mode_coverage},
             {"mode_kl", scores.mode_kl}});
  char text[160];
  std::snprintf(text, sizeof text,
                ", domain FID %.3f, KID %.5f +- %.5f, mode coverage %.2f, KL %.4f", scores.fid,
                scores.kid, scores.kid_std, scores.mode_coverage, scores.mode_kl);
  return text;
}

template <std::size_t GeneratorWidth, std::size_t DiscriminatorWidth>
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
  const std::unique_ptr<classifier_tools::test_set_scorer> scorer = make_scorer(opts);

  trainer_options settings;
  settings.seed = opts.seed;
  settings.generator_optimizer.lr = opts.lr;
  settings.discriminator_optimizer.lr = opts.lr;
  using trainer_type =
      gan_trainer<dcgan::generator<GeneratorWidth>, dcgan::discriminator<DiscriminatorWidth>,
                  non_saturating, cpu<float>>;
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

  const std::int64_t per_epoch = static_cast<std::int64_t>(batches.batches_per_epoch());
  const std::int64_t total = per_epoch * static_cast<std::int64_t>(opts.epochs);
  progress_meter meter(total, trainer->iteration());
  metrics_log log(out / "metrics.jsonl");
  const bool terminal = isatty(fileno(stdout)) != 0;
  std::printf("training on %zu images, %lld batches of %zu per epoch, %zu threads\n", images.count,
              static_cast<long long>(per_epoch), opts.batch_size,
              static_cast<std::size_t>(opts.threads));

  cpu<float>::tensor real;
  cpu<float>::resize(real, opts.batch_size, 1, 32, 32);
  std::vector<std::int64_t> labels(opts.batch_size);
  bool out_of_time = false;
  for (std::size_t epoch = first_epoch; epoch < opts.epochs && !out_of_time; ++epoch) {
    step_record record;
    while (batches.next(std::span<float>(real.data(), real.size()), labels)) {
      if (opts.max_seconds > 0 && meter.elapsed_seconds() >= opts.max_seconds) {
        out_of_time = true;  // the batch just drawn is left for a resumed run
        break;
      }
      record = trainer->step(real);
      if (record.iteration % 10 == 0)
        log.write({{"iteration", record.iteration},
                   {"epoch", epoch + 1},
                   {"d_loss", record.discriminator_loss},
                   {"g_loss", record.generator_loss},
                   {"d_real", record.real_score},
                   {"d_fake", record.fake_score},
                   {"it_per_s", meter.rate(record.iteration)}});
      if (terminal) {
        std::printf("\repoch %zu/%zu %s", epoch + 1, opts.epochs, meter.line(record, true).c_str());
        std::fflush(stdout);
      } else if (record.iteration % 100 == 0) {
        std::printf("epoch %zu/%zu %s\n", epoch + 1, opts.epochs,
                    meter.line(record, false).c_str());
        std::fflush(stdout);
      }
    }
    const auto grid = out / detail::concat("epoch_", epoch + 1, ".png");
    write_grid(*trainer, grid);
    auto state = batches.state();
    if (out_of_time) state.position -= opts.batch_size;  // the drawn batch was not trained on
    trainer->save_checkpoint(
        checkpoint, {{"batcher_epoch", static_cast<std::int64_t>(state.epoch)},
                     {"batcher_position", static_cast<std::int64_t>(state.position)},
                     {"epochs_done", static_cast<std::int64_t>(out_of_time ? epoch : epoch + 1)}});
    log.write({{"epoch_end", epoch + 1},
               {"iteration", trainer->iteration()},
               {"seconds", meter.elapsed_seconds()}});
    if (terminal) std::printf("\n");
    const std::string scores = scorer ? score_epoch(*scorer, *trainer, epoch + 1, log) : "";
    std::printf("epoch %zu done: %s, %s, %s%s\n", epoch + 1, grid.c_str(), checkpoint.c_str(),
                meter.line(record, false).c_str(), scores.c_str());
  }
  trainer->save_generator(out / "generator.safetensors");
  std::printf("generator written to %s\n", (out / "generator.safetensors").c_str());
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const options opts = parse_options(argc, argv);
    if (opts.width == "reference")
      run<128, 64>(opts);
    else
      run<32, 32>(opts);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dcgan_fashion_mnist: %s\n", e.what());
    return 1;
  }
  return 0;
}
