#pragma once
// Inception Score (Salimans et al., "Improved techniques for training GANs",
// NeurIPS 2016) from a classifier's class probabilities p(y | x_i):
//
//   IS = exp(mean_i KL(p(y | x_i) || p(y))),
//
// with the marginal p(y) taken over each split of the samples separately.

#include <cmath>    // std::exp, std::log, std::sqrt, std::abs
#include <cstddef>  // std::size_t
#include <vector>   // std::vector

#include "advgan/core/error.hpp"
#include "advgan/metrics/features.hpp"

namespace advgan {

/// Inception Score over splits.
struct inception_score_result {
  double mean = 0.0;    ///< mean of the split scores
  double stddev = 0.0;  ///< population standard deviation (ddof 0, as numpy.std) of them
  std::vector<double> split_scores;
};

/// Computes the Inception Score of `probabilities` (one row per sample, one
/// column per class) over `splits` contiguous splits, as the original
/// implementation does: split s contains rows [s * N / splits, (s + 1) * N /
/// splits) in integer division. A term with p = 0 contributes 0 (0 log 0 = 0).
/// Throws argument_error if splits is 0 or exceeds the row count, or if a row
/// has a negative or non-finite entry or does not sum to 1 within 1e-6.
inception_score_result inception_score(const feature_matrix& probabilities,
                                       std::size_t splits = 10);

// ---------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------

namespace detail {

// Throws argument_error, naming the row, unless each row of `probabilities`
// is a probability distribution within 1e-6.
inline void check_probability_rows(const feature_matrix& probabilities) {
  check_finite(probabilities, "class probabilities");
  constexpr double tolerance = 1e-6;
  for (std::size_t row = 0; row < probabilities.rows; ++row) {
    double sum = 0.0;
    for (std::size_t col = 0; col < probabilities.cols; ++col) {
      const double value = probabilities(row, col);
      if (value < 0.0) {
        throw argument_error(concat("class probabilities row ", row, " has negative entry ", value,
                                    " at column ", col));
      }
      sum += value;
    }
    if (std::abs(sum - 1.0) > tolerance) {
      throw argument_error(
          concat("class probabilities row ", row, " sums to ", sum, ", not 1 within ", tolerance));
    }
  }
}

// Returns exp(mean KL(p_i || marginal)) over rows [begin, end).
inline double split_score(const feature_matrix& probabilities, std::size_t begin, std::size_t end) {
  const std::size_t classes = probabilities.cols;
  const auto count = static_cast<double>(end - begin);
  std::vector<double> marginal(classes, 0.0);
  for (std::size_t row = begin; row < end; ++row) {
    for (std::size_t c = 0; c < classes; ++c) marginal[c] += probabilities(row, c);
  }
  for (double& value : marginal) value /= count;

  double kl_sum = 0.0;
  for (std::size_t row = begin; row < end; ++row) {
    for (std::size_t c = 0; c < classes; ++c) {
      const double p = probabilities(row, c);
      // marginal[c] >= p / count > 0 wherever p > 0, so the logarithm is finite.
      if (p > 0.0) kl_sum += p * (std::log(p) - std::log(marginal[c]));
    }
  }
  return std::exp(kl_sum / count);
}

}  // namespace detail

inline inception_score_result inception_score(const feature_matrix& probabilities,
                                              std::size_t splits) {
  if (splits == 0) throw argument_error("inception_score needs splits >= 1, got 0");
  if (splits > probabilities.rows) {
    throw argument_error(
        detail::concat("splits = ", splits, " exceeds the sample count ", probabilities.rows));
  }
  if (probabilities.cols == 0) throw argument_error("class probabilities have no class columns");
  detail::check_probability_rows(probabilities);

  inception_score_result result;
  const std::size_t rows = probabilities.rows;
  for (std::size_t split = 0; split < splits; ++split) {
    const std::size_t begin = split * rows / splits;
    const std::size_t end = (split + 1) * rows / splits;
    result.split_scores.push_back(detail::split_score(probabilities, begin, end));
  }
  const auto count = static_cast<double>(splits);
  for (const double score : result.split_scores) result.mean += score;
  result.mean /= count;
  double squared_deviations = 0.0;
  for (const double score : result.split_scores) {
    squared_deviations += (score - result.mean) * (score - result.mean);
  }
  result.stddev = std::sqrt(squared_deviations / count);
  return result;
}

}  // namespace advgan
