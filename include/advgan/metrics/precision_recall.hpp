#pragma once
// k-nearest-neighbour manifold metrics between a real and a fake feature set.
//
// Each sample gets a ball whose radius is the distance to its k-th nearest
// neighbour in its own set. The sample itself is not its own neighbour, but a
// duplicate of it is. The union of a set's balls estimates its manifold.
// - Precision and recall (Kynkaanniemi et al., "Improved precision and recall
//   metric for assessing generative models", NeurIPS 2019) are the shares of
//   fake samples inside the real manifold and of real samples inside the fake
//   one.
// - Density and coverage (Naeem et al., "Reliable fidelity and diversity
//   metrics for generative models", ICML 2020): density counts the real balls
//   around each of the M fake samples, (1 / (k M)) sum_j sum_i
//   [d(fake_j, real_i) <= r_i], and coverage is the share of real balls that
//   contain at least one fake sample.
// A point exactly on a sphere (distance == radius) counts as inside, as in
// the precision/recall code of Kynkaanniemi et al. The prdc package of
// Naeem et al. compares with a strict <, which differs only on such ties.
//
// Distances come from the Gram expansion |a|^2 + |b|^2 - 2 a.b, one BLAS gemm
// per block of rows. Each pass first shifts its rows by one common center,
// which keeps the expansion accurate for features far from the origin. The
// expansion is not symmetric bit for bit, so radii and every comparison that
// falls within its rounding error bound use the exact sum of squared
// differences instead. A sample then lies exactly on the sphere through its
// k-th neighbour, and exact duplicates are at distance exactly 0.

#include <algorithm>    // std::min, std::max
#include <cstddef>      // std::size_t
#include <limits>       // std::numeric_limits
#include <string_view>  // std::string_view
#include <utility>      // std::pair
#include <vector>       // std::vector

#include "advgan/core/error.hpp"
#include "advgan/metrics/features.hpp"

namespace advgan {

/// Precision and recall, each a share in [0, 1].
struct precision_recall_result {
  double precision = 0.0;
  double recall = 0.0;
};

/// Density, in [0, N / k] for N real samples and near 1 when the fake samples
/// spread like the real ones, and coverage, a share in [0, 1].
struct density_coverage_result {
  double density = 0.0;
  double coverage = 0.0;
};

/// Computes precision and recall with k-nearest-neighbour balls (k = 3 by
/// default, the value common implementations use). Throws argument_error if k is 0 or
/// not below the sample count of either set, the feature dimensions differ,
/// or a feature is not finite.
precision_recall_result precision_recall(const feature_matrix& real, const feature_matrix& fake,
                                         std::size_t k = 3);

/// Computes density and coverage with k-nearest-neighbour balls around the
/// real samples (k = 5 by default, a common choice for these metrics).
/// Throws argument_error if k is 0 or not below the real sample count, the
/// fake set is empty, the feature dimensions differ, or a feature is not
/// finite.
density_coverage_result density_coverage(const feature_matrix& real, const feature_matrix& fake,
                                         std::size_t k = 5);

// ---------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------

namespace detail {

// Rows of a feature set minus a center, with their squared norms.
struct centered_set {
  std::size_t rows = 0;
  std::size_t cols = 0;
  std::vector<double> values;
  std::vector<double> squared_norms;
};

inline std::vector<double> column_means(const feature_matrix& set) {
  std::vector<double> means(set.cols, 0.0);
  for (std::size_t r = 0; r < set.rows; ++r) {
    for (std::size_t c = 0; c < set.cols; ++c) means[c] += set(r, c);
  }
  for (double& value : means) value /= static_cast<double>(set.rows);
  return means;
}

inline centered_set center_rows(const feature_matrix& set, const std::vector<double>& center) {
  centered_set result{set.rows, set.cols, set.values, std::vector<double>(set.rows, 0.0)};
  for (std::size_t r = 0; r < set.rows; ++r) {
    for (std::size_t c = 0; c < set.cols; ++c) {
      double& value = result.values[r * set.cols + c];
      value -= center[c];
      result.squared_norms[r] += value * value;
    }
  }
  return result;
}

// Calls visit(row, distances) for each row of `a`, where `distances` points
// to the b.rows squared distances from that row to the rows of `b`.
// Rows are visited in order, a block of rows per gemm.
template <class Visit>
void for_each_distance_row(const centered_set& a, const centered_set& b, Visit&& visit) {
  constexpr std::size_t block_values = std::size_t{1} << 22;  // 32 MiB of doubles
  const std::size_t block_rows = std::max<std::size_t>(1, block_values / b.rows);
  std::vector<double> block(std::min(block_rows, a.rows) * b.rows);
  for (std::size_t begin = 0; begin < a.rows; begin += block_rows) {
    const std::size_t count = std::min(block_rows, a.rows - begin);
    gemm_row_major(a.values.data() + begin * a.cols, count, a.cols, false, b.values.data(), b.rows,
                   b.cols, true, block.data());
    for (std::size_t local = 0; local < count; ++local) {
      const std::size_t row = begin + local;
      double* distances = block.data() + local * b.rows;
      for (std::size_t j = 0; j < b.rows; ++j) {
        const double norms = a.squared_norms[row] + b.squared_norms[j];
        distances[j] = std::max(0.0, norms - 2.0 * distances[j]);
      }
      visit(row, static_cast<const double*>(distances));
    }
  }
}

// Returns the squared distance between row `row` of `a` and row `j` of `b`
// summed from the differences, which is symmetric bit for bit.
inline double exact_squared_distance(const centered_set& a, std::size_t row, const centered_set& b,
                                     std::size_t j) {
  const double* a_row = a.values.data() + row * a.cols;
  const double* b_row = b.values.data() + j * b.cols;
  double distance = 0.0;
  for (std::size_t c = 0; c < a.cols; ++c)
    distance += (a_row[c] - b_row[c]) * (a_row[c] - b_row[c]);
  return distance;
}

// Returns whether the squared distance between row `row` of `a` and row `j`
// of `b`, whose Gram expansion is `gram_distance`, is at most `radius`. The
// gemm and the squared norms each err by at most about
// cols * epsilon * (|a|^2 + |b|^2); within 4 (cols + 2) times that of the
// radius the exact distance decides.
inline bool within_radius(const centered_set& a, std::size_t row, const centered_set& b,
                          std::size_t j, double gram_distance, double radius) {
  const double error_bound = 4.0 * static_cast<double>(a.cols + 2) *
                             std::numeric_limits<double>::epsilon() *
                             (a.squared_norms[row] + b.squared_norms[j]);
  if (gram_distance < radius - error_bound) return true;
  if (gram_distance > radius + error_bound) return false;
  return exact_squared_distance(a, row, b, j) <= radius;
}

// The k smallest (squared distance, index) pairs offered for each row,
// ascending; the lower index wins ties.
class nearest_neighbours {
 public:
  nearest_neighbours(std::size_t rows, std::size_t k)
      : k_(k),
        best_(rows * k,
              {std::numeric_limits<double>::infinity(), std::numeric_limits<std::size_t>::max()}) {}

