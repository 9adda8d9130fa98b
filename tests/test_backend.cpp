// Tests for the primitives of the CPU backend: gemm against a naive loop,
// through OpenBLAS and through the kernels for thin products; im2col and
// col2im as adjoint operators and against their definition; the thread
// settings; and the random fills.

#include <doctest/doctest.h>

#include <algorithm>  // std::max, std::none_of
#include <cmath>      // std::abs, std::isnan, std::sqrt
#include <cstddef>    // std::size_t, std::ptrdiff_t
#include <cstdint>    // std::uint64_t
#include <limits>     // std::numeric_limits
#include <vector>     // std::vector

#include "advgan/backend/cpu.hpp"

using advgan::cpu;
using advgan::philox;

namespace {

template <class Scalar>
std::vector<Scalar> random_values(std::size_t n, std::uint64_t seed) {
  std::vector<Scalar> values(n);
  philox rng(seed);
  cpu<Scalar>::fill_uniform(values.data(), n, rng, -1.0, 1.0);
  return values;
}

struct gemm_size {
  std::size_t m;
  std::size_t n;
  std::size_t k;
};

// Checks C = alpha * op(A) * op(B) + beta * C for one size and transpose
// setting, with every leading dimension larger than its row length.
template <class Scalar>
void check_gemm(const gemm_size& size, bool transpose_a, bool transpose_b) {
  const auto [m, n, k] = size;
  // Stored A is m x k, or k x m when transposed. Likewise B is k x n or n x k.
  const std::size_t a_rows = transpose_a ? k : m;
  const std::size_t a_columns = transpose_a ? m : k;
  const std::size_t b_rows = transpose_b ? n : k;
  const std::size_t b_columns = transpose_b ? k : n;
  const std::size_t lda = a_columns + 3;
  const std::size_t ldb = b_columns + 2;
  const std::size_t ldc = n + 5;
  const std::vector<Scalar> a = random_values<Scalar>(a_rows * lda, 1);
  const std::vector<Scalar> b = random_values<Scalar>(b_rows * ldb, 2);
  const std::vector<Scalar> c_before = random_values<Scalar>(m * ldc, 3);
  const Scalar alpha = Scalar(0.75);
  const Scalar beta = Scalar(-1.25);

  std::vector<Scalar> c = c_before;
  cpu<Scalar>::gemm(transpose_a, transpose_b, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta,
                    c.data(), ldc);

  auto a_at = [&](std::size_t i, std::size_t p) {
    return static_cast<long double>(transpose_a ? a[p * lda + i] : a[i * lda + p]);
  };
  auto b_at = [&](std::size_t p, std::size_t j) {
    return static_cast<long double>(transpose_b ? b[j * ldb + p] : b[p * ldb + j]);
  };
  // A length-k dot product summed in any order, with or without fused
  // multiply-add, is off by at most about k * epsilon / 2 times the sum of the
  // magnitudes of its terms. Scaling by alpha and adding beta * C add a few
  // roundings more, so (k + 2) * epsilon bounds the whole error with room to
  // spare. The reference in long double is exact enough not to matter.
  const long double unit = std::numeric_limits<Scalar>::epsilon();
  std::size_t failures = 0;
  for (std::size_t i = 0; i < m; ++i) {
    for (std::size_t j = 0; j < n; ++j) {
      long double product = 0;
      long double magnitude = 0;
      for (std::size_t p = 0; p < k; ++p) {
        product += a_at(i, p) * b_at(p, j);
        magnitude += std::abs(a_at(i, p) * b_at(p, j));
      }
      const long double old_c = c_before[i * ldc + j];
      const long double expected = alpha * product + beta * old_c;
      const long double bound =
          static_cast<long double>(k + 2) * unit *
          (std::abs(static_cast<long double>(alpha)) * magnitude + std::abs(beta * old_c));
      const long double error = std::abs(static_cast<long double>(c[i * ldc + j]) - expected);
      if (error > bound && failures++ < 5) {
        CAPTURE(i);
        CAPTURE(j);
        CHECK(static_cast<double>(error) <= static_cast<double>(bound));
      }
    }
    // Entries between the row length n and the leading dimension are not C.
    for (std::size_t j = n; j < ldc; ++j) {
      if (c[i * ldc + j] != c_before[i * ldc + j] && failures++ < 5) {
        CAPTURE(i);
        CAPTURE(j);
        CHECK(c[i * ldc + j] == c_before[i * ldc + j]);
      }
    }
  }
  CHECK(failures == 0);
}

// The definition of im2col in cpu.hpp, written out directly:
// col[(c * kernel + i) * kernel + j][oy * out_w + ox] =
// x[c][oy * stride - padding + i][ox * stride - padding + j], or 0 outside.
std::vector<double> im2col_by_definition(const std::vector<double>& x, std::size_t channels,
                                         std::size_t height, std::size_t width, std::size_t kernel,
                                         std::size_t stride, std::size_t padding) {
  const std::size_t out_h = (height + 2 * padding - kernel) / stride + 1;
  const std::size_t out_w = (width + 2 * padding - kernel) / stride + 1;
  std::vector<double> col(channels * kernel * kernel * out_h * out_w, -1.0);
  for (std::size_t c = 0; c < channels; ++c)
    for (std::size_t i = 0; i < kernel; ++i)
      for (std::size_t j = 0; j < kernel; ++j)
        for (std::size_t oy = 0; oy < out_h; ++oy)
          for (std::size_t ox = 0; ox < out_w; ++ox) {
            const auto y =
                static_cast<std::ptrdiff_t>(oy * stride + i) - static_cast<std::ptrdiff_t>(padding);
            const auto xx =
                static_cast<std::ptrdiff_t>(ox * stride + j) - static_cast<std::ptrdiff_t>(padding);
            const bool inside = y >= 0 && y < static_cast<std::ptrdiff_t>(height) && xx >= 0 &&
                                xx < static_cast<std::ptrdiff_t>(width);
            const std::size_t row = (c * kernel + i) * kernel + j;
            col[row * out_h * out_w + oy * out_w + ox] =
                inside ? x[(c * height + static_cast<std::size_t>(y)) * width +
                           static_cast<std::size_t>(xx)]
                       : 0.0;
          }
  return col;
}

// Restores the OpenMP and OpenBLAS thread counts when a test ends.
class thread_count_guard {
 public:
  thread_count_guard() : openmp_(advgan::openmp_threads()), openblas_(advgan::openblas_threads()) {}
  ~thread_count_guard() {
    omp_set_num_threads(openmp_);
    openblas_set_num_threads(openblas_);
  }
  thread_count_guard(const thread_count_guard&) = delete;
  thread_count_guard& operator=(const thread_count_guard&) = delete;

