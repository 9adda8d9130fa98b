// Tests of the metrics on feature matrices. Reference values come from
// tests/fixtures/make_metric_fixtures.py (numpy and scipy), stored under
// tests/fixtures/metrics/; closed-form cases show their arithmetic inline.

#include <doctest/doctest.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "advgan/core/philox.hpp"
#include "advgan/metrics/metrics.hpp"

namespace {

using advgan::feature_matrix;

using matrix_map = std::map<std::string, feature_matrix>;

// Reads a fixture file: '#' lines are comments, and each matrix is a header
// "name rows cols" followed by rows * cols numbers in row-major order.
matrix_map read_matrices(const std::string& file_name) {
  const std::string path = std::string(ADVGAN_FIXTURE_DIR) + "/metrics/" + file_name;
  std::ifstream file(path);
  REQUIRE_MESSAGE(file.good(), "cannot open fixture " << path);
  std::stringstream content;
  for (std::string line; std::getline(file, line);) {
    if (!line.empty() && line[0] != '#') content << line << '\n';
  }
  matrix_map matrices;
  std::string name;
  std::size_t rows = 0;
  std::size_t cols = 0;
  while (content >> name >> rows >> cols) {
    std::vector<double> values(rows * cols);
    for (double& value : values) {
      const bool read = static_cast<bool>(content >> value);
      REQUIRE_MESSAGE(read, "matrix " << name << " in " << path << " has fewer than " << rows * cols
                                      << " values");
    }
    matrices.emplace(name, feature_matrix(rows, cols, std::move(values)));
  }
  return matrices;
}

const matrix_map& inputs() {
  static const matrix_map matrices = read_matrices("inputs.txt");
  return matrices;
}

const matrix_map& expected() {
  static const matrix_map matrices = read_matrices("expected.txt");
  return matrices;
}

const feature_matrix& input(const std::string& name) {
  const auto found = inputs().find(name);
  REQUIRE_MESSAGE(found != inputs().end(), "inputs.txt has no matrix " << name);
  return found->second;
}

double expected_value(const std::string& name, std::size_t index = 0) {
  const auto found = expected().find(name);
  REQUIRE_MESSAGE(found != expected().end(), "expected.txt has no matrix " << name);
  REQUIRE(index < found->second.values.size());
  return found->second.values[index];
}

void check_relative(double actual, double reference, double tolerance) {
  INFO("actual ", actual, ", reference ", reference, ", relative tolerance ", tolerance);
  CHECK(std::abs(actual - reference) <= tolerance * std::abs(reference));
}

std::vector<std::size_t> labels_of(const feature_matrix& matrix) {
  std::vector<std::size_t> labels;
  for (const double value : matrix.values) labels.push_back(static_cast<std::size_t>(value));
  return labels;
}

feature_matrix normal_features(std::size_t rows, std::size_t cols, std::uint64_t seed) {
  advgan::philox generator(seed);
  feature_matrix features(rows, cols);
  for (double& value : features.values) value = generator.normal();
  return features;
}

feature_matrix transformed(feature_matrix features, double scale, double shift) {
  for (double& value : features.values) value = value * scale + shift;
  return features;
}

advgan::gaussian_stats diagonal_gaussian(std::vector<double> mean, std::vector<double> diagonal) {
  const std::size_t dim = mean.size();
  std::vector<double> covariance(dim * dim, 0.0);
  for (std::size_t i = 0; i < dim; ++i) covariance[i * dim + i] = diagonal[i];
  return {std::move(mean), std::move(covariance), dim, 1000};
}

template <class Function>
std::string error_message(Function&& function) {
  try {
    function();
  } catch (const advgan::argument_error& failure) {
    return failure.what();
  }
  FAIL("expected advgan::argument_error");
  return {};
}

}  // namespace

TEST_CASE("feature_matrix rejects wrong value count") {
  CHECK_THROWS_AS(feature_matrix(2, 3, std::vector<double>(5)), advgan::shape_error);
  CHECK_NOTHROW(feature_matrix(2, 3, std::vector<double>(6)));
}

