#pragma once
// Formats training progress as text. The library never prints; examples
// and applications pass these strings to a terminal or a log.

#include <algorithm>  // std::clamp
#include <chrono>   // std::chrono::steady_clock
#include <cmath>    // std::isfinite, std::llround
#include <cstdint>  // std::int64_t
#include <cstdio>   // std::snprintf
#include <string>   // std::string

#include "advgan/train/trainer.hpp"

namespace advgan {

/// Measures throughput over a run and formats one progress line per step.
class progress_meter {
 public:
  /// `total` is the number of steps the run will take in all, `done` the
  /// number already taken when it starts (after a resume).
  progress_meter(std::int64_t total, std::int64_t done = 0)
      : total_(total), start_step_(done), start_(std::chrono::steady_clock::now()) {}

  /// Returns steps per second since the meter started.
  double rate(std::int64_t step) const {
    const double seconds = elapsed_seconds();
    return seconds > 0 ? static_cast<double>(step - start_step_) / seconds : 0.0;
  }

  double elapsed_seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

  /// Formats "[#####.....] 1234/4680 12.3 it/s ETA 4m40s D 1.234 G 0.987
  /// D(x) 0.51 D(G(z)) 0.43"; with `bar` false the bar is left out, for logs.
  std::string line(const step_record& record, bool bar) const {
    const double per_second = rate(record.iteration);
    const double remaining =
        per_second > 0 ? static_cast<double>(total_ - record.iteration) / per_second : 0.0;
    std::string text;
    if (bar) {
      constexpr std::size_t width = 24;
      const std::int64_t done = std::clamp<std::int64_t>(record.iteration, 0, total_);
      const auto filled = static_cast<std::size_t>(total_ > 0 ? width * done / total_ : 0);
      text.append(1, '[').append(filled, '#').append(width - filled, '.').append("] ");
    }
    char buffer[200];
    std::snprintf(buffer, sizeof buffer,
                  "%lld/%lld %.2f it/s ETA %s D %.4f G %.4f D(x) %.3f D(G(z)) %.3f",
                  static_cast<long long>(record.iteration), static_cast<long long>(total_),
                  per_second, format_duration(remaining).c_str(), record.discriminator_loss,
                  record.generator_loss, record.real_score, record.fake_score);
    return text + buffer;
  }

  /// Formats a duration in seconds as "1h02m", "4m40s" or "12s".
  static std::string format_duration(double seconds) {
    if (!std::isfinite(seconds) || seconds < 0) return "?";
    const long long total = std::llround(seconds);
    char buffer[32];
    if (total >= 3600)
      std::snprintf(buffer, sizeof buffer, "%lldh%02lldm", total / 3600, total % 3600 / 60);
    else if (total >= 60)
      std::snprintf(buffer, sizeof buffer, "%lldm%02llds", total / 60, total % 60);
    else
      std::snprintf(buffer, sizeof buffer, "%llds", total);
    return buffer;
  }

 private:
  std::int64_t total_;
  std::int64_t start_step_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace advgan
