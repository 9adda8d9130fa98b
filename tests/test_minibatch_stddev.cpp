// minibatch_stddev: the appended statistic on a hand-checked batch, the
// group rules, and gradients against central finite differences.

#include <doctest/doctest.h>

#include <cmath>        // std::isfinite, std::sqrt
#include <cstddef>      // std::size_t
#include <memory>       // std::make_unique
#include <string>       // std::string
#include <type_traits>  // std::is_same_v
#include <vector>       // std::vector

#include "advgan/advgan.hpp"
#include "gradient_check.hpp"

using namespace advgan;
using advgan::testing::check_gradients;
using advgan::testing::cpu64;
using advgan::testing::random_tensor;
using advgan::testing::tensor64;

namespace {

tensor64 make_tensor(std::size_t n, std::size_t c, std::size_t h, std::size_t w,
                     const std::vector<double>& values) {
  tensor64 t;
  cpu64::resize(t, n, c, h, w);
  REQUIRE(values.size() == t.size());
  for (std::size_t i = 0; i < values.size(); ++i) t.data()[i] = values[i];
  return t;
}

}  // namespace

TEST_CASE("minibatch_stddev appends the column statistic") {
  model<sequential<input<1>, minibatch_stddev<4>>, cpu<double>> m;
  static_assert(std::is_same_v<decltype(m)::output_shape, shape<2, 1, 1>>);
  const tensor64& y = m.forward(make_tensor(8, 1, 1, 1, {0, 1, 0, 3, 0, 1, 0, 3}));
  REQUIRE(cpu64::shape(y) == extents{8, 2, 1, 1});
  // Groups of 4 make 2 columns: samples 0, 2, 4, 6 (all 0) have standard
  // deviation sqrt(0 + 1e-8) = 1e-4, and samples 1, 3, 5, 7 (1, 3, 1, 3)
  // have sqrt(1 + 1e-8).
  const std::vector<double> expected = {1e-4, std::sqrt(1 + 1e-8)};
  for (std::size_t n = 0; n < 8; ++n) {
    INFO("sample " << n);
    CHECK(y.data()[2 * n] == (n % 2 == 0 ? 0.0 : (n % 4 == 1 ? 1.0 : 3.0)));
    CHECK(y.data()[2 * n + 1] == doctest::Approx(expected[n % 2]).epsilon(1e-15));
  }
}

TEST_CASE("minibatch_stddev averages over channels and pixels") {
  model<sequential<input<2, 1, 2>, minibatch_stddev<2>>, cpu<double>> m;
  // Batch 2, one group of both samples. Per value the differences are 2, 0,
  // 4 and 6, so the deviations are 1, 0, 2 and 3 (plus eps) and s = 1.5.
  const tensor64& y = m.forward(make_tensor(2, 2, 1, 2, {0, 5, 1, 2, 2, 5, 5, 8}));
  REQUIRE(cpu64::shape(y) == extents{2, 3, 1, 2});
  const double s = (std::sqrt(1 + 1e-8) + 1e-4 + std::sqrt(4 + 1e-8) + std::sqrt(9 + 1e-8)) / 4;
  for (std::size_t n = 0; n < 2; ++n)
    for (std::size_t i = 4; i < 6; ++i) CHECK(y.data()[n * 6 + i] == doctest::Approx(s));
  CHECK(y.data()[6] == 2.0);
  CHECK(y.data()[9] == 8.0);
}

TEST_CASE("minibatch_stddev group rules") {
  model<sequential<input<1>, minibatch_stddev<4>>, cpu<double>> m;
  SUBCASE("a batch not divisible by the group is rejected") {
    try {
      m.forward(random_tensor(6, 1, 1, 1, 1));
      FAIL("expected argument_error");
    } catch (const argument_error& e) {
      const std::string message = e.what();
      INFO(message);
      CHECK(message.find("batch size 6") != std::string::npos);
      CHECK(message.find("group size 4") != std::string::npos);
    }
  }
  SUBCASE("a batch smaller than the group is one group") {
    const tensor64& y = m.forward(make_tensor(2, 1, 1, 1, {1, 3}));
    CHECK(m.layer<0>().group() == 2);
    CHECK(y.data()[1] == doctest::Approx(std::sqrt(1 + 1e-8)));
    CHECK(y.data()[3] == doctest::Approx(std::sqrt(1 + 1e-8)));
  }
  SUBCASE("a batch of one has zero deviation") {
    const tensor64& y = m.forward(make_tensor(1, 1, 1, 1, {5}));
    CHECK(m.layer<0>().group() == 1);
    CHECK(y.data()[1] == doctest::Approx(1e-4));
  }
}

TEST_CASE("minibatch_stddev of equal values has a finite gradient") {
  model<sequential<input<2, 2, 2>, minibatch_stddev<4>>, cpu<double>> m;
  const tensor64 x = make_tensor(4, 2, 2, 2, std::vector<double>(32, 0.5));
  m.forward(x);
  tensor64 dy = random_tensor(4, 3, 2, 2, 3);
  tensor64 dx;
  m.backward(dy, &dx);
  for (std::size_t i = 0; i < dx.size(); ++i) {
    CHECK(std::isfinite(dx.data()[i]));
    // Every value equals its column mean, so only the pass-through remains.
    CHECK(dx.data()[i] == dy.data()[(i / 8) * 12 + i % 8]);
  }
}

TEST_CASE("minibatch_stddev gradients") {
  auto check = [](auto m, std::size_t batch, std::uint64_t seed) {
    using in = typename decltype(m)::element_type::input_shape;
    check_gradients(*m, random_tensor(batch, in::channels, in::height, in::width, seed), true);
  };
  using small = model<sequential<input<2, 3, 2>, minibatch_stddev<4>>, cpu<double>>;
  check(std::make_unique<small>(), 8, 1);
  check(std::make_unique<small>(), 4, 2);
  check(std::make_unique<small>(), 3, 3);
  using pair =
      model<sequential<input<3, 2, 2>, minibatch_stddev<2>, conv2d<2, 2>, flatten, dense<1>>,
            cpu<double>>;
  check(std::make_unique<pair>(), 6, 4);
}