TEST_CASE("check_finite names set, row, column and value") {
  feature_matrix features(5, 8);
  features(3, 7) = std::nan("");
  CHECK(error_message([&] { advgan::check_finite(features, "set B"); }) ==
        "NaN feature in set B at row 3, column 7");
  features(3, 7) = 0.0;
  features(0, 2) = -INFINITY;
  CHECK(error_message([&] { advgan::check_finite(features, "set A"); }) ==
        "infinite feature -inf in set A at row 0, column 2");
}

TEST_CASE("NaN features rejected by every metric") {
  const feature_matrix clean = normal_features(12, 8, 1);
  feature_matrix broken = clean;
  broken(3, 7) = std::nan("");
  const std::string in_set_b = "NaN feature in set B at row 3, column 7";
  CHECK(error_message([&] { advgan::frechet_distance(clean, broken); }) == in_set_b);
  CHECK(error_message([&] {
          advgan::kernel_inception_distance(clean, broken, {4, 2, 0});
        }) == in_set_b);
  CHECK(error_message([&] { advgan::polynomial_mmd2(clean, broken); }) == in_set_b);
  CHECK(error_message([&] { advgan::precision_recall(broken, clean); }) ==
        "NaN feature in real set at row 3, column 7");
  CHECK(error_message([&] { advgan::density_coverage(clean, broken); }) ==
        "NaN feature in fake set at row 3, column 7");
  CHECK(error_message([&] { advgan::fit_gaussian(broken, "validation set"); }) ==
        "NaN feature in validation set at row 3, column 7");
  CHECK(error_message([&] { advgan::predicted_labels(broken, "sample set"); }) ==
        "NaN feature in sample set at row 3, column 7");
  feature_matrix probabilities(4, 2, std::vector<double>(8, 0.5));
  probabilities(2, 1) = std::nan("");
  CHECK(error_message([&] { advgan::inception_score(probabilities, 2); }) ==
        "NaN feature in class probabilities at row 2, column 1");
}

TEST_CASE("fit_gaussian matches numpy mean and cov") {
  const advgan::gaussian_stats stats = advgan::fit_gaussian(input("set_a"), "set A");
  REQUIRE(stats.dim == 16);
  CHECK(stats.count == 200);
  for (std::size_t i = 0; i < 16; ++i) {
    CHECK(std::abs(stats.mean[i] - expected_value("mean_a", i)) <= 1e-14);
  }
  for (std::size_t i = 0; i < 16 * 16; ++i) {
    check_relative(stats.covariance[i], expected_value("covariance_a", i), 1e-12);
  }
}

TEST_CASE("fit_gaussian rejects a single sample") {
  const std::string message =
      error_message([] { advgan::fit_gaussian(feature_matrix(1, 4), "set B"); });
  CHECK(message.find("set B") != std::string::npos);
  CHECK(message.find("1 sample") != std::string::npos);
}

TEST_CASE("frechet_distance matches scipy sqrtm") {
  const advgan::frechet_result ab = advgan::frechet_distance(input("set_a"), input("set_b"));
  check_relative(ab.value, expected_value("fid_ab"), 1e-9);
  CHECK(ab.offset_used == 0.0);
  CHECK(ab.warnings.empty());
  const advgan::frechet_result cd = advgan::frechet_distance(input("set_c"), input("set_d"));
  check_relative(cd.value, expected_value("fid_cd"), 1e-9);
}

TEST_CASE("frechet_distance of a set with itself") {
  CHECK(std::abs(advgan::frechet_distance(input("set_a"), input("set_a")).value) <= 1e-8);
  CHECK(std::abs(advgan::frechet_distance(input("set_c"), input("set_c")).value) <= 1e-8);
}