 private:
  int openmp_;
  int openblas_;
};

}  // namespace

TEST_CASE_TEMPLATE("gemm matches naive loop", Scalar, float, double) {
  const gemm_size sizes[] = {{1, 1, 1}, {7, 13, 5}, {257, 129, 65}};
  for (const gemm_size& size : sizes) {
    for (const bool transpose_a : {false, true}) {
      for (const bool transpose_b : {false, true}) {
        CAPTURE(size.m);
        CAPTURE(size.n);
        CAPTURE(size.k);
        CAPTURE(transpose_a);
        CAPTURE(transpose_b);
        check_gemm<Scalar>(size, transpose_a, transpose_b);
      }
    }
  }
}

TEST_CASE_TEMPLATE("gemm with k = 0 scales C", Scalar, float, double) {
  // BLAS leaves C = beta * C when k = 0, and beta = 0 overwrites C, NaN
  // included.
  std::vector<Scalar> c = {1, 2, 3, 4, 5, 6};
  cpu<Scalar>::gemm(false, false, 2, 2, 0, 1, nullptr, 1, nullptr, 2, Scalar(-2), c.data(), 3);
  CHECK(c == std::vector<Scalar>{-2, -4, 3, -8, -10, 6});

  std::vector<Scalar> nan_c(4, std::numeric_limits<Scalar>::quiet_NaN());
  cpu<Scalar>::gemm(true, true, 2, 2, 0, 1, nullptr, 2, nullptr, 1, 0, nan_c.data(), 2);
  CHECK(nan_c == std::vector<Scalar>(4, 0));
}

