#pragma once
// Mode coverage: how many of a classifier's classes the generated samples
// reach, and how far their class histogram is from the real one.

#include <algorithm>    // std::min
#include <cmath>        // std::log
#include <cstddef>      // std::size_t
#include <span>         // std::span
#include <string_view>  // std::string_view
#include <vector>       // std::vector

#include "advgan/core/error.hpp"
#include "advgan/metrics/features.hpp"

namespace advgan {

/// Class histograms of the samples and of the real set, and what they show.
struct mode_coverage_result {
  double coverage = 0.0;                    ///< covered_classes / classes
  std::size_t covered_classes = 0;          ///< classes reached by the samples (see mode_coverage)
  std::vector<std::size_t> histogram;       ///< sample count per class
  std::vector<std::size_t> real_histogram;  ///< real count per class
  /// KL(p || q) in nats between the normalized sample histogram p and the
  /// normalized real histogram q (see mode_coverage for empty bins).
  double kl_divergence = 0.0;
  /// Share of the samples in the class with the fewest of them; 0 when a
  /// class has none.
  double min_class_share = 0.0;
};

/// The substitute for q_c = 0 where p_c > 0 in the KL divergence.
inline constexpr double mode_coverage_kl_epsilon = 1e-10;

/// Computes mode coverage from class labels in [0, classes). A class is
/// covered when at least one sample has it and its share of the samples is
/// at least `min_share` (0 by default, so one sample suffices). In the KL
/// divergence, classes with p_c = 0 contribute 0, and where p_c > 0 but
/// q_c = 0, q_c is replaced by 1e-10 without renormalizing q, so such a class
/// adds about p_c (log p_c + 23). Throws argument_error if classes is 0, a
/// label set is empty, a label is out of range, or min_share is not in [0, 1].
mode_coverage_result mode_coverage(std::span<const std::size_t> sample_labels,
                                   std::span<const std::size_t> real_labels, std::size_t classes,
                                   double min_share = 0.0);

/// Computes mode coverage from class probabilities (or logits), one row per
/// sample and one column per class, labelling each row by predicted_labels.
/// Throws argument_error if the column counts differ, plus the errors of the
/// label overload.
mode_coverage_result mode_coverage(const feature_matrix& sample_probabilities,
                                   const feature_matrix& real_probabilities,
                                   double min_share = 0.0);

/// Returns each row's column of largest value, the lowest column on ties.
/// Throws argument_error naming `set_name` if a value is not finite or there
/// are no columns.
std::vector<std::size_t> predicted_labels(const feature_matrix& probabilities,
                                          std::string_view set_name);

// ---------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------

namespace detail {

// Counts labels per class; throws argument_error naming the first label out
// of range.
inline std::vector<std::size_t> class_histogram(std::span<const std::size_t> labels,
                                                std::size_t classes, std::string_view set_name) {
  if (labels.empty()) throw argument_error(concat("mode_coverage needs at least one ", set_name));
  std::vector<std::size_t> histogram(classes, 0);
  for (std::size_t index = 0; index < labels.size(); ++index) {
    if (labels[index] >= classes) {
      throw argument_error(concat(set_name, " ", labels[index], " at index ", index,
                                  " is outside [0, ", classes, ")"));
    }
    ++histogram[labels[index]];
  }
  return histogram;
}

}  // namespace detail

inline mode_coverage_result mode_coverage(std::span<const std::size_t> sample_labels,
                                          std::span<const std::size_t> real_labels,
                                          std::size_t classes, double min_share) {
  if (classes == 0) throw argument_error("mode_coverage needs classes >= 1, got 0");
  if (!(min_share >= 0.0 && min_share <= 1.0)) {
    throw argument_error(detail::concat("min_share = ", min_share, " is not in [0, 1]"));
  }
  mode_coverage_result result;
  result.histogram = detail::class_histogram(sample_labels, classes, "sample label");
  result.real_histogram = detail::class_histogram(real_labels, classes, "real label");

  const auto sample_count = static_cast<double>(sample_labels.size());
  const auto real_count = static_cast<double>(real_labels.size());
  result.min_class_share = 1.0;
  for (std::size_t c = 0; c < classes; ++c) {
    const double p = static_cast<double>(result.histogram[c]) / sample_count;
    result.min_class_share = std::min(result.min_class_share, p);
    if (result.histogram[c] > 0 && p >= min_share) ++result.covered_classes;
    if (p == 0.0) continue;
    double q = static_cast<double>(result.real_histogram[c]) / real_count;
    if (q == 0.0) q = mode_coverage_kl_epsilon;
    result.kl_divergence += p * (std::log(p) - std::log(q));
  }
  result.coverage = static_cast<double>(result.covered_classes) / static_cast<double>(classes);
  return result;
}

inline std::vector<std::size_t> predicted_labels(const feature_matrix& probabilities,
                                                 std::string_view set_name) {
  check_finite(probabilities, set_name);
  if (probabilities.cols == 0) {
    throw argument_error(detail::concat(set_name, " has no class columns"));
  }
  std::vector<std::size_t> labels(probabilities.rows, 0);
  for (std::size_t row = 0; row < probabilities.rows; ++row) {
    for (std::size_t c = 1; c < probabilities.cols; ++c) {
      if (probabilities(row, c) > probabilities(row, labels[row])) labels[row] = c;
    }
  }
  return labels;
}

inline mode_coverage_result mode_coverage(const feature_matrix& sample_probabilities,
                                          const feature_matrix& real_probabilities,
                                          double min_share) {
  if (sample_probabilities.cols != real_probabilities.cols) {
    throw argument_error(
        detail::concat("class counts differ: sample probabilities have ", sample_probabilities.cols,
                       " columns, real probabilities have ", real_probabilities.cols));
  }
  const std::vector<std::size_t> samples = predicted_labels(sample_probabilities, "sample set");
  const std::vector<std::size_t> reals = predicted_labels(real_probabilities, "real set");
  return mode_coverage(samples, reals, sample_probabilities.cols, min_share);
}

}  // namespace advgan
