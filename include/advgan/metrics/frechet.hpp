#pragma once
// Frechet distance between two Gaussians fitted to feature sets, the
// distance behind FID (Heusel et al., "GANs trained by a two time-scale update
// rule converge to a local Nash equilibrium", NeurIPS 2017):
//
//   d^2 = |mu_A - mu_B|^2 + tr(S_A) + tr(S_B) - 2 tr(sqrt(S_A S_B)).
//
// The trace of the matrix square root needs no complex arithmetic. Two
// symmetric eigendecompositions (LAPACK syevd) give the symmetric positive
// semidefinite (PSD) roots R_A and R_B of the covariances, and
// tr(sqrt(S_A S_B)) is the sum of the singular values of R_A R_B (LAPACK
// gesdd).

#include <algorithm>    // std::max
#include <array>        // std::array
#include <cmath>        // std::sqrt, std::abs
#include <cstddef>      // std::size_t
#include <limits>       // std::numeric_limits
#include <stdexcept>    // std::runtime_error
#include <string>       // std::string
#include <string_view>  // std::string_view
#include <tuple>        // std::get
#include <utility>      // std::pair
#include <vector>       // std::vector

#include <xtensor-blas/xlinalg.hpp>
#include <xtensor/xadapt.hpp>
#include <xtensor/xtensor.hpp>

#include "advgan/core/error.hpp"
#include "advgan/metrics/features.hpp"