TEST_CASE("thin products match naive loop") {
  // The sizes cover each block of the thin kernels: rows in blocks of 16, 8,
  // 4, 2 and 1, columns in whole and partial vectors of 16, and for 4 rows or
  // fewer the blocks of 64 columns. The sizes with k = 300 are large enough
  // for gemm to split them across two threads: the first two by rows, the
  // last by columns.
  const gemm_size sizes[] = {{1, 1, 1},      {2, 17, 3},    {3, 64, 9},    {4, 130, 31},
                             {5, 16, 7},     {31, 15, 1},   {37, 64, 300}, {100, 33, 65},
                             {300, 64, 300}, {2, 1000, 300}};
  const thread_count_guard guard;
  for (const int threads : {1, 2}) {
    advgan::set_threads(threads);
    for (const bool thin : {true, false}) {
      advgan::detail::thin_gemm_enabled = thin;
      for (const gemm_size& size : sizes) {
        for (const bool transpose_a : {false, true}) {
          CAPTURE(threads);
          CAPTURE(thin);
          CAPTURE(size.m);
          CAPTURE(size.n);
          CAPTURE(size.k);
          CAPTURE(transpose_a);
          CHECK(advgan::detail::thin_gemm_suits(false, size.m, size.n) ==
                (thin && advgan::detail::thin_gemm_supported()));
          check_gemm<float>(size, transpose_a, false);
        }
      }
    }
  }
  advgan::detail::thin_gemm_enabled = true;
  MESSAGE("thin kernels supported on this CPU: ", advgan::detail::thin_gemm_supported());
}

TEST_CASE_TEMPLATE("gemm with alpha = 0 reads neither A nor B", Scalar, float, double) {
  // Both shapes, thin (3 rows) and wide (80 x 80), ignore the NaN in A and B.
  for (const std::size_t size : {std::size_t{3}, std::size_t{80}}) {
    const std::vector<Scalar> a(size * 5, std::numeric_limits<Scalar>::quiet_NaN());
    const std::vector<Scalar> b(5 * 80, std::numeric_limits<Scalar>::infinity());
    std::vector<Scalar> c(size * 80, Scalar(2));
    cpu<Scalar>::gemm(false, false, size, 80, 5, 0, a.data(), 5, b.data(), 80, Scalar(0.5),
                      c.data(), 80);
    CAPTURE(size);
    CHECK(c == std::vector<Scalar>(size * 80, Scalar(1)));
  }
}

TEST_CASE("thin products overwrite C when beta is 0") {
  // As in BLAS, beta = 0 means C is not read, so NaN in C does not survive.
  const gemm_size sizes[] = {{3, 70, 5}, {20, 17, 4}};
  for (const gemm_size& size : sizes) {
    const std::vector<float> a = random_values<float>(size.m * size.k, 4);
    const std::vector<float> b = random_values<float>(size.k * size.n, 5);
    std::vector<float> c(size.m * size.n, std::numeric_limits<float>::quiet_NaN());
    cpu<float>::gemm(false, false, size.m, size.n, size.k, 1, a.data(), size.k, b.data(), size.n, 0,
                     c.data(), size.n);
    CAPTURE(size.m);
    CHECK(std::none_of(c.begin(), c.end(), [](float v) { return std::isnan(v); }));
  }
}

TEST_CASE("im2col literal 3x3 case") {
  // One channel containing 1..9, a 2x2 kernel, stride 1 and no padding. Row
  // (i, j) of col contains the input under kernel tap (i, j) at each of the
  // 2x2 output positions.
  const std::vector<double> x = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  std::vector<double> col(16, -1.0);
  cpu<double>::im2col(x.data(), 1, 3, 3, 2, 1, 0, col.data());
  const std::vector<double> expected = {1, 2, 4, 5,   // tap (0, 0)
                                        2, 3, 5, 6,   // tap (0, 1)
                                        4, 5, 7, 8,   // tap (1, 0)
                                        5, 6, 8, 9};  // tap (1, 1)
  CHECK(col == expected);
}

