#pragma once
// What the Fashion-MNIST GAN examples share: their common options, the
// metrics log, sample grids, the end-of-epoch scores, and the epoch loop with
// checkpoints, resume and the wall-time limit.
//
// After each epoch, 10,000 samples from the averaged generator are scored
// against the 10,000 test images with domain FID, KID and mode coverage. The
// features come from the committed Fashion-MNIST classifier (see
// advgan/metrics/domain.hpp), so these are not Inception-based values. The
// scores go to the epoch line and to metrics.jsonl; --no-metrics skips them.

#include <unistd.h>  // isatty
#if defined(__GLIBC__)
#include <malloc.h>  // mallopt, M_MMAP_THRESHOLD
#endif

#include <cstdint>     // std::int64_t, std::uint64_t
#include <cstdio>      // std::printf, std::snprintf, std::fflush
#include <filesystem>  // std::filesystem::path
#include <fstream>     // std::ofstream
#include <memory>      // std::unique_ptr
#include <span>        // std::span
#include <string>      // std::string
#include <vector>      // std::vector

#include <nlohmann/json.hpp>

#include <advgan/advgan.hpp>

#include "classifier_model.hpp"
#include "command_line.hpp"

namespace training_run {

using namespace advgan;

/// The options that every GAN example takes. Each example sets its own
/// defaults before parsing.
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
  std::size_t limit = 0;  ///< train on the first `limit` images; 0 = all
  bool metrics = true;
  double max_seconds = 0;  ///< wall-time limit of the training; 0 = none
  std::string classifier = classifier_tools::default_classifier_file().string();
};

/// Returns the help lines of the shared options with the defaults of
/// `defaults`.
inline std::string usage(const options& defaults) {
  auto line = [](const char* text, const auto&... values) {
    char buffer[256];
    std::snprintf(buffer, sizeof buffer, text, values...);
    return std::string(buffer);
  };
  return line("  --epochs N       passes over the training images (default %zu)\n",
              defaults.epochs) +
         line("  --batch-size N   images per batch (default %zu)\n", defaults.batch_size) +
         line("  --lr X           Adam learning rate of both networks (default %g)\n",
              defaults.lr) +
         line(
             "  --out DIR        output folder for grids, checkpoint, generator, log\n"
             "                   (default %s)\n",
             defaults.out.c_str()) +
         "  --resume         continue from DIR/checkpoint.safetensors\n" +
         line("  --threads N      threads for OpenMP and OpenBLAS (default %d)\n",
              defaults.threads) +
         line("  --seed N         seed of every random choice (default %llu)\n",
              static_cast<unsigned long long>(defaults.seed)) +
         line(
             "  --data DIR       folder with the Fashion-MNIST .gz files\n"
             "                   (default %s)\n",
             defaults.data.c_str()) +
         line(
             "  --width NAME     small (G 128-64-32, D 32-64-128) or reference\n"
             "                   (G 512-256-128, D 64-128-256) (default %s)\n",
             defaults.width.c_str()) +
         line(
             "  --limit N        train on the first N images only, 0 for all 60,000\n"
             "                   (default %zu)\n",
             defaults.limit) +
         line(
             "  --max-seconds S  stop training after S seconds of wall time and write the\n"
             "                   outputs as at the end of an epoch; 0 = no limit (default "
             "%g)\n",
             defaults.max_seconds) +
         "  --no-metrics     skip the end-of-epoch domain FID, KID and mode coverage\n"
         "  --classifier FILE  classifier weights for those metrics (default the committed\n"
         "                   examples/weights/fashion_mnist_classifier.safetensors)\n";
}

/// Applies a shared option without a value; returns false for any other
/// flag.
inline bool parse_switch(options& parsed, const std::string& flag) {
  if (flag == "--resume")
    parsed.resume = true;
  else if (flag == "--no-metrics")
    parsed.metrics = false;
  else
    return false;
  return true;
}

/// Applies a shared option and its value; returns false for any other flag.
inline bool parse_value(options& parsed, const std::string& flag, const std::string& value) {
  using command_line::parse_positive;
  using command_line::parse_unsigned;
  if (flag == "--epochs")
    parsed.epochs = parse_unsigned(flag, value);
  else if (flag == "--batch-size")
    parsed.batch_size = parse_unsigned(flag, value);
  else if (flag == "--lr")
    parsed.lr = parse_positive(flag, value);
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
    return false;
  return true;
}

/// Throws argument_error for shared option values that cannot work.
inline void validate(const options& parsed) {
  if (parsed.width != "small" && parsed.width != "reference")
    throw argument_error("--width: expected small or reference, got " + parsed.width);
  if (parsed.batch_size < 2)
    throw argument_error(detail::concat(
        "--batch-size: the generator's batch norm needs at least 2, got ", parsed.batch_size));
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

/// Writes the averaged generator's samples of the fixed noise batch as one
/// PNG grid.
template <class Trainer>
void write_grid(Trainer& trainer, const std::filesystem::path& path) {
  typename cpu<float>::tensor samples;
  trainer.sample_fixed(samples);
  const auto shape = cpu<float>::shape(samples);
  io::write_png_grid<float>(path, std::span<const float>(samples.data(), samples.size()), shape[0],
                            shape[1], shape[2], shape[3]);
}

/// Reads the training split, cut to the first opts.limit images.
inline data::labelled_images load_training_images(const options& opts) {
  data::labelled_images images = data::fashion_mnist(data::split::train, opts.data);
  if (opts.limit != 0 && opts.limit < images.count) {
    images.count = opts.limit;
    images.pixels.resize(opts.limit * images.height * images.width);
    images.labels.resize(opts.limit);
  }
  return images;
}

/// Loads the classifier and computes the test-set features once per run,
/// or returns nothing with --no-metrics.
inline std::unique_ptr<classifier_tools::test_set_scorer> make_scorer(const options& opts) {
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
             {"min_class_share", scores.min_class_share},
             {"mode_kl", scores.mode_kl}});
  char text[200];
  std::snprintf(text, sizeof text,
                ", domain FID %.3f, KID %.5f +- %.5f, mode coverage %.2f (smallest class %.1f%%), "
                "KL %.4f",
                scores.fid, scores.kid, scores.kid_std, scores.mode_coverage,
                100 * scores.min_class_share, scores.mode_kl);
  return text;
}

