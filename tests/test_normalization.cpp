// layer_norm and instance_norm: values on small hand-checked inputs, input
// and parameter gradients and the tangent pass against central finite
// differences in double precision, and the compile-time shape rules.

#include <doctest/doctest.h>

#include <algorithm>  // std::copy
#include <cmath>      // std::sqrt, std::isfinite, std::abs
#include <cstddef>    // std::size_t
#include <string>     // std::string
#include <vector>     // std::vector

#include "advgan/advgan.hpp"
#include "gradient_check.hpp"
#include "tangent_check.hpp"

using namespace advgan;
using advgan::testing::check_gradients;
using advgan::testing::check_tangent;
using advgan::testing::cpu64;
using advgan::testing::random_tensor;
using advgan::testing::tensor64;

namespace {

/// Replaces every parameter with a normal value around `mean`, so affine
/// scales and shifts differ from their defaults of one and zero.
template <class Model>
void randomize_parameters(Model& m, std::uint64_t seed, double mean = 0.0) {
  philox rng(seed, 5);
  cpu64::fill_normal(m.parameters(), Model::parameter_count, rng, mean, 0.5);
}

template <class Spec>
void check_spec(std::size_t batch, bool random_parameters = true) {
  model<Spec, cpu<double>> m(11);
  if (random_parameters) randomize_parameters(m, batch, 1.0);
  using in = typename Spec::input_shape;
  const tensor64 x = random_tensor(batch, in::channels, in::height, in::width, 3 + batch);
  check_gradients(m, x, true);
  check_gradients(m, x, false);
  check_tangent(m, x, 40 + batch);
}

tensor64 make_tensor(std::size_t n, std::size_t c, std::size_t h, std::size_t w,
                     const std::vector<double>& values) {
  tensor64 t;
  cpu64::resize(t, n, c, h, w);
  REQUIRE(values.size() == t.size());
  for (std::size_t i = 0; i < values.size(); ++i) t.data()[i] = values[i];
  return t;
}

}  // namespace

TEST_CASE("layer_norm value on one sample") {
  model<sequential<input<1, 2, 2>, layer_norm>, cpu<double>> m;
  // weight = [1, 2, 1, 1], bias = [0, 0, 0, 5].
  const std::vector<double> parameters = {1, 2, 1, 1, 0, 0, 0, 5};
  std::copy(parameters.begin(), parameters.end(), m.parameters());
  const tensor64& y = m.forward(make_tensor(1, 1, 2, 2, {1, 2, 3, 4}));
  // mean 2.5, biased variance 1.25, so xhat = (x - 2.5) / sqrt(1.25 + 1e-5).
  const double s = 1 / std::sqrt(1.25 + 1e-5);
  CHECK(y.data()[0] == doctest::Approx(-1.5 * s).epsilon(1e-14));
  CHECK(y.data()[1] == doctest::Approx(2 * -0.5 * s).epsilon(1e-14));
  CHECK(y.data()[2] == doctest::Approx(0.5 * s).epsilon(1e-14));
  CHECK(y.data()[3] == doctest::Approx(1.5 * s + 5).epsilon(1e-14));
}

TEST_CASE("layer_norm normalises each sample on its own") {
  model<sequential<input<2, 1, 3>, layer_norm_with<false>>, cpu<double>> m;
  CHECK(decltype(m)::parameter_count == 0);
  // The second sample is the first times 10 plus 7: the outputs agree up to
  // the eps term, which a batch statistic would not give.
  const tensor64& y = m.forward(make_tensor(2, 2, 1, 3, {0, 1, 2, 3, 4, 8, 7, 17, 27, 37, 47, 87}));
  for (std::size_t i = 0; i < 6; ++i)
    CHECK(y.data()[i] == doctest::Approx(y.data()[6 + i]).epsilon(1e-4));
  double sum = 0;
  for (std::size_t i = 0; i < 6; ++i) sum += y.data()[i];
  CHECK(std::abs(sum) < 1e-12);
}

TEST_CASE("instance_norm value per channel") {
  model<sequential<input<2, 1, 2>, instance_norm>, cpu<double>> m;
  CHECK(decltype(m)::parameter_count == 0);
  const tensor64& y = m.forward(make_tensor(1, 2, 1, 2, {1, 3, 10, 10}));
  // Channel 0: mean 2, variance 1; channel 1: constant, so xhat = 0.
  const double s = 1 / std::sqrt(1 + 1e-5);
  CHECK(y.data()[0] == doctest::Approx(-s).epsilon(1e-14));
  CHECK(y.data()[1] == doctest::Approx(s).epsilon(1e-14));
  CHECK(y.data()[2] == 0.0);
  CHECK(y.data()[3] == 0.0);
}