TEST_CASE("im2col matches its definition") {
  struct im2col_case {
    std::size_t channels, height, width, kernel, stride, padding;
  };
  const im2col_case cases[] = {
      {2, 4, 5, 3, 2, 1}, {1, 5, 5, 5, 1, 2}, {3, 3, 7, 2, 2, 0}, {2, 1, 1, 3, 1, 1}};
  for (const im2col_case& test : cases) {
    CAPTURE(test.channels);
    CAPTURE(test.height);
    CAPTURE(test.width);
    CAPTURE(test.kernel);
    CAPTURE(test.stride);
    CAPTURE(test.padding);
    const std::vector<double> x =
        random_values<double>(test.channels * test.height * test.width, 21);
    const std::vector<double> expected = im2col_by_definition(
        x, test.channels, test.height, test.width, test.kernel, test.stride, test.padding);
    std::vector<double> col(expected.size(), -1.0);
    cpu<double>::im2col(x.data(), test.channels, test.height, test.width, test.kernel, test.stride,
                        test.padding, col.data());
    CHECK(col == expected);
  }
}

TEST_CASE("im2col and col2im are adjoint") {
  // <col2im(y), x> = <y, im2col(x)> for every valid setting on odd image sizes.
  const std::size_t image_sizes[][2] = {{5, 7}, {7, 3}, {1, 5}};
  int cases = 0;
  for (const auto& image : image_sizes) {
    for (std::size_t channels = 1; channels <= 3; ++channels) {
      for (std::size_t kernel = 1; kernel <= 5; ++kernel) {
        for (std::size_t stride = 1; stride <= 2; ++stride) {
          for (std::size_t padding = 0; padding <= 2; ++padding) {
            const std::size_t height = image[0];
            const std::size_t width = image[1];
            if (!advgan::size_rule::conv_valid(height, kernel, stride, padding) ||
                !advgan::size_rule::conv_valid(width, kernel, stride, padding))
              continue;
            const std::size_t out_h = advgan::size_rule::conv_size(height, kernel, stride, padding);
            const std::size_t out_w = advgan::size_rule::conv_size(width, kernel, stride, padding);
            const std::size_t image_size = channels * height * width;
            const std::size_t col_size = channels * kernel * kernel * out_h * out_w;
            const std::uint64_t seed = 1000 + static_cast<std::uint64_t>(cases);
            const std::vector<double> x = random_values<double>(image_size, seed);
            const std::vector<double> y = random_values<double>(col_size, seed + 500);

            std::vector<double> im2col_x(col_size);
            cpu<double>::im2col(x.data(), channels, height, width, kernel, stride, padding,
                                im2col_x.data());
            std::vector<double> col2im_y(image_size, 0.0);
            cpu<double>::col2im(y.data(), channels, height, width, kernel, stride, padding,
                                col2im_y.data());

            const double left = cpu<double>::dot(col2im_y.data(), x.data(), image_size);
            const double right = cpu<double>::dot(y.data(), im2col_x.data(), col_size);
            CAPTURE(height);
            CAPTURE(width);
            CAPTURE(channels);
            CAPTURE(kernel);
            CAPTURE(stride);
            CAPTURE(padding);
            CAPTURE(left);
            CAPTURE(right);
            CHECK(std::abs(left - right) <= 1e-12 * std::max(std::abs(left), std::abs(right)));
            ++cases;
          }
        }
      }
    }
  }
  // 222 of the 270 settings are valid; another count means the loops or
  // conv_valid skip settings they should test.
  CHECK(cases == 222);
}

TEST_CASE("col2im adds onto its output") {
  const std::size_t channels = 2, height = 5, width = 3, kernel = 3, stride = 2, padding = 1;
  const std::size_t out = advgan::size_rule::conv_size(5, kernel, stride, padding) *
                          advgan::size_rule::conv_size(3, kernel, stride, padding);
  const std::vector<double> col = random_values<double>(channels * kernel * kernel * out, 8);
  std::vector<double> from_zero(channels * height * width, 0.0);
  cpu<double>::col2im(col.data(), channels, height, width, kernel, stride, padding,
                      from_zero.data());
  std::vector<double> from_ones(channels * height * width, 1.0);
  cpu<double>::col2im(col.data(), channels, height, width, kernel, stride, padding,
                      from_ones.data());
  for (std::size_t i = 0; i < from_zero.size(); ++i) {
    CAPTURE(i);
    CHECK(from_ones[i] == doctest::Approx(from_zero[i] + 1.0).epsilon(1e-15));
  }
}