TEST_CASE("frechet_distance closed forms") {
  SUBCASE("shifted and scaled identity") {
    // |mu_A - mu_B|^2 = 4, tr(S_A) + tr(S_B) = 4 + 16, tr(sqrt(4 I)) = 8: 4 + 20 - 16 = 8.
    const auto a = diagonal_gaussian({0, 0, 0, 0}, {1, 1, 1, 1});
    const auto b = diagonal_gaussian({1, 1, 1, 1}, {4, 4, 4, 4});
    CHECK(std::abs(advgan::frechet_distance(a, b).value - 8.0) <= 1e-12);
  }
  SUBCASE("orthogonal singular covariances") {
    // S_A S_B = 0, so the distance is tr(S_A) + tr(S_B) = 2.
    const auto a = diagonal_gaussian({0, 0}, {1, 0});
    const auto b = diagonal_gaussian({0, 0}, {0, 1});
    const advgan::frechet_result result = advgan::frechet_distance(a, b);
    CHECK(std::abs(result.value - 2.0) <= 1e-12);
    CHECK(result.offset_used == 0.0);
  }
  SUBCASE("equal singular covariances") {
    const auto a = diagonal_gaussian({0, 0, 0, 0}, {1, 1, 0, 0});
    const advgan::frechet_result result = advgan::frechet_distance(a, a);
    CHECK(std::abs(result.value) <= 1e-12);
    CHECK(result.offset_used == 0.0);
  }
}

TEST_CASE("frechet_distance with fewer samples than features") {
  const feature_matrix x = normal_features(10, 64, 7);
  const advgan::frechet_result same = advgan::frechet_distance(x, x);
  const advgan::frechet_result shifted = advgan::frechet_distance(x, transformed(x, 1.0, 1.0));
  CHECK(std::isfinite(same.value));
  CHECK(std::isfinite(shifted.value));
  CHECK(std::abs(same.value) <= 1e-10);
  // Only the means differ, by 1 in each of 64 features. The square roots of
  // the 55 zero eigenvalues of each covariance would add about 5e-6 here if
  // rounding noise in them were not taken as 0.
  CHECK(std::abs(shifted.value - 64.0) <= 1e-9 * 64.0);
  REQUIRE(shifted.warnings.size() == 2);
  CHECK(shifted.warnings[0] ==
        "set A has N = 10 samples for d = 64 features; its covariance is singular");
  CHECK(shifted.warnings[1].find("set B has N = 10") != std::string::npos);

  // Scaling by 2 gives mu_B = 2 mu_A and S_B = 4 S_A, so the distance is
  // |mu_A|^2 + tr(S_A) + 4 tr(S_A) - 2 tr(2 S_A) = |mu_A|^2 + tr(S_A).
  const advgan::gaussian_stats stats = advgan::fit_gaussian(x, "set A");
  double reference = 0.0;
  for (std::size_t i = 0; i < 64; ++i) {
    reference += stats.mean[i] * stats.mean[i] + stats.covariance[i * 64 + i];
  }
  const advgan::frechet_result scaled = advgan::frechet_distance(x, transformed(x, 2.0, 0.0));
  check_relative(scaled.value, reference, 1e-9);
  CHECK(scaled.offset_used == 0.0);
}

TEST_CASE("frechet_distance with low-rank rectified features") {
  // Features relu(Z W) of rank at most 12 in 72 dimensions, plus 24 units
  // that are almost dead (variance 1e-8), as the penultimate layer of a
  // classifier can give. The covariance has eigenvalues of 1e-8 of its
  // largest, whose squares are below the rounding level of S_A S_B.
  const feature_matrix z = normal_features(400, 12, 11);
  const feature_matrix w = normal_features(12, 96, 12);
  feature_matrix x = transformed(normal_features(400, 96, 13), 1e-4, 0.0);
  for (std::size_t r = 0; r < 400; ++r) {
    for (std::size_t c = 24; c < 96; ++c) {
      double sum = 0.0;
      for (std::size_t k = 0; k < 12; ++k) sum += z(r, k) * w(k, c);
      x(r, c) = std::max(sum, 0.0);
    }
  }
  const advgan::gaussian_stats stats = advgan::fit_gaussian(x, "set A");
  double trace = 0.0;
  for (std::size_t i = 0; i < 96; ++i) trace += stats.covariance[i * 96 + i];
  // The distance of a set to itself is 0 to within rounding of the traces.
  CHECK(advgan::frechet_distance(x, x).value <= 1e-12 * trace);
  // A shift by 0.5 in every feature adds 96 * 0.25 and nothing else.
  check_relative(advgan::frechet_distance(x, transformed(x, 1.0, 0.5)).value, 24.0, 1e-10);
}

