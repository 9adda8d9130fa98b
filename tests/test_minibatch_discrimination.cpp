// minibatch_discrimination: a hand-computed batch, values and gradients from
// PyTorch (tests/fixtures/minibatch_discrimination/cases.json, written by
// tests/fixtures/make_minibatch_discrimination_fixtures.py), gradients
// against central finite differences in double, and a gan_trainer step with
// the layer inside the discriminator.

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <cmath>        // std::exp, std::isfinite, std::sqrt
#include <cstddef>      // std::size_t
#include <fstream>      // std::ifstream
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
using advgan::testing::relative_max_error;
using advgan::testing::tensor64;
using json = nlohmann::json;

static_assert(std::is_same_v<minibatch_discrimination<3, 2>::output_shape<shape<5>>, shape<8>>);
static_assert(minibatch_discrimination<3, 2>::accepts<shape<5>>);
static_assert(!minibatch_discrimination<3, 2>::accepts<shape<1, 2, 2>>);
static_assert(is_minibatch_discrimination<minibatch_discrimination<1, 1>>);
static_assert(!is_minibatch_discrimination<minibatch_stddev<4>>);

namespace {

template <std::size_t A, std::size_t B, std::size_t C, class Scalar>
using discrimination_model =
    model<sequential<input<A>, minibatch_discrimination<B, C>>, cpu<Scalar>>;

const json& reference() {
  static const json data = [] {
    std::ifstream in(ADVGAN_FIXTURE_DIR "/minibatch_discrimination/cases.json");
    REQUIRE_MESSAGE(
        in.good(), "missing fixture; run tests/fixtures/make_minibatch_discrimination_fixtures.py");
    return json::parse(in);
  }();
  return data;
}

template <class Scalar>
typename cpu<Scalar>::tensor tensor_from(const json& values, std::size_t n, std::size_t c) {
  typename cpu<Scalar>::tensor t;
  cpu<Scalar>::resize(t, n, c, 1, 1);
  REQUIRE(values.size() == n * c);
  for (std::size_t i = 0; i < values.size(); ++i)
    cpu<Scalar>::data(t)[i] = static_cast<Scalar>(values[i].get<double>());
  return t;
}

template <class Scalar>
void check_close(const Scalar* computed, const json& expected, std::size_t count, double tolerance,
                 const std::string& quantity) {
  REQUIRE(expected.size() == count);
  std::vector<double> a(computed, computed + count);
  std::vector<double> b;
  for (const json& v : expected) b.push_back(v.get<double>());
  const double error = relative_max_error(a.data(), b.data(), count);
  INFO(quantity, ": relative error ", error);
  CHECK(error <= tolerance);
}

template <std::size_t A, std::size_t B, std::size_t C, class Scalar>
void check_case(const std::string& name, const std::string& dtype, double tolerance) {
  const json& entry = reference()["cases"][name];
  const auto dims = entry["shape"].get<std::vector<std::size_t>>();
  REQUIRE(dims == std::vector<std::size_t>{dims[0], A, B, C});
  const std::size_t n = dims[0];
  discrimination_model<A, B, C, Scalar> m;
  REQUIRE(entry["T"].size() == A * B * C);
  for (std::size_t i = 0; i < A * B * C; ++i)
    m.parameters()[i] = static_cast<Scalar>(entry["T"][i].get<double>());
  const auto x = tensor_from<Scalar>(entry["x"], n, A);
  const auto dy = tensor_from<Scalar>(entry["dy"], n, A + B);
  const auto& y = m.forward(x);
  typename cpu<Scalar>::tensor dx;
  m.zero_grad();
  m.backward(dy, &dx);

  const json& expected = entry["results"][dtype];
  const std::string where = name + " " + dtype;
  check_close(cpu<Scalar>::data(y), expected["y"], n * (A + B), tolerance, where + " output");
  check_close(cpu<Scalar>::data(dx), expected["x_grad"], n * A, tolerance,
              where + " input gradient");
  check_close(m.gradients(), expected["T_grad"], A * B * C, tolerance, where + " T gradient");
}

template <std::size_t A, std::size_t B, std::size_t C>
void check_case_both_dtypes(const std::string& name) {
  check_case<A, B, C, double>(name, "f64", 1e-10);
  check_case<A, B, C, float>(name, "f32", 1e-5);
}

// Sets every parameter to scale * normal, so that the L1 distances are of
// order one and exp(-distance) has gradients worth checking.
template <class Model>
void scale_parameters(Model& m, double scale, std::uint64_t seed) {
  philox rng(seed);
  for (std::size_t i = 0; i < Model::parameter_count; ++i) m.parameters()[i] = scale * rng.normal();
}

}  // namespace

TEST_CASE("minibatch_discrimination at a hand-computed batch") {
  discrimination_model<1, 1, 1, double> m;
  m.parameters()[0] = 1;  // M_i = x_i
  tensor64 x;
  cpu64::resize(x, 3, 1, 1, 1);
  x.data()[0] = 0;
  x.data()[1] = 1;
  x.data()[2] = 3;
  const tensor64& y = m.forward(x);
  REQUIRE(cpu64::shape(y) == extents{3, 2, 1, 1});
  CHECK(y.data()[0] == 0);
  CHECK(y.data()[2] == 1);
  CHECK(y.data()[4] == 3);
  // o(i) = sum over j != i of exp(-|x_i - x_j|).
  CHECK(y.data()[1] == doctest::Approx(std::exp(-1.0) + std::exp(-3.0)).epsilon(1e-15));
  CHECK(y.data()[3] == doctest::Approx(std::exp(-1.0) + std::exp(-2.0)).epsilon(1e-15));
  CHECK(y.data()[5] == doctest::Approx(std::exp(-3.0) + std::exp(-2.0)).epsilon(1e-15));
}