TEST_CASE("set_threads sets OpenMP and OpenBLAS") {
  const thread_count_guard guard;
  for (const int threads : {1, 2}) {
    CAPTURE(threads);
    advgan::set_threads(threads);
    CHECK(advgan::openmp_threads() == threads);
    CHECK(advgan::openblas_threads() == threads);
    CHECK(omp_get_max_threads() == threads);
    CHECK(openblas_get_num_threads() == threads);
  }
}

TEST_CASE("set_threads rejects counts below one") {
  const thread_count_guard guard;
  advgan::set_threads(2);
  CHECK_THROWS_AS(advgan::set_threads(0), advgan::argument_error);
  CHECK_THROWS_AS(advgan::set_threads(-3), advgan::argument_error);
  CHECK_THROWS_WITH(advgan::set_threads(0), doctest::Contains("got 0"));
  // A rejected call leaves both settings alone.
  CHECK(advgan::openmp_threads() == 2);
  CHECK(advgan::openblas_threads() == 2);
}

TEST_CASE_TEMPLATE("random fills repeat from a seed", Scalar, float, double) {
  constexpr std::size_t n = 1000;
  std::vector<Scalar> first(n);
  std::vector<Scalar> second(n);
  std::vector<Scalar> other_seed(n);

  philox rng_first(31);
  philox rng_second(31);
  philox rng_other(32);
  cpu<Scalar>::fill_uniform(first.data(), n, rng_first, -2.0, 3.0);
  cpu<Scalar>::fill_uniform(second.data(), n, rng_second, -2.0, 3.0);
  cpu<Scalar>::fill_uniform(other_seed.data(), n, rng_other, -2.0, 3.0);
  CHECK(first == second);
  CHECK(first != other_seed);
  // fill_uniform draws two 32-bit words per value.
  CHECK(rng_first.offset() == 2 * n);

  cpu<Scalar>::fill_normal(first.data(), n, rng_first, 1.0, 0.5);
  cpu<Scalar>::fill_normal(second.data(), n, rng_second, 1.0, 0.5);
  cpu<Scalar>::fill_normal(other_seed.data(), n, rng_other, 1.0, 0.5);
  CHECK(first == second);
  CHECK(first != other_seed);
  // fill_normal draws four 32-bit words per value.
  CHECK(rng_first.offset() == 6 * n);
}

TEST_CASE_TEMPLATE("random fill moments", Scalar, float, double) {
  // With a fixed seed these checks are deterministic. The bounds are six
  // standard errors of the mean, sigma / sqrt(n), which is loose for the
  // standard deviation as well.
  constexpr std::size_t n = 200000;
  const double tolerance_factor = 6.0 / std::sqrt(static_cast<double>(n));
  std::vector<Scalar> values(n);

  auto mean_and_std = [&](double& mean, double& stddev) {
    mean = cpu<Scalar>::sum(values.data(), n) / n;
    double squares = 0;
    for (const Scalar v : values) squares += (v - mean) * (v - mean);
    stddev = std::sqrt(squares / (n - 1));
  };
  double mean = 0;
  double stddev = 0;

  SUBCASE("uniform in [-2, 3)") {
    philox rng(2718);
    cpu<Scalar>::fill_uniform(values.data(), n, rng, -2.0, 3.0);
    for (const Scalar v : values) {
      REQUIRE(v >= Scalar(-2));
      REQUIRE(v <= Scalar(3));  // float rounding can reach the upper end
    }
    mean_and_std(mean, stddev);
    const double sigma = 5.0 / std::sqrt(12.0);
    CHECK(std::abs(mean - 0.5) < tolerance_factor * sigma);
    CHECK(std::abs(stddev - sigma) < tolerance_factor * sigma);
  }

  SUBCASE("normal with mean 1 and standard deviation 0.5") {
    philox rng(3141);
    cpu<Scalar>::fill_normal(values.data(), n, rng, 1.0, 0.5);
    mean_and_std(mean, stddev);
    CHECK(std::abs(mean - 1.0) < tolerance_factor * 0.5);
    CHECK(std::abs(stddev - 0.5) < tolerance_factor * 0.5);
  }
}