/// Makes every allocation of 128 KiB or more a mapping of its own that goes
/// back to the system when freed. glibc otherwise raises this threshold to
/// the size of the largest mapped block freed so far (up to 32 MiB). The
/// end-of-epoch scores allocate and free buffers of several MiB, so later
/// buffers of that size would come from the heap instead. The heap then
/// fragments, and the peak resident memory creeps up over the first epochs.
inline void return_large_blocks_to_system() {
#if defined(__GLIBC__)
  mallopt(M_MMAP_THRESHOLD, 128 * 1024);
#endif
}

/// Trains `trainer` for opts.epochs passes over the training images, or
/// until opts.max_seconds of wall time have passed. Every epoch, and a run
/// cut short by the time limit, ends with a grid, a checkpoint that --resume
/// continues from, and the scores. `log_fields(record)` returns the
/// example's own fields of the log line written every 10 steps, and
/// `line_suffix(record)` the text it adds to the progress line. `step_name`
/// names one call of trainer.step() in the opening line.
template <class Trainer, class LogFields, class LineSuffix>
void train(const options& opts, Trainer& trainer, const char* step_name, LogFields log_fields,
           LineSuffix line_suffix) {
  return_large_blocks_to_system();
  std::filesystem::create_directories(opts.out);
  const std::filesystem::path out = opts.out;
  const std::filesystem::path checkpoint = out / "checkpoint.safetensors";

  const data::labelled_images images = load_training_images(opts);
  data::batcher<float> batches(images, opts.batch_size, opts.seed, {.pad_to = 32});
  const std::unique_ptr<classifier_tools::test_set_scorer> scorer = make_scorer(opts);

  std::size_t first_epoch = 0;
  if (opts.resume) {
    const auto extra = trainer.load_checkpoint(checkpoint);
    batches.restore({static_cast<std::uint64_t>(extra.at("batcher_epoch")),
                     static_cast<std::uint64_t>(extra.at("batcher_position"))});
    first_epoch = static_cast<std::size_t>(extra.at("epochs_done"));
    std::printf("resumed from %s at epoch %zu, iteration %lld\n", checkpoint.c_str(), first_epoch,
                static_cast<long long>(trainer.iteration()));
  }

  const auto per_epoch = static_cast<std::int64_t>(batches.batches_per_epoch());
  const std::int64_t total = per_epoch * static_cast<std::int64_t>(opts.epochs);
  progress_meter meter(total, trainer.iteration());
  metrics_log log(out / "metrics.jsonl");
  const bool terminal = isatty(fileno(stdout)) != 0;
  std::printf("training on %zu images, %lld %s of %zu per epoch, %zu threads\n", images.count,
              static_cast<long long>(per_epoch), step_name, opts.batch_size,
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
      record = trainer.step(real);
      if (record.iteration % 10 == 0) {
        nlohmann::json entry = {{"iteration", record.iteration},
                                {"epoch", epoch + 1},
                                {"d_loss", record.discriminator_loss},
                                {"g_loss", record.generator_loss},
                                {"it_per_s", meter.rate(record.iteration)}};
        entry.update(log_fields(record));
        log.write(entry);
      }
      if (terminal) {
        std::printf("\repoch %zu/%zu %s%s", epoch + 1, opts.epochs,
                    meter.line(record, true).c_str(), line_suffix(record).c_str());
        std::fflush(stdout);
      } else if (record.iteration % 100 == 0) {
        std::printf("epoch %zu/%zu %s%s\n", epoch + 1, opts.epochs,
                    meter.line(record, false).c_str(), line_suffix(record).c_str());
        std::fflush(stdout);
      }
    }
    const auto grid = out / detail::concat("epoch_", epoch + 1, ".png");
    write_grid(trainer, grid);
    auto state = batches.state();
    if (out_of_time) state.position -= opts.batch_size;  // the drawn batch was not trained on
    trainer.save_checkpoint(
        checkpoint, {{"batcher_epoch", static_cast<std::int64_t>(state.epoch)},
                     {"batcher_position", static_cast<std::int64_t>(state.position)},
                     {"epochs_done", static_cast<std::int64_t>(out_of_time ? epoch : epoch + 1)}});
    log.write({{"epoch_end", epoch + 1},
               {"iteration", trainer.iteration()},
               {"seconds", meter.elapsed_seconds()}});
    if (terminal) std::printf("\n");
    const std::string scores = scorer ? score_epoch(*scorer, trainer, epoch + 1, log) : "";
    std::printf("epoch %zu done: %s, %s, %s%s%s\n", epoch + 1, grid.c_str(), checkpoint.c_str(),
                meter.line(record, false).c_str(), line_suffix(record).c_str(), scores.c_str());
  }
  trainer.save_generator(out / "generator.safetensors");
  std::printf("generator written to %s\n", (out / "generator.safetensors").c_str());
}

}  // namespace training_run