namespace advgan {

/// Mean and covariance of a feature set.
struct gaussian_stats {
  std::vector<double> mean;        ///< dim values
  std::vector<double> covariance;  ///< dim x dim, row-major
  std::size_t dim = 0;
  std::size_t count = 0;  ///< samples the stats came from, or 0 when unknown
};

/// Frechet distance and how it was computed.
struct frechet_result {
  double value = 0.0;
  /// The eps added to both covariance diagonals before the square root, or 0.
  double offset_used = 0.0;
  /// Conditions that make the value less reliable but do not invalidate it.
  std::vector<std::string> warnings;
};

/// Fits a Gaussian to the rows of `features`: the column means and the
/// unbiased covariance (divided by N - 1, as numpy.cov). Throws
/// argument_error naming `set_name` if a feature is not finite, or if there
/// are fewer than 2 rows or no columns.
gaussian_stats fit_gaussian(const feature_matrix& features, std::string_view set_name);

/// Computes the Frechet distance between Gaussians `a` (named "set A" in
/// messages) and `b` ("set B").
///
/// Eigenvalues of S_A or S_B below -1e-10 * (their largest magnitude) are
/// too negative to come from rounding. The computation then adds 1e-6 * I to both covariances, as
/// pytorch-fid does, records offset_used and a warning, and retries. Unlike
/// pytorch-fid, the traces tr(S_A) and tr(S_B) then include that offset, so
/// the value is the exact distance between the two offset Gaussians and
/// never negative. A covariance that is still not PSD after the offset throws
/// argument_error. Eigenvalues of S_A or S_B below dim * epsilon * (their
/// largest) are rounding noise and count as 0, and a rounding residue below 0
/// in the final value is returned as 0. A count with
/// 0 < count <= dim adds a warning, because such a covariance is singular.
frechet_result frechet_distance(const gaussian_stats& a, const gaussian_stats& b);

/// Fits Gaussians to `a` ("set A") and `b` ("set B") and returns the
/// Frechet distance between them.
frechet_result frechet_distance(const feature_matrix& a, const feature_matrix& b);

// ---------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------

namespace detail {

// Eigenvalues below -negative_eigenvalue_tolerance * (their scale) are taken
// as a genuinely indefinite matrix, not rounding.
inline constexpr double negative_eigenvalue_tolerance = 1e-10;

// The diagonal offset pytorch-fid adds when the square root fails.
inline constexpr double frechet_offset = 1e-6;

// Returns (S + S^T) / 2 + offset * I for a dim x dim row-major S.
inline std::vector<double> symmetrized(const std::vector<double>& matrix, std::size_t dim,
                                       double offset) {
  std::vector<double> result(dim * dim);
  for (std::size_t i = 0; i < dim; ++i) {
    for (std::size_t j = 0; j < dim; ++j) {
      result[i * dim + j] = 0.5 * (matrix[i * dim + j] + matrix[j * dim + i]);
    }
    result[i * dim + i] += offset;
  }
  return result;
}

// Computes the eigenvalues (ascending) and, if `vectors` is not null, the
// eigenvectors of a symmetric dim x dim matrix by LAPACK syevd. Column j of
// the row-major result in *vectors is the eigenvector of eigenvalue j.
inline std::vector<double> symmetric_eigen(const std::vector<double>& matrix, std::size_t dim,
                                           std::string_view what,
                                           std::vector<double>* vectors = nullptr) {
  check_blas_size(dim, "eigendecomposition size");
  const auto view =
      xt::adapt(matrix.data(), dim * dim, xt::no_ownership(), std::array<std::size_t, 2>{dim, dim});
  try {
    if (vectors == nullptr) {
      const auto eigenvalues = xt::linalg::eigvalsh(view);
      return std::vector<double>(eigenvalues.begin(), eigenvalues.end());
    }
    const auto [eigenvalues, eigenvectors] = xt::linalg::eigh(view);
    vectors->resize(dim * dim);
    for (std::size_t i = 0; i < dim; ++i) {
      for (std::size_t j = 0; j < dim; ++j) (*vectors)[i * dim + j] = eigenvectors(i, j);
    }
    return std::vector<double>(eigenvalues.begin(), eigenvalues.end());
  } catch (const std::runtime_error& failure) {
    throw error(concat("eigendecomposition of the ", what, " (", dim, " x ", dim,
                       ") failed in LAPACK syevd: ", failure.what()));
  }
}

// tr(sqrt(S_A S_B)), or the eigenvalue that showed a covariance is not PSD.
struct sqrt_trace {
  double value = 0.0;
  bool a_not_psd = false;  // S_A has an eigenvalue below 0 beyond rounding
  bool b_not_psd = false;  // S_B has one
  double negative_eigenvalue = 0.0;
};

// The PSD square root R = V diag(sqrt(L)) V^T of a symmetric S = V diag(L)
// V^T, or the eigenvalue that shows S is not PSD.
struct psd_root {
  std::vector<double> root;
  bool not_psd = false;
  double negative_eigenvalue = 0.0;
};

// Computes the PSD square root of covariance + offset * I. Eigenvalues below
// dim * epsilon * (the largest eigenvalue) are rounding noise of syevd and
// count as 0: their square roots, about 1e-8 of the scale, would otherwise
// enter every singular value that they touch in the next step.
inline psd_root covariance_root(const std::vector<double>& covariance, std::size_t dim,
                                double offset, std::string_view what) {
  psd_root result;
  std::vector<double> vectors;
  const std::vector<double> eigenvalues =
      symmetric_eigen(symmetrized(covariance, dim, offset), dim, what, &vectors);
  const double smallest = eigenvalues.front();
  const double largest = eigenvalues.back();
  const double magnitude = std::max(std::abs(smallest), std::abs(largest));
  if (smallest < -negative_eigenvalue_tolerance * magnitude) {
    result.not_psd = true;
    result.negative_eigenvalue = smallest;
    return result;
  }
  const double noise =
      static_cast<double>(dim) * std::numeric_limits<double>::epsilon() * std::max(largest, 0.0);
  std::vector<double> scaled = vectors;
  for (std::size_t j = 0; j < dim; ++j) {
    const double root = eigenvalues[j] > noise ? std::sqrt(eigenvalues[j]) : 0.0;
    for (std::size_t i = 0; i < dim; ++i) scaled[i * dim + j] *= root;
  }
  result.root.resize(dim * dim);
  gemm_row_major(scaled.data(), dim, dim, false, vectors.data(), dim, dim, true,
                 result.root.data());
  return result;
}

// Computes tr(sqrt((S_A + offset I)(S_B + offset I))) as the sum of the
// singular values of R_A R_B, where R_A and R_B are the PSD square roots.
// This holds because S_A S_B is similar to R_A R_B (R_A R_B)^T, whose
// eigenvalues are the squared singular values of R_A R_B. LAPACK gesdd
// returns singular values with an absolute error of about
// epsilon * |R_A R_B|, so a small singular value keeps its accuracy. The
// square roots of the eigenvalues of R_A S_B R_A would only be accurate to
// sqrt(epsilon) * |R_A R_B|.
inline sqrt_trace trace_sqrt_product(const gaussian_stats& a, const gaussian_stats& b,
                                     double offset) {
  const std::size_t dim = a.dim;
  sqrt_trace result;
  const psd_root root_a = covariance_root(a.covariance, dim, offset, "covariance of set A");
  if (root_a.not_psd) {
    result.a_not_psd = true;
    result.negative_eigenvalue = root_a.negative_eigenvalue;
    return result;
  }
  const psd_root root_b = covariance_root(b.covariance, dim, offset, "covariance of set B");
  if (root_b.not_psd) {
    result.b_not_psd = true;
    result.negative_eigenvalue = root_b.negative_eigenvalue;
    return result;
  }

  std::vector<double> product(dim * dim);
  gemm_row_major(root_a.root.data(), dim, dim, false, root_b.root.data(), dim, dim, false,
                 product.data());
  const auto view = xt::adapt(product.data(), dim * dim, xt::no_ownership(),
                              std::array<std::size_t, 2>{dim, dim});
  try {
    const auto singular_values = std::get<1>(xt::linalg::svd(view, false, false));
    for (const double value : singular_values) result.value += value;
  } catch (const std::runtime_error& failure) {
    throw error(concat("singular values of S_A^(1/2) S_B^(1/2) (", dim, " x ", dim,
                       ") failed in LAPACK gesdd: ", failure.what()));
  }
  return result;
}

// Throws argument_error unless `stats` is consistent and finite.
inline void check_gaussian_stats(const gaussian_stats& stats, std::string_view set_name) {
  if (stats.dim == 0) throw argument_error(concat("gaussian_stats of ", set_name, " has dim 0"));
  if (stats.mean.size() != stats.dim) {
    throw argument_error(concat("gaussian_stats of ", set_name, " has ", stats.mean.size(),
                                " mean values for dim = ", stats.dim));
  }
  if (stats.covariance.size() != stats.dim * stats.dim) {
    throw argument_error(concat("gaussian_stats of ", set_name, " has ", stats.covariance.size(),
                                " covariance values for dim = ", stats.dim, ", expected ",
                                stats.dim * stats.dim));
  }
  if (stats.count == 1) {
    throw argument_error(concat("gaussian_stats of ", set_name,
                                " has count 1; a covariance needs at least 2 samples"));
  }
  check_finite(feature_matrix(1, stats.dim, stats.mean), concat("the mean of ", set_name));
  check_finite(feature_matrix(stats.dim, stats.dim, stats.covariance),
               concat("the covariance of ", set_name));
}

}  // namespace detail

inline gaussian_stats fit_gaussian(const feature_matrix& features, std::string_view set_name) {
  check_finite(features, set_name);
  const std::size_t rows = features.rows;
  const std::size_t cols = features.cols;
  if (rows < 2) {
    throw argument_error(detail::concat(set_name, " has ", rows, rows == 1 ? " sample" : " samples",
                                        "; a covariance needs at least 2"));
  }
  if (cols == 0) throw argument_error(detail::concat(set_name, " has no feature columns"));

  gaussian_stats stats{std::vector<double>(cols, 0.0), std::vector<double>(cols * cols), cols,
                       rows};
  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t c = 0; c < cols; ++c) stats.mean[c] += features(r, c);
  }
  for (double& value : stats.mean) value /= static_cast<double>(rows);

  // Centering before the product keeps the covariance accurate when the mean
  // is large against the spread.
  std::vector<double> centered(features.values);
  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t c = 0; c < cols; ++c) centered[r * cols + c] -= stats.mean[c];
  }
  detail::syrk_upper_row_major(centered.data(), rows, cols, true, stats.covariance.data());
  const double divisor = static_cast<double>(rows - 1);
  for (std::size_t i = 0; i < cols; ++i) {
    for (std::size_t j = i; j < cols; ++j) {
      stats.covariance[i * cols + j] /= divisor;
      stats.covariance[j * cols + i] = stats.covariance[i * cols + j];
    }
  }
  return stats;
}