TEST_CASE("frechet_distance offset for slightly indefinite covariance") {
  // S_B = diag(3, -1e-8) has an eigenvalue below 0 beyond rounding, so 1e-6
  // goes onto both diagonals.
  // The distance of diagonal Gaussians is then sum_i (sqrt(a_i + eps) - sqrt(b_i + eps))^2.
  const auto a = diagonal_gaussian({0, 0}, {1, 2});
  const auto b = diagonal_gaussian({0, 0}, {3, -1e-8});
  const advgan::frechet_result result = advgan::frechet_distance(a, b);
  CHECK(result.offset_used == 1e-6);
  REQUIRE(result.warnings.size() == 1);
  CHECK(result.warnings[0].find("covariance of set B has eigenvalue -1e-08") != std::string::npos);
  const double eps = 1e-6;
  const double first = std::sqrt(1 + eps) - std::sqrt(3 + eps);
  const double second = std::sqrt(2 + eps) - std::sqrt(-1e-8 + eps);
  check_relative(result.value, first * first + second * second, 1e-12);
}

TEST_CASE("frechet_distance rejects indefinite covariance") {
  const auto a = diagonal_gaussian({0, 0}, {1, 1});
  const auto b = diagonal_gaussian({0, 0}, {1, -0.5});
  const std::string message = error_message([&] { advgan::frechet_distance(a, b); });
  CHECK(message.find("covariance of set B is not positive semidefinite") != std::string::npos);
  const std::string swapped = error_message([&] { advgan::frechet_distance(b, a); });
  CHECK(swapped.find("covariance of set A is not positive semidefinite") != std::string::npos);
}

TEST_CASE("frechet_distance rejects different dimensions") {
  const std::string message = error_message(
      [] { advgan::frechet_distance(normal_features(5, 3, 1), normal_features(5, 4, 2)); });
  CHECK(message == "feature dimensions differ: set A has d = 3, set B has d = 4");
}

TEST_CASE("KID exact constant sets") {
  // k(0, 0) = 1, k(1, 1) = (1 + 1)^3 = 8, k(0, 1) = 1: MMD^2 = 1 + 8 - 2 * 1 = 7.
  const feature_matrix x(2, 1, {0.0, 0.0});
  const feature_matrix y(2, 1, {1.0, 1.0});
  const advgan::kid_result result = advgan::kernel_inception_distance(x, y, {2, 10, 0});
  CHECK(result.mean == 7.0);
  CHECK(result.stddev == 0.0);
  CHECK(result.subset_values.size() == 10);
}

TEST_CASE("polynomial_mmd2 matches numpy") {
  check_relative(advgan::polynomial_mmd2(input("set_a"), input("set_b")), expected_value("mmd2_ab"),
                 1e-10);
  check_relative(advgan::polynomial_mmd2(input("set_c"), input("set_d")), expected_value("mmd2_cd"),
                 1e-10);
}

TEST_CASE("KID with whole-set subsets matches numpy") {
  // Drawing all 50 rows without replacement permutes the sets, which leaves
  // the MMD^2 unchanged: every subset gives the full-set value.
  const advgan::kid_result result =
      advgan::kernel_inception_distance(input("set_c"), input("set_d"), {50, 5, 3});
  check_relative(result.mean, expected_value("mmd2_cd"), 1e-10);
  CHECK(result.stddev <= 1e-10 * result.mean);
  for (const double value : result.subset_values) {
    check_relative(value, expected_value("mmd2_cd"), 1e-10);
  }
}

