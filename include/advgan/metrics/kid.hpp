#pragma once
// Kernel Inception Distance (Binkowski et al., "Demystifying MMD GANs",
// ICLR 2018): the unbiased estimate of the squared maximum mean discrepancy
// (MMD^2) between two feature sets under the cubic polynomial kernel
// k(a, b) = (a . b / d + 1)^3, averaged over random subsets.

#include <algorithm>  // std::copy_n
#include <cmath>      // std::sqrt
#include <cstddef>    // std::size_t
#include <cstdint>    // std::uint32_t, std::uint64_t
#include <limits>     // std::numeric_limits
#include <numeric>    // std::iota
#include <utility>    // std::swap
#include <vector>     // std::vector

#include "advgan/core/error.hpp"
#include "advgan/core/philox.hpp"
#include "advgan/metrics/features.hpp"

namespace advgan {

/// Settings of kernel_inception_distance.
struct kid_options {
  std::size_t subset_size = 1000;  ///< rows drawn from each set per subset, without replacement
  std::size_t subsets = 100;       ///< number of subsets averaged
  std::uint64_t seed = 0;          ///< seed of the advgan::philox stream that draws the subsets
};

/// KID over subsets.
struct kid_result {
  double mean = 0.0;    ///< mean of the subset estimates
  double stddev = 0.0;  ///< population standard deviation (ddof 0, as numpy.std) of them
  std::vector<double> subset_values;  ///< the unbiased MMD^2 of each subset, in draw order
};

/// Computes the unbiased MMD^2 between all rows of `x` and all rows of `y`
/// under k(a, b) = (a . b / d + 1)^3:
///
///   sum_{i != j} k(x_i, x_j) / (n (n - 1)) + sum_{i != j} k(y_i, y_j) / (m (m - 1))
///     - 2 sum_{i, j} k(x_i, y_j) / (n m).
///
/// Throws argument_error if either set has fewer than 2 rows, the feature
/// dimensions differ, or a feature is not finite.
double polynomial_mmd2(const feature_matrix& x, const feature_matrix& y);

/// Computes KID between `x` ("set A") and `y` ("set B"): for each of
/// options.subsets subsets, draws options.subset_size rows of each set
/// without replacement (a partial Fisher-Yates shuffle on
/// advgan::philox(options.seed), x's rows then y's rows) and takes their
/// polynomial_mmd2. Returns the mean and the population standard deviation
/// (ddof 0) of the subset values. Throws argument_error if subset_size < 2,
/// subset_size exceeds either row count, subsets is 0, the feature dimensions
/// differ, or a feature is not finite. Each subset costs about
/// 4 subset_size^2 d floating-point operations, so the defaults at d = 2048
/// take about 8e11.
kid_result kernel_inception_distance(const feature_matrix& x, const feature_matrix& y,
                                     kid_options options = {});

// ---------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------

namespace detail {

// Returns k(a, b) = (a . b / d + 1)^3 from the dot product a . b.
inline double polynomial_kernel(double dot, double inverse_dim) {
  const double base = dot * inverse_dim + 1.0;
  return base * base * base;
}

// Returns the sum of k(a_i, a_j) over all i != j, from the upper triangle
// of the Gram matrix, which syrk computes at half the cost of gemm.
inline double within_set_kernel_sum(const double* a, std::size_t rows, std::size_t dim) {
  std::vector<double> gram(rows * rows);
  syrk_upper_row_major(a, rows, dim, false, gram.data());
  const double inverse_dim = 1.0 / static_cast<double>(dim);
  double sum = 0.0;
  for (std::size_t i = 0; i < rows; ++i) {
    for (std::size_t j = i + 1; j < rows; ++j)
      sum += polynomial_kernel(gram[i * rows + j], inverse_dim);
  }
  return 2.0 * sum;
}

// Returns the sum of k(a_i, b_j) over all i, j.
inline double cross_set_kernel_sum(const double* a, std::size_t a_rows, const double* b,
                                   std::size_t b_rows, std::size_t dim) {
  std::vector<double> gram(a_rows * b_rows);
  gemm_row_major(a, a_rows, dim, false, b, b_rows, dim, true, gram.data());
  const double inverse_dim = 1.0 / static_cast<double>(dim);
  double sum = 0.0;
  for (const double dot : gram) sum += polynomial_kernel(dot, inverse_dim);
  return sum;
}

// Computes the unbiased MMD^2 of two row-major sets with n >= 2 and m >= 2
// rows of `dim` features.
inline double unbiased_polynomial_mmd2(const double* x, std::size_t n, const double* y,
                                       std::size_t m, std::size_t dim) {
  const auto n_real = static_cast<double>(n);
  const auto m_real = static_cast<double>(m);
  const double within_x = within_set_kernel_sum(x, n, dim) / (n_real * (n_real - 1));
  const double within_y = within_set_kernel_sum(y, m, dim) / (m_real * (m_real - 1));
  const double across = cross_set_kernel_sum(x, n, y, m, dim) / (n_real * m_real);
  return within_x + within_y - 2.0 * across;
}

// Throws argument_error unless x and y have the same, non-zero feature count.
inline void check_same_dimension(const feature_matrix& x, const feature_matrix& y) {
  if (x.cols != y.cols) {
    throw argument_error(
        concat("feature dimensions differ: set A has d = ", x.cols, ", set B has d = ", y.cols));
  }
  if (x.cols == 0) throw argument_error("feature sets have no feature columns");
}

// Copies `count` rows of `set`, drawn without replacement, into `out`. The
// first `count` entries of `order` become the drawn rows by a partial
// Fisher-Yates shuffle of 0, 1, ..., rows - 1.
inline void draw_subset(const feature_matrix& set, std::size_t count, philox& generator,
                        std::vector<std::size_t>& order, std::vector<double>& out) {
  order.resize(set.rows);
  std::iota(order.begin(), order.end(), std::size_t{0});
  for (std::size_t i = 0; i < count; ++i) {
    const auto remaining = static_cast<std::uint32_t>(set.rows - i);
    std::swap(order[i], order[i + generator.below(remaining)]);
  }
  out.resize(count * set.cols);
  for (std::size_t i = 0; i < count; ++i) {
    std::copy_n(set.row_data(order[i]), set.cols, out.data() + i * set.cols);
  }
}

}  // namespace detail

inline double polynomial_mmd2(const feature_matrix& x, const feature_matrix& y) {
  detail::check_same_dimension(x, y);
  check_finite(x, "set A");
  check_finite(y, "set B");
  if (x.rows < 2 || y.rows < 2) {
    throw argument_error(detail::concat("the unbiased MMD^2 needs at least 2 samples per set, got ",
                                        x.rows, " and ", y.rows));
  }
  return detail::unbiased_polynomial_mmd2(x.values.data(), x.rows, y.values.data(), y.rows, x.cols);
}

inline kid_result kernel_inception_distance(const feature_matrix& x, const feature_matrix& y,
                                            kid_options options) {
  detail::check_same_dimension(x, y);
  if (options.subset_size < 2) {
    throw argument_error(detail::concat(
        "KID needs subset_size >= 2 for the unbiased estimator, got ", options.subset_size));
  }
  if (options.subset_size > x.rows || options.subset_size > y.rows) {
    throw argument_error(detail::concat("subset_size = ", options.subset_size,
                                        " exceeds the sample counts ", x.rows, " and ", y.rows));
  }
  if (options.subsets == 0) throw argument_error("KID needs subsets >= 1, got 0");
  constexpr std::size_t max_rows = std::numeric_limits<std::uint32_t>::max();
  if (x.rows > max_rows || y.rows > max_rows) {
    throw argument_error(detail::concat("KID draws subsets from at most ", max_rows,
                                        " samples per set, got ", x.rows, " and ", y.rows));
  }
  check_finite(x, "set A");
  check_finite(y, "set B");

  philox generator(options.seed);
  std::vector<std::size_t> order;
  std::vector<double> x_subset;
  std::vector<double> y_subset;
  kid_result result;
  result.subset_values.reserve(options.subsets);
  for (std::size_t subset = 0; subset < options.subsets; ++subset) {
    detail::draw_subset(x, options.subset_size, generator, order, x_subset);
    detail::draw_subset(y, options.subset_size, generator, order, y_subset);
    result.subset_values.push_back(detail::unbiased_polynomial_mmd2(
        x_subset.data(), options.subset_size, y_subset.data(), options.subset_size, x.cols));
  }

  const auto count = static_cast<double>(options.subsets);
  for (const double value : result.subset_values) result.mean += value;
  result.mean /= count;
  double squared_deviations = 0.0;
  for (const double value : result.subset_values) {
    squared_deviations += (value - result.mean) * (value - result.mean);
  }
  result.stddev = std::sqrt(squared_deviations / count);
  return result;
}

}  // namespace advgan