inline frechet_result frechet_distance(const gaussian_stats& a, const gaussian_stats& b) {
  detail::check_gaussian_stats(a, "set A");
  detail::check_gaussian_stats(b, "set B");
  if (a.dim != b.dim) {
    throw argument_error(detail::concat("feature dimensions differ: set A has d = ", a.dim,
                                        ", set B has d = ", b.dim));
  }
  const std::size_t dim = a.dim;
  frechet_result result;
  for (const auto& [stats, name] : {std::pair{&a, "set A"}, std::pair{&b, "set B"}}) {
    if (stats->count > 0 && stats->count <= dim) {
      result.warnings.push_back(detail::concat(name, " has N = ", stats->count, " samples for d = ",
                                               dim, " features; its covariance is singular"));
    }
  }

  detail::sqrt_trace trace = detail::trace_sqrt_product(a, b, 0.0);
  if (trace.a_not_psd || trace.b_not_psd) {
    result.offset_used = detail::frechet_offset;
    result.warnings.push_back(detail::concat(
        trace.a_not_psd ? "covariance of set A" : "covariance of set B", " has eigenvalue ",
        trace.negative_eigenvalue, ", too negative for rounding; added ", result.offset_used,
        " to the diagonal of both covariances"));
    trace = detail::trace_sqrt_product(a, b, result.offset_used);
  }
  if (trace.a_not_psd || trace.b_not_psd) {
    throw argument_error(
        detail::concat("covariance of ", trace.a_not_psd ? "set A" : "set B",
                       " is not positive semidefinite even with ", result.offset_used,
                       " added to the diagonal: it has eigenvalue ", trace.negative_eigenvalue));
  }

  double mean_term = 0.0;
  double trace_a = 0.0;
  double trace_b = 0.0;
  for (std::size_t i = 0; i < dim; ++i) {
    const double difference = a.mean[i] - b.mean[i];
    mean_term += difference * difference;
    trace_a += a.covariance[i * dim + i] + result.offset_used;
    trace_b += b.covariance[i * dim + i] + result.offset_used;
  }
  result.value = std::max(0.0, mean_term + trace_a + trace_b - 2.0 * trace.value);
  return result;
}

inline frechet_result frechet_distance(const feature_matrix& a, const feature_matrix& b) {
  if (a.cols != b.cols) {
    throw argument_error(detail::concat("feature dimensions differ: set A has d = ", a.cols,
                                        ", set B has d = ", b.cols));
  }
  return frechet_distance(fit_gaussian(a, "set A"), fit_gaussian(b, "set B"));
}

}  // namespace advgan