  void offer(std::size_t row, double distance, std::size_t index) {
    std::pair<double, std::size_t>* list = best_.data() + row * k_;
    const std::pair<double, std::size_t> candidate{distance, index};
    if (!(candidate < list[k_ - 1])) return;
    std::size_t position = k_ - 1;
    for (; position > 0 && candidate < list[position - 1]; --position) {
      list[position] = list[position - 1];
    }
    list[position] = candidate;
  }

  std::size_t kth_index(std::size_t row) const { return best_[row * k_ + k_ - 1].second; }

 private:
  std::size_t k_;
  std::vector<std::pair<double, std::size_t>> best_;
};

// Returns the squared distance from each row of `set` to its k-th nearest
// other row, picked by the Gram expansion and then measured exactly. Each
// pair is computed once, from blocks on and above the diagonal of the
// blocked distance matrix, which halves the gemm work.
inline std::vector<double> knn_squared_radii(const centered_set& set, std::size_t k) {
  constexpr std::size_t block_side = 2048;  // 32 MiB of doubles per block
  const std::size_t block = std::min(block_side, set.rows);
  std::vector<double> gram(block * block);
  nearest_neighbours neighbours(set.rows, k);
  for (std::size_t first = 0; first < set.rows; first += block) {
    const std::size_t first_count = std::min(block, set.rows - first);
    for (std::size_t second = first; second < set.rows; second += block) {
      const std::size_t second_count = std::min(block, set.rows - second);
      gemm_row_major(set.values.data() + first * set.cols, first_count, set.cols, false,
                     set.values.data() + second * set.cols, second_count, set.cols, true,
                     gram.data());
      for (std::size_t a = 0; a < first_count; ++a) {
        const std::size_t i = first + a;
        for (std::size_t b = (first == second ? a + 1 : 0); b < second_count; ++b) {
          const std::size_t j = second + b;
          const double distance = std::max(
              0.0, set.squared_norms[i] + set.squared_norms[j] - 2.0 * gram[a * second_count + b]);
          neighbours.offer(i, distance, j);
          neighbours.offer(j, distance, i);
        }
      }
    }
  }
  std::vector<double> radii(set.rows);
  for (std::size_t row = 0; row < set.rows; ++row) {
    radii[row] = exact_squared_distance(set, row, set, neighbours.kth_index(row));
  }
  return radii;
}

// Counts of fake-in-real-ball and real-in-fake-ball events over all pairs.
struct manifold_counts {
  std::size_t fakes_in_real_manifold = 0;  // fakes inside at least one real ball
  std::size_t reals_in_fake_manifold = 0;  // reals inside at least one fake ball
  std::size_t real_ball_hits = 0;          // (fake, real ball containing it) pairs
  std::size_t covered_reals = 0;           // real balls containing at least one fake
};

// Compares every fake-real distance with the real radii and, when
// `fake_radii` is not null, with the fake radii.
inline manifold_counts count_manifold_hits(const centered_set& fake, const centered_set& real,
                                           const std::vector<double>& real_radii,
                                           const std::vector<double>* fake_radii) {
  manifold_counts counts;
  std::vector<bool> real_covered(real.rows, false);
  std::vector<bool> real_reached(real.rows, false);
  for_each_distance_row(fake, real, [&](std::size_t row, const double* distances) {
    std::size_t hits = 0;
    for (std::size_t i = 0; i < real.rows; ++i) {
      if (within_radius(fake, row, real, i, distances[i], real_radii[i])) {
        ++hits;
        real_covered[i] = true;
      }
      if (fake_radii != nullptr && !real_reached[i] &&
          within_radius(fake, row, real, i, distances[i], (*fake_radii)[row])) {
        real_reached[i] = true;
      }
    }
    counts.real_ball_hits += hits;
    if (hits > 0) ++counts.fakes_in_real_manifold;
  });
  for (std::size_t i = 0; i < real.rows; ++i) {
    counts.covered_reals += real_covered[i] ? 1 : 0;
    counts.reals_in_fake_manifold += real_reached[i] ? 1 : 0;
  }
  return counts;
}

// Throws argument_error unless the sets are comparable and finite.
inline void check_real_and_fake(const feature_matrix& real, const feature_matrix& fake) {
  if (real.cols != fake.cols) {
    throw argument_error(concat("feature dimensions differ: real set has d = ", real.cols,
                                ", fake set has d = ", fake.cols));
  }
  if (real.cols == 0) throw argument_error("feature sets have no feature columns");
  check_finite(real, "real set");
  check_finite(fake, "fake set");
}

// Throws argument_error unless `set` has more than k samples.
inline void check_neighbour_count(std::size_t k, std::size_t rows, std::string_view set_name) {
  if (k == 0) throw argument_error("k = 0: the k-th nearest neighbour needs k >= 1");
  if (k >= rows) {
    throw argument_error(concat("k = ", k, " needs more than ", k, " samples in the ", set_name,
                                " (a sample is not its own neighbour), got ", rows));
  }
}

}  // namespace detail

inline precision_recall_result precision_recall(const feature_matrix& real,
                                                const feature_matrix& fake, std::size_t k) {
  detail::check_real_and_fake(real, fake);
  detail::check_neighbour_count(k, real.rows, "real set");
  detail::check_neighbour_count(k, fake.rows, "fake set");

  const std::vector<double> real_mean = detail::column_means(real);
  const detail::centered_set real_centered = detail::center_rows(real, real_mean);
  const std::vector<double> real_radii = detail::knn_squared_radii(real_centered, k);
  // Centering the fake set on its own mean makes collapsed fakes exact zeros.
  const std::vector<double> fake_radii =
      detail::knn_squared_radii(detail::center_rows(fake, detail::column_means(fake)), k);

  const detail::manifold_counts counts = detail::count_manifold_hits(
      detail::center_rows(fake, real_mean), real_centered, real_radii, &fake_radii);
  return {static_cast<double>(counts.fakes_in_real_manifold) / static_cast<double>(fake.rows),
          static_cast<double>(counts.reals_in_fake_manifold) / static_cast<double>(real.rows)};
}

inline density_coverage_result density_coverage(const feature_matrix& real,
                                                const feature_matrix& fake, std::size_t k) {
  detail::check_real_and_fake(real, fake);
  detail::check_neighbour_count(k, real.rows, "real set");
  if (fake.rows == 0) throw argument_error("density_coverage needs at least 1 fake sample, got 0");

  const std::vector<double> real_mean = detail::column_means(real);
  const detail::centered_set real_centered = detail::center_rows(real, real_mean);
  const std::vector<double> real_radii = detail::knn_squared_radii(real_centered, k);
  const detail::manifold_counts counts = detail::count_manifold_hits(
      detail::center_rows(fake, real_mean), real_centered, real_radii, nullptr);
  return {static_cast<double>(counts.real_ball_hits) /
              (static_cast<double>(k) * static_cast<double>(fake.rows)),
          static_cast<double>(counts.covered_reals) / static_cast<double>(real.rows)};
}

}  // namespace advgan