TEST_CASE("instance_norm affine per channel") {
  model<sequential<input<2, 1, 2>, instance_norm_with<true>>, cpu<double>> m;
  CHECK(decltype(m)::parameter_count == 4);
  const std::vector<double> parameters = {3, 1, 0.5, -2};  // weight [3, 1], bias [0.5, -2]
  std::copy(parameters.begin(), parameters.end(), m.parameters());
  const tensor64& y = m.forward(make_tensor(1, 2, 1, 2, {1, 3, 10, 10}));
  const double s = 1 / std::sqrt(1 + 1e-5);
  CHECK(y.data()[0] == doctest::Approx(-3 * s + 0.5).epsilon(1e-14));
  CHECK(y.data()[1] == doctest::Approx(3 * s + 0.5).epsilon(1e-14));
  CHECK(y.data()[2] == -2.0);
  CHECK(y.data()[3] == -2.0);
}

TEST_CASE("normalization parameter names and shapes") {
  std::vector<std::string> names;
  std::vector<std::vector<std::size_t>> shapes;
  auto collect = [&](const std::string& name, double*, double*, const parameter_spec& spec) {
    names.push_back(name);
    shapes.push_back(spec.shape());
  };
  model<sequential<input<3, 4, 5>, layer_norm, flatten, dense<2>, layer_norm>, cpu<double>> ln;
  ln.visit_parameters(collect);
  CHECK(names ==
        std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias", "3.weight", "3.bias"});
  CHECK(shapes[0] == std::vector<std::size_t>{3, 4, 5});
  CHECK(shapes[1] == std::vector<std::size_t>{3, 4, 5});
  CHECK(shapes[4] == std::vector<std::size_t>{2});
  names.clear();
  shapes.clear();
  model<sequential<input<3, 4, 5>, instance_norm_with<true>>, cpu<double>> in;
  in.visit_parameters(collect);
  CHECK(names == std::vector<std::string>{"0.weight", "0.bias"});
  CHECK(shapes[0] == std::vector<std::size_t>{3});
}

TEST_CASE("normalization initial parameters") {
  model<sequential<input<2, 2, 2>, layer_norm>, cpu<double>> m(3);
  for (std::size_t i = 0; i < 8; ++i) CHECK(m.parameters()[i] == 1.0);
  for (std::size_t i = 8; i < 16; ++i) CHECK(m.parameters()[i] == 0.0);
}

TEST_CASE("normalization of constant samples has finite gradients") {
  model<sequential<input<2, 2, 2>, layer_norm, instance_norm>, cpu<double>> m;
  tensor64 x = make_tensor(2, 2, 2, 2, std::vector<double>(16, 4.0));
  const tensor64& y = m.forward(x);
  for (std::size_t i = 0; i < y.size(); ++i) CHECK(y.data()[i] == 0.0);
  tensor64 dy = random_tensor(2, 2, 2, 2, 9);
  tensor64 dx;
  m.backward(dy, &dx);
  for (std::size_t i = 0; i < dx.size(); ++i) CHECK(std::isfinite(dx.data()[i]));
}

TEST_CASE("layer_norm gradients and tangent") {
  check_spec<sequential<input<3, 3, 5>, layer_norm>>(3);
  check_spec<sequential<input<3, 3, 5>, layer_norm>>(1);
  check_spec<sequential<input<2, 2, 3>, layer_norm_with<false>>>(3, false);
  check_spec<sequential<input<6>, layer_norm>>(3);
}

TEST_CASE("instance_norm gradients and tangent") {
  check_spec<sequential<input<3, 3, 5>, instance_norm>>(3, false);
  check_spec<sequential<input<3, 3, 5>, instance_norm_with<true>>>(3);
  check_spec<sequential<input<2, 2, 3>, instance_norm_with<true>>>(1);
}

TEST_CASE("normalization inside a small critic") {
  using critic =
      sequential<input<2, 6, 6>, conv2d<3, 3, 2, 1>, instance_norm_with<true>, leaky_relu<>,
                 conv2d<4, 3, 1, 0>, layer_norm, tanh_activation, flatten, dense<1>>;
  check_spec<critic>(3);
}

TEST_CASE("normalization compile-time shape rules") {
  static_assert(layer_norm::accepts<shape<2, 1, 1>>);
  static_assert(!layer_norm::accepts<shape<1, 1, 1>>);
  static_assert(instance_norm::accepts<shape<4, 1, 2>>);
  static_assert(!instance_norm::accepts<shape<4, 1, 1>>);
  CHECK(twice_differentiable_layer<layer_norm::bind<shape<2, 3, 3>, cpu<double>>>);
  CHECK(twice_differentiable_layer<instance_norm::bind<shape<2, 3, 3>, cpu<double>>>);
}