TEST_CASE("KID subsets follow the documented draw") {
  // Each subset is a partial Fisher-Yates shuffle of x's rows, then of y's,
  // on one philox stream seeded with options.seed.
  const feature_matrix& x = input("set_a");
  const feature_matrix& y = input("set_b");
  const advgan::kid_options options{20, 3, 11};
  const advgan::kid_result result = advgan::kernel_inception_distance(x, y, options);
  REQUIRE(result.subset_values.size() == 3);

  advgan::philox generator(options.seed);
  const auto draw = [&](const feature_matrix& set) {
    std::vector<std::size_t> order(set.rows);
    for (std::size_t i = 0; i < set.rows; ++i) order[i] = i;
    feature_matrix subset(options.subset_size, set.cols);
    for (std::size_t i = 0; i < options.subset_size; ++i) {
      const auto remaining = static_cast<std::uint32_t>(set.rows - i);
      std::swap(order[i], order[i + generator.below(remaining)]);
      for (std::size_t c = 0; c < set.cols; ++c) subset(i, c) = set(order[i], c);
    }
    return subset;
  };
  std::vector<double> recomputed;
  for (const double value : result.subset_values) {
    const feature_matrix x_subset = draw(x);
    const feature_matrix y_subset = draw(y);
    recomputed.push_back(advgan::polynomial_mmd2(x_subset, y_subset));
    check_relative(value, recomputed.back(), 1e-12);
  }
  // Population standard deviation, dividing by the subset count 3.
  const double mean = (recomputed[0] + recomputed[1] + recomputed[2]) / 3.0;
  double squared_deviations = 0.0;
  for (const double value : recomputed) squared_deviations += (value - mean) * (value - mean);
  check_relative(result.mean, mean, 1e-12);
  check_relative(result.stddev, std::sqrt(squared_deviations / 3.0), 1e-9);
}

TEST_CASE("KID seed determines the subsets") {
  const advgan::kid_result first =
      advgan::kernel_inception_distance(input("set_a"), input("set_b"), {30, 4, 5});
  const advgan::kid_result again =
      advgan::kernel_inception_distance(input("set_a"), input("set_b"), {30, 4, 5});
  const advgan::kid_result other =
      advgan::kernel_inception_distance(input("set_a"), input("set_b"), {30, 4, 6});
  CHECK(first.subset_values == again.subset_values);
  CHECK(first.subset_values != other.subset_values);
}

TEST_CASE("KID argument errors") {
  const feature_matrix x = normal_features(50, 4, 1);
  const feature_matrix y = normal_features(60, 4, 2);
  CHECK(error_message([&] {
          advgan::kernel_inception_distance(x, y, {100, 10, 0});
        }) == "subset_size = 100 exceeds the sample counts 50 and 60");
  CHECK(error_message([&] {
          advgan::kernel_inception_distance(x, y, {55, 10, 0});
        }) == "subset_size = 55 exceeds the sample counts 50 and 60");
  CHECK(error_message([&] {
          advgan::kernel_inception_distance(x, y, {1, 10, 0});
        }) == "KID needs subset_size >= 2 for the unbiased estimator, got 1");
  CHECK(error_message([&] {
          advgan::kernel_inception_distance(x, y, {10, 0, 0});
        }) == "KID needs subsets >= 1, got 0");
  const feature_matrix narrow = normal_features(60, 3, 3);
  CHECK(error_message([&] {
          advgan::kernel_inception_distance(x, narrow, {10, 10, 0});
        }) == "feature dimensions differ: set A has d = 4, set B has d = 3");
}

TEST_CASE("inception_score matches numpy") {
  const feature_matrix& probabilities = input("probabilities");
  for (const std::size_t splits : {10, 7, 3, 1}) {
    INFO("splits = ", splits);
    const std::string name = "is_" + std::to_string(splits);
    const advgan::inception_score_result result = advgan::inception_score(probabilities, splits);
    CHECK(result.split_scores.size() == splits);
    check_relative(result.mean, expected_value(name, 0), 1e-12);
    if (splits == 1) {
      CHECK(result.stddev == 0.0);
    } else {
      check_relative(result.stddev, expected_value(name, 1), 1e-10);
    }
  }
}