TEST_CASE("minibatch_discrimination of one sample is zero") {
  discrimination_model<5, 3, 3, double> m;
  const tensor64& y = m.forward(random_tensor(1, 5, 1, 1, 3));
  for (std::size_t b = 0; b < 3; ++b) CHECK(y.data()[5 + b] == 0);
}

TEST_CASE("minibatch_discrimination matches PyTorch") {
  check_case_both_dtypes<5, 3, 3>("batch1");
  check_case_both_dtypes<5, 3, 3>("batch2");
  check_case_both_dtypes<5, 3, 3>("batch2_identical");
  check_case_both_dtypes<5, 3, 3>("batch5");
  check_case_both_dtypes<7, 1, 5>("batch5_wide_kernels");
}

TEST_CASE("minibatch_discrimination gradients match finite differences") {
  for (std::size_t batch : {1u, 2u, 5u}) {
    INFO("batch ", batch);
    discrimination_model<5, 3, 3, double> m;
    scale_parameters(m, 0.3, 10 + batch);
    check_gradients(m, random_tensor(batch, 5, 1, 1, 20 + batch), true);
    discrimination_model<7, 1, 5, double> wide;
    scale_parameters(wide, 0.2, 30 + batch);
    check_gradients(wide, random_tensor(batch, 7, 1, 1, 40 + batch), true);
  }
}

namespace {

using tiny_generator =
    sequential<input<4>, dense<8>, relu, dense<4>, reshape<1, 2, 2>, tanh_activation>;
using discriminating_critic = sequential<input<1, 2, 2>, flatten, dense<5>, leaky_relu<>,
                                         minibatch_discrimination<3, 3>, dense<1>>;

}  // namespace

TEST_CASE("minibatch_discrimination inside a sequential critic") {
  SUBCASE("model gradients match finite differences") {
    model<discriminating_critic, cpu64> critic(3);
    check_gradients(critic, random_tensor(5, 1, 2, 2, 50), true);
  }
  SUBCASE("one gan_trainer step") {
    trainer_options options;
    options.seed = 9;
    options.sample_count = 4;
    options.init = init_scheme::pytorch;
    using trainer_type = gan_trainer<tiny_generator, discriminating_critic, non_saturating, cpu64>;
    auto trainer = std::make_unique<trainer_type>(options);
    auto& critic = trainer->discriminator();
    const std::vector<double> before(critic.parameters(),
                                     critic.parameters() + critic.parameter_count);
    const step_record record = trainer->step(random_tensor(5, 1, 2, 2, 60));
    CHECK(record.generator_updated);
    CHECK(std::isfinite(record.discriminator_loss));
    CHECK(std::isfinite(record.generator_loss));
    // T sits after flatten, dense<5> (30 values) and leaky_relu.
    std::size_t changed = 0;
    for (std::size_t i = 30; i < 30 + 5 * 3 * 3; ++i)
      if (critic.parameters()[i] != before[i]) ++changed;
    CHECK(changed == 5 * 3 * 3);
  }
}

TEST_CASE("minibatch_discrimination initialisation") {
  model<sequential<input<64>, minibatch_discrimination<16, 8>>, cpu64> m(1, init_scheme::pytorch);
  double sum = 0;
  double squares = 0;
  const std::size_t count = decltype(m)::parameter_count;
  for (std::size_t i = 0; i < count; ++i) {
    sum += m.parameters()[i];
    squares += m.parameters()[i] * m.parameters()[i];
  }
  const double mean = sum / count;
  // normal(0, 1) over 8192 values: the mean is within 4 standard errors of
  // 0 and the standard deviation within 5% of 1.
  CHECK(std::abs(mean) < 4 / std::sqrt(static_cast<double>(count)));
  CHECK(std::sqrt(squares / count - mean * mean) == doctest::Approx(1.0).epsilon(0.05));
  model<sequential<input<64>, minibatch_discrimination<16, 8>>, cpu64> dcgan(1, init_scheme::dcgan);
  double dcgan_squares = 0;
  for (std::size_t i = 0; i < count; ++i)
    dcgan_squares += dcgan.parameters()[i] * dcgan.parameters()[i];
  CHECK(std::sqrt(dcgan_squares / count) == doctest::Approx(0.02).epsilon(0.05));
}

TEST_CASE("minibatch_discrimination state_dict name") {
  model<sequential<input<5>, minibatch_discrimination<3, 2>>, cpu64> m;
  std::vector<std::string> names;
  std::vector<std::vector<std::size_t>> shapes;
  m.visit_parameters([&](const std::string& name, double*, double*, const parameter_spec& spec) {
    names.push_back(name);
    shapes.push_back(spec.shape());
  });
  CHECK(names == std::vector<std::string>{"0.T"});
  CHECK(shapes == std::vector<std::vector<std::size_t>>{{5, 3, 2}});
}