TEST_CASE("inception_score closed forms") {
  SUBCASE("uniform probabilities give 1") {
    // Every row equals the marginal, so each KL is 0 and exp(0) = 1.
    const feature_matrix uniform(20, 5, std::vector<double>(100, 0.2));
    const advgan::inception_score_result result = advgan::inception_score(uniform, 4);
    CHECK(std::abs(result.mean - 1.0) <= 1e-15);
    CHECK(result.stddev <= 1e-15);
  }
  SUBCASE("distinct one-hot rows give the class count") {
    // The marginal is uniform 1/6, so each KL is log 6 and the score is 6.
    feature_matrix one_hot(6, 6);
    for (std::size_t i = 0; i < 6; ++i) one_hot(i, i) = 1.0;
    const advgan::inception_score_result result = advgan::inception_score(one_hot, 1);
    CHECK(std::abs(result.mean - 6.0) <= 1e-13);
    CHECK(result.stddev == 0.0);
  }
}

TEST_CASE("inception_score argument errors") {
  const feature_matrix uniform(10, 2, std::vector<double>(20, 0.5));
  CHECK(error_message([&] { advgan::inception_score(uniform, 11); }) ==
        "splits = 11 exceeds the sample count 10");
  CHECK(error_message([&] { advgan::inception_score(uniform, 0); }) ==
        "inception_score needs splits >= 1, got 0");
  feature_matrix unnormalized = uniform;
  unnormalized(4, 1) = 0.7;
  CHECK(error_message([&] { advgan::inception_score(unnormalized); }).find("row 4 sums to 1.2") !=
        std::string::npos);
  feature_matrix negative = uniform;
  negative(6, 0) = -0.5;
  negative(6, 1) = 1.5;
  CHECK(error_message([&] { advgan::inception_score(negative); }) ==
        "class probabilities row 6 has negative entry -0.5 at column 0");
}

TEST_CASE("precision_recall and density_coverage match numpy") {
  const feature_matrix& real = input("set_a");
  const feature_matrix& fake = input("set_b");
  for (const std::size_t k : {3, 5}) {
    INFO("k = ", k);
    const std::string name = "manifold_k" + std::to_string(k);
    const advgan::precision_recall_result pr = advgan::precision_recall(real, fake, k);
    const advgan::density_coverage_result dc = advgan::density_coverage(real, fake, k);
    CHECK(pr.precision == expected_value(name, 0));
    CHECK(pr.recall == expected_value(name, 1));
    check_relative(dc.density, expected_value(name, 2), 1e-15);
    CHECK(dc.coverage == expected_value(name, 3));
  }
}

TEST_CASE("precision_recall hand-computed 2-D example") {
  // Real r0 (0,0), r1 (2,0), r2 (0,2), r3 (9,12); fake f0 (1,1), f1 (0,-2),
  // f2 (30,30), f3 (1,0); k = 1. Squared radii: real 4, 4, 4, 181 (r3 to r2);
  // fake 1 (f0 to f3), 5 (f1 to f3), 1682 (f2 to f0), 1 (f3 to f0).
  // Precision: f0, f1 (on r0's sphere, 4 <= 4) and f3 lie in real balls, f2
  // does not: 3/4. Recall: r0 and r1 lie on f3's sphere (1 <= 1), r3 is in
  // f2's ball (765 <= 1682), r2 misses f2's ball by 1684 > 1682: 3/4.
  // Density: f0 is in the balls of r0, r1, r2 (not r3: 185 > 181), f1 in r0's,
  // f3 in r0's and r1's: 6 / (k * 4) = 1.5. Coverage: r0, r1, r2 contain a fake,
  // r3 none: 3/4.
  const feature_matrix real(4, 2, {0, 0, 2, 0, 0, 2, 9, 12});
  const feature_matrix fake(4, 2, {1, 1, 0, -2, 30, 30, 1, 0});
  for (const double scale : {1.0, 1e6}) {
    INFO("scale = ", scale);
    const advgan::precision_recall_result pr =
        advgan::precision_recall(transformed(real, scale, 0.0), transformed(fake, scale, 0.0), 1);
    CHECK(pr.precision == 0.75);
    CHECK(pr.recall == 0.75);
    const advgan::density_coverage_result dc =
        advgan::density_coverage(transformed(real, scale, 0.0), transformed(fake, scale, 0.0), 1);
    CHECK(dc.density == 1.5);
    CHECK(dc.coverage == 0.75);
  }
}

TEST_CASE("precision_recall duplicates far from the origin") {
  // Real duplicates give zero radii, so only exact copies count as inside:
  // fake (0,0) is in the balls of both real (0,0) copies, fake (1,0) in none.
  // Fake radii are 1, so both real (0,0) lie in fake balls and (5,5) do not.
  const feature_matrix real(4, 2, {0, 0, 0, 0, 5, 5, 5, 5});
  const feature_matrix fake(2, 2, {0, 0, 1, 0});
  const double shift = 123456.789;
  const advgan::precision_recall_result pr =
      advgan::precision_recall(transformed(real, 1e6, shift), transformed(fake, 1e6, shift), 1);
  CHECK(pr.precision == 0.5);
  CHECK(pr.recall == 0.5);
  const advgan::density_coverage_result dc =
      advgan::density_coverage(transformed(real, 1e6, shift), transformed(fake, 1e6, shift), 1);
  CHECK(dc.density == 1.0);
  CHECK(dc.coverage == 0.5);
}

TEST_CASE("precision_recall identical and disjoint sets") {
  const feature_matrix& real = input("set_a");
  SUBCASE("identical sets") {
    const advgan::precision_recall_result pr = advgan::precision_recall(real, real);
    CHECK(pr.precision == 1.0);
    CHECK(pr.recall == 1.0);
    // Each real ball contains its own copy and its k nearest neighbours.
    const advgan::density_coverage_result dc = advgan::density_coverage(real, real, 5);
    CHECK(std::abs(dc.density - 6.0 / 5.0) <= 1e-15);
    CHECK(dc.coverage == 1.0);
  }
  SUBCASE("far-apart sets") {
    const feature_matrix far = transformed(real, 1.0, 1000.0);
    const advgan::precision_recall_result pr = advgan::precision_recall(real, far);
    CHECK(pr.precision == 0.0);
    CHECK(pr.recall == 0.0);
    const advgan::density_coverage_result dc = advgan::density_coverage(real, far);
    CHECK(dc.density == 0.0);
    CHECK(dc.coverage == 0.0);
  }
}

TEST_CASE("precision_recall unchanged by feature scale") {
  const feature_matrix& real = input("set_a");
  const feature_matrix& fake = input("set_b");
  const advgan::precision_recall_result plain = advgan::precision_recall(real, fake);
  const advgan::precision_recall_result scaled =
      advgan::precision_recall(transformed(real, 1e6, 0.0), transformed(fake, 1e6, 0.0));
  CHECK(plain.precision == scaled.precision);
  CHECK(plain.recall == scaled.recall);
  const advgan::density_coverage_result plain_dc = advgan::density_coverage(real, fake);
  const advgan::density_coverage_result scaled_dc =
      advgan::density_coverage(transformed(real, 1e6, 0.0), transformed(fake, 1e6, 0.0));
  CHECK(plain_dc.density == scaled_dc.density);
  CHECK(plain_dc.coverage == scaled_dc.coverage);
}

TEST_CASE("precision_recall rejects k at the sample count") {
  const feature_matrix three = normal_features(3, 2, 1);
  const feature_matrix ten = normal_features(10, 2, 2);
  const std::string fake_message = error_message([&] { advgan::precision_recall(ten, three, 3); });
  CHECK(fake_message.find("k = 3") != std::string::npos);
  CHECK(fake_message.find("fake set") != std::string::npos);
  CHECK(fake_message.find("got 3") != std::string::npos);
  const std::string real_message = error_message([&] { advgan::density_coverage(three, ten, 5); });
  CHECK(real_message.find("k = 5") != std::string::npos);
  CHECK(real_message.find("real set") != std::string::npos);
  CHECK(real_message.find("got 3") != std::string::npos);
  CHECK_THROWS_AS(advgan::precision_recall(ten, ten, 0), advgan::argument_error);
  CHECK_NOTHROW(advgan::precision_recall(ten, three, 2));
}

TEST_CASE("mode_coverage counts covered classes") {
  SUBCASE("all classes") {
    const std::vector<std::size_t> labels{0, 1, 2, 3, 4, 4};
    const advgan::mode_coverage_result result = advgan::mode_coverage(labels, labels, 5);
    CHECK(result.covered_classes == 5);
    CHECK(result.coverage == 1.0);
    CHECK(result.kl_divergence == 0.0);
    CHECK(result.min_class_share == doctest::Approx(1.0 / 6).epsilon(1e-15));
  }
  SUBCASE("missing classes") {
    const std::vector<std::size_t> samples{0, 0, 1};
    const std::vector<std::size_t> reals{0, 1, 2, 3};
    const advgan::mode_coverage_result result = advgan::mode_coverage(samples, reals, 4);
    CHECK(result.covered_classes == 2);
    CHECK(result.coverage == 0.5);
    CHECK(result.histogram == std::vector<std::size_t>{2, 1, 0, 0});
    CHECK(result.real_histogram == std::vector<std::size_t>{1, 1, 1, 1});
    CHECK(result.min_class_share == 0.0);
  }
  SUBCASE("minimum share") {
    // Class 1 has 1 of 10 samples, below the 0.2 minimum.
    const std::vector<std::size_t> samples{0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    const advgan::mode_coverage_result result = advgan::mode_coverage(samples, samples, 2, 0.2);
    CHECK(result.covered_classes == 1);
    CHECK(result.coverage == 0.5);
    CHECK(result.min_class_share == doctest::Approx(0.1).epsilon(1e-15));
  }
}

TEST_CASE("mode_coverage KL divergence") {
  SUBCASE("identical normalized histograms") {
    const std::vector<std::size_t> samples{0, 1, 1, 2};
    const std::vector<std::size_t> reals{2, 1, 0, 1, 1, 0, 2, 1};
    CHECK(advgan::mode_coverage(samples, reals, 3).kl_divergence == 0.0);
  }
  SUBCASE("empty real bin uses 1e-10") {
    // p = (1, 0), q = (0, 1): KL = 1 * log(1 / 1e-10).
    const std::vector<std::size_t> samples{0};
    const std::vector<std::size_t> reals{1};
    check_relative(advgan::mode_coverage(samples, reals, 2).kl_divergence, -std::log(1e-10), 1e-15);
  }
  SUBCASE("matches scipy rel_entr") {
    const std::vector<std::size_t> samples = labels_of(input("sample_labels"));
    const std::vector<std::size_t> reals = labels_of(input("real_labels"));
    const advgan::mode_coverage_result result = advgan::mode_coverage(samples, reals, 10);
    check_relative(result.kl_divergence, expected_value("mode_kl"), 1e-12);
    CHECK(result.covered_classes == 7);
  }
}

TEST_CASE("mode_coverage from probabilities") {
  // Row argmaxes: 1, 0 (tie between columns 0 and 2 goes to the lower), 2.
  const feature_matrix samples(3, 3, {0.1, 0.8, 0.1, 0.4, 0.2, 0.4, 0.0, 0.3, 0.7});
  const feature_matrix reals(2, 3, {0.9, 0.05, 0.05, 0.2, 0.7, 0.1});
  CHECK(advgan::predicted_labels(samples, "sample set") == std::vector<std::size_t>{1, 0, 2});
  const advgan::mode_coverage_result result = advgan::mode_coverage(samples, reals);
  CHECK(result.covered_classes == 3);
  CHECK(result.real_histogram == std::vector<std::size_t>{1, 1, 0});
}

TEST_CASE("mode_coverage argument errors") {
  const std::vector<std::size_t> good{0, 1};
  const std::vector<std::size_t> bad{0, 1, 2, 3, 4, 12};
  CHECK(error_message([&] { advgan::mode_coverage(bad, good, 10); }) ==
        "sample label 12 at index 5 is outside [0, 10)");
  CHECK(error_message([&] { advgan::mode_coverage(good, good, 0); }) ==
        "mode_coverage needs classes >= 1, got 0");
  CHECK_THROWS_AS(advgan::mode_coverage(std::vector<std::size_t>{}, good, 2),
                  advgan::argument_error);
  CHECK_THROWS_AS(advgan::mode_coverage(good, good, 2, 1.5), advgan::argument_error);
}
