// Gradient penalties (WGAN-GP, R1, R2): exact values on linear critics, the
// norm axis and mix factor, zero input gradients, the parameter gradient
// against PyTorch's double backward (fixtures from
// tests/fixtures/make_penalty_fixtures.py) and against central finite
// differences of the penalty in double precision.

#include <doctest/doctest.h>

#include <algorithm>   // std::fill_n, std::copy
#include <cmath>       // std::isfinite, std::abs
#include <cstddef>     // std::size_t
#include <filesystem>  // std::filesystem::path, std::filesystem::directory_iterator
#include <ratio>       // std::ratio
#include <set>         // std::set
#include <span>        // std::span
#include <string>      // std::string
#include <vector>      // std::vector

#include "advgan/advgan.hpp"
#include "advgan/io/safetensors.hpp"
#include "gradient_check.hpp"

using namespace advgan;
using advgan::testing::cpu64;
using advgan::testing::random_tensor;
using advgan::testing::relative_max_error;
using advgan::testing::tensor64;

namespace {

using gp10 = gradient_penalty<>;
using r1_10 = r1_penalty<>;
using r2_10 = r2_penalty<>;

/// D(x) = sum(w * x) + b on samples of shape (1, 2, 2).
using linear_critic = sequential<input<1, 2, 2>, flatten, dense<1>>;

tensor64 filled(std::size_t n, std::size_t c, std::size_t h, std::size_t w, double value) {
  tensor64 t;
  cpu64::resize(t, n, c, h, w);
  std::fill_n(t.data(), t.size(), value);
  return t;
}

template <class Model>
void set_parameters(Model& m, const std::vector<double>& values) {
  REQUIRE(values.size() == Model::parameter_count);
  std::copy(values.begin(), values.end(), m.parameters());
}

template <class Model>
std::vector<double> gradients(const Model& m) {
  return {m.gradients(), m.gradients() + Model::parameter_count};
}

template <class Model>
void check_all_finite(const Model& m) {
  for (std::size_t i = 0; i < Model::parameter_count; ++i) {
    INFO("parameter " << i);
    CHECK(std::isfinite(m.parameters()[i]));
    CHECK(std::isfinite(m.gradients()[i]));
  }
}

}  // namespace

TEST_CASE("gradient penalty of a linear critic") {
  model<linear_critic, cpu<double>> critic;
  set_parameters(critic, {1, 1, 1, 1, 0});
  critic.zero_grad();
  const tensor64 real = filled(2, 1, 2, 2, 0.0);
  const tensor64 fake = filled(2, 1, 2, 2, 1.0);
  philox rng(21);
  const penalty_record record = gp10::apply(critic, real, fake, rng);
  // Every input gradient is w, of norm 2 over all four values, so
  // GP = 10 * (2 - 1)^2. A norm per pixel would be 1 and give 0.
  CHECK(record.value == doctest::Approx(10.0).epsilon(1e-15));
  CHECK(record.mean_gradient_norm == doctest::Approx(2.0).epsilon(1e-15));
  // dGP/dw_i = 2 * lambda * (|w| - 1) * w_i / |w| = 10; dGP/db = 0.
  const std::vector<double> grad = gradients(critic);
  for (std::size_t i = 0; i < 4; ++i) CHECK(grad[i] == doctest::Approx(10.0).epsilon(1e-15));
  CHECK(grad[4] == 0.0);
  // The penalty changes gradients only.
  CHECK(critic.parameters()[0] == 1.0);
  CHECK(critic.parameters()[4] == 0.0);
}

TEST_CASE("gradient penalty norm spans channels, rows and columns") {
  // Samples (2, 2, 1) with w = [3, 0, 0, 4]: the per-sample norm is 5, so
  // GP = 10 * (5 - 1)^2 = 160 and dGP/dw = 2 * 10 * 4 * w / 5 = 16 w. Norms
  // per channel (3 and 4) or per pixel would give other values.
  model<sequential<input<2, 2, 1>, flatten, dense<1>>, cpu<double>> critic;
  set_parameters(critic, {3, 0, 0, 4, 0.5});
  critic.zero_grad();
  const penalty_record record = gp10::at(critic, random_tensor(3, 2, 2, 1, 4));
  CHECK(record.value == doctest::Approx(160.0).epsilon(1e-14));
  const std::vector<double> grad = gradients(critic);
  CHECK(grad[0] == doctest::Approx(48.0).epsilon(1e-14));
  CHECK(grad[1] == 0.0);
  CHECK(grad[2] == 0.0);
  CHECK(grad[3] == doctest::Approx(64.0).epsilon(1e-14));
  CHECK(grad[4] == 0.0);
}

TEST_CASE("gradient penalty mixes each sample with one factor") {
  const tensor64 real = filled(2, 1, 2, 2, 0.0);
  const tensor64 fake = filled(2, 1, 2, 2, 1.0);
  philox rng(21);
  std::vector<double> mix(2);
  for (double& e : mix) e = rng.uniform();
  tensor64 points;
  interpolate_samples<cpu64>(real, fake, mix, points);
  for (std::size_t n = 0; n < 2; ++n) {
    INFO("sample " << n << ", mix factor " << mix[n]);
    CHECK(mix[n] >= 0.0);
    CHECK(mix[n] <= 1.0);
    // x̂ = e * 0 + (1 - e) * 1 at every value of the sample.
    for (std::size_t i = 0; i < 4; ++i) CHECK(points.data()[n * 4 + i] == 1.0 - mix[n]);
  }
  CHECK(mix[0] != mix[1]);

  // apply() draws the same factors in the same order: one per sample.
  model<linear_critic, cpu<double>> critic;
  philox same(21);
  gp10::apply(critic, real, fake, same);
  CHECK(same.offset() == rng.offset());
}

TEST_CASE("interpolate_samples rejects mismatched inputs") {
  tensor64 out;
  const std::vector<double> two = {0.5, 0.5};
  CHECK_THROWS_AS(
      interpolate_samples<cpu64>(filled(2, 1, 2, 2, 0), filled(3, 1, 2, 2, 0), two, out),
      shape_error);
  CHECK_THROWS_AS(
      interpolate_samples<cpu64>(filled(3, 1, 2, 2, 0), filled(3, 1, 2, 2, 0), two, out),
      argument_error);
  model<linear_critic, cpu<double>> critic;
  philox rng(1);
  CHECK_THROWS_AS(gp10::apply(critic, filled(2, 1, 2, 2, 0), filled(2, 1, 1, 4, 0), rng),
                  shape_error);
  CHECK_THROWS_AS(r1_10::apply(critic, filled(2, 1, 2, 2, 0), filled(3, 1, 2, 2, 0), rng),
                  shape_error);
}

TEST_CASE("gradient penalty at a zero input gradient") {
  model<linear_critic, cpu<double>> critic;
  set_parameters(critic, {0, 0, 0, 0, 0});
  critic.zero_grad();
  philox rng(3);
  const penalty_record record =
      gp10::apply(critic, filled(2, 1, 2, 2, 0.0), filled(2, 1, 2, 2, 1.0), rng);
  // ||g|| = 0, so GP = 10 * (0 - 1)^2, and the derivative of the norm is
  // taken as 0 there instead of 0 / 0.
  CHECK(record.value == 10.0);
  CHECK(record.mean_gradient_norm == 0.0);
  for (double g : gradients(critic)) CHECK(g == 0.0);

  adam<double> optimizer(decltype(critic)::parameter_count, {1e-4, 0.0, 0.9});
  optimizer.step({critic.parameters(), decltype(critic)::parameter_count},
                 {critic.gradients(), decltype(critic)::parameter_count});
  check_all_finite(critic);
}

TEST_CASE("gradient penalty with one dead sample") {
  // relu(w . x) with w = [3, 4]: sample 0 has pre-activation 7 and gradient
  // w (norm 5), sample 1 has -7 and gradient 0. GP = 10/2 * (5 - 1)^2 +
  // 10/2 * (0 - 1)^2 = 85, and only sample 0 moves w: dGP/dw = 10/2 * 2 * 4 *
  // w / 5 = 8 w.
  model<sequential<input<2>, dense<1, false>, relu>, cpu<double>> critic;
  set_parameters(critic, {3, 4});
  critic.zero_grad();
  tensor64 points = filled(2, 2, 1, 1, 1.0);
  points.data()[2] = -1;
  points.data()[3] = -1;
  const penalty_record record = gp10::at(critic, points);
  CHECK(record.value == doctest::Approx(85.0).epsilon(1e-15));
  CHECK(record.mean_gradient_norm == doctest::Approx(2.5).epsilon(1e-15));
  const std::vector<double> grad = gradients(critic);
  CHECK(grad[0] == doctest::Approx(24.0).epsilon(1e-15));
  CHECK(grad[1] == doctest::Approx(32.0).epsilon(1e-15));
}

TEST_CASE("r1 penalty of a linear critic") {
  model<linear_critic, cpu<double>> critic;
  set_parameters(critic, {1, 1, 1, 1, 0});
  critic.zero_grad();
  philox rng(5);
  const tensor64 real = random_tensor(2, 1, 2, 2, 8);
  // R1 = gamma / 2 * |w|^2 = 5 * 4 and dR1/dw_i = gamma * w_i = 10,
  // whatever the real samples and the fake batch are.
  const penalty_record record = r1_10::apply(critic, real, filled(2, 1, 2, 2, 7.0), rng);
  CHECK(record.value == doctest::Approx(20.0).epsilon(1e-15));
  std::vector<double> grad = gradients(critic);
  for (std::size_t i = 0; i < 4; ++i) CHECK(grad[i] == doctest::Approx(10.0).epsilon(1e-15));
  CHECK(grad[4] == 0.0);
  CHECK(rng.offset() == 0);

  critic.zero_grad();
  CHECK(r2_10::apply(critic, filled(2, 1, 2, 2, 7.0), real, rng).value ==
        doctest::Approx(20.0).epsilon(1e-15));
  grad = gradients(critic);
  for (std::size_t i = 0; i < 4; ++i) CHECK(grad[i] == doctest::Approx(10.0).epsilon(1e-15));
}

TEST_CASE("r1 penalty at a zero input gradient") {
  model<linear_critic, cpu<double>> critic;
  set_parameters(critic, {0, 0, 0, 0, 0});
  critic.zero_grad();
  CHECK(r1_10::at(critic, random_tensor(2, 1, 2, 2, 8)).value == 0.0);
  for (double g : gradients(critic)) CHECK(g == 0.0);
}

TEST_CASE("r1 penalty reads the real batch and r2 the fake batch") {
  model<sequential<input<1, 2, 2>, flatten, dense<3>, tanh_activation, dense<1>>, cpu<double>>
      critic(4);
  const tensor64 real = random_tensor(2, 1, 2, 2, 1);
  const tensor64 fake = random_tensor(2, 1, 2, 2, 2);
  philox rng(0);
  const double r1 = r1_10::apply(critic, real, fake, rng).value;
  const double r2 = r2_10::apply(critic, real, fake, rng).value;
  CHECK(r1 == r1_10::at(critic, real).value);
  CHECK(r2 == r1_10::at(critic, fake).value);
  CHECK(r1 != r2);
}

TEST_CASE("lazy penalty scales the gradient, not the value") {
  using lazy_r1 = r1_penalty<std::ratio<10>, 4>;
  static_assert(lazy_r1::interval == 4);
  static_assert(r1_10::interval == 1);
  static_assert(gp10::interval == 1);
  model<linear_critic, cpu<double>> critic;
  set_parameters(critic, {1, 1, 1, 1, 0});
  critic.zero_grad();
  CHECK(lazy_r1::at(critic, filled(2, 1, 2, 2, 0.5), lazy_r1::interval).value ==
        doctest::Approx(20.0).epsilon(1e-15));
  for (std::size_t i = 0; i < 4; ++i)
    CHECK(critic.gradients()[i] == doctest::Approx(40.0).epsilon(1e-15));
}

TEST_CASE("penalty gradients accumulate") {
  model<sequential<input<2, 3, 3>, conv2d<2, 3>, tanh_activation, flatten, dense<1>>, cpu<double>>
      critic(6);
  const tensor64 points = random_tensor(3, 2, 3, 3, 6);
  critic.zero_grad();
  gp10::at(critic, points);
  const std::vector<double> once = gradients(critic);
  gp10::at(critic, points);
  const std::vector<double> twice = gradients(critic);
  for (std::size_t i = 0; i < once.size(); ++i) CHECK(twice[i] == doctest::Approx(2 * once[i]));
}

TEST_CASE("gradient penalty in float") {
  model<linear_critic, cpu<float>> critic;
  std::fill_n(critic.parameters(), 4, 1.0f);
  critic.parameters()[4] = 0;
  critic.zero_grad();
  cpu<float>::tensor real;
  cpu<float>::tensor fake;
  cpu<float>::resize(real, 2, 1, 2, 2);
  cpu<float>::resize(fake, 2, 1, 2, 2);
  std::fill_n(real.data(), 8, 0.0f);
  std::fill_n(fake.data(), 8, 1.0f);
  philox rng(21);
  CHECK(gradient_penalty<>::apply(critic, real, fake, rng).value ==
        doctest::Approx(10.0).epsilon(1e-6));
  for (std::size_t i = 0; i < 4; ++i)
    CHECK(critic.gradients()[i] == doctest::Approx(10.0).epsilon(1e-6));
}

// --- Against central finite differences of the penalty ---------------------

namespace {

/// Compares each penalty's parameter gradient with central differences of
/// its value, at random points and parameters.
template <class Penalty, class Spec>
void check_penalty_differences(std::uint64_t seed, bool training, double tolerance = 1e-6) {
  model<Spec, cpu<double>> critic(seed);
  critic.train(training);
  using in = typename Spec::input_shape;
  const tensor64 points = random_tensor(3, in::channels, in::height, in::width, seed + 1);
  critic.zero_grad();
  Penalty::at(critic, points);
  const std::vector<double> analytic = gradients(critic);
  const double step = 1e-6;
  std::vector<double> numeric(analytic.size());
  for (std::size_t i = 0; i < numeric.size(); ++i) {
    double& value = critic.parameters()[i];
    const double saved = value;
    value = saved + step;
    const double up = Penalty::at(critic, points).value;
    value = saved - step;
    const double down = Penalty::at(critic, points).value;
    value = saved;
    numeric[i] = (up - down) / (2 * step);
  }
  const double error = relative_max_error(analytic.data(), numeric.data(), numeric.size());
  INFO(Penalty::kind << ": relative error " << error);
  CHECK(error < tolerance);
}

template <class Spec>
void check_all_penalties(std::uint64_t seed, bool training = true) {
  check_penalty_differences<gp10, Spec>(seed, training);
  check_penalty_differences<r1_10, Spec>(seed, training);
  check_penalty_differences<gradient_penalty<std::ratio<3>, std::ratio<1, 2>>, Spec>(seed,
                                                                                     training);
}

}  // namespace

TEST_CASE("penalty gradients against finite differences: dense critics") {
  check_all_penalties<sequential<input<6>, dense<5>, leaky_relu<>, dense<1>>>(1);
  check_all_penalties<sequential<input<6>, dense<8>, relu, dense<1>>>(2);
  check_all_penalties<sequential<input<2, 3, 3>, flatten, dense<5>, tanh_activation, dense<1>>>(3);
  check_all_penalties<sequential<input<6>, dense<5>, sigmoid, dense<1, false>>>(4);
  check_all_penalties<sequential<input<5>, dense<6>, layer_norm, sigmoid, dense<1>>>(5);
}

TEST_CASE("penalty gradients against finite differences: spectral norm critic") {
  // Evaluation mode keeps u and v fixed, so the penalty is a function of the
  // parameters alone.
  check_all_penalties<sequential<input<2, 5, 5>, spectral_norm<conv2d<3, 3, 2, 1>>, leaky_relu<>,
                                 flatten, spectral_norm<dense<1>>>>(10, false);
}

TEST_CASE("penalty gradients against finite differences: convolutional critics") {
  check_all_penalties<
      sequential<input<2, 5, 5>, conv2d<4, 3, 2, 1>, leaky_relu<>, conv2d<1, 3, 1, 0>, flatten>>(6);
  check_all_penalties<sequential<input<1, 8, 8>, conv2d<4, 4, 2, 1>, layer_norm, leaky_relu<>,
                                 conv2d<1, 4, 1, 0, false>, flatten>>(7);
  check_all_penalties<sequential<input<2, 4, 4>, conv2d<3, 3, 1, 1>, instance_norm_with<true>,
                                 tanh_activation, flatten, dense<1>>>(8);
  check_all_penalties<sequential<input<2, 4, 4>, conv2d<3, 3, 1, 1, false>, instance_norm, relu,
                                 conv2d<1, 4, 1, 0>, flatten>>(9);
}

// --- Against PyTorch's double backward --------------------------------------

namespace {

const std::filesystem::path penalty_fixture_dir =
    std::filesystem::path(ADVGAN_FIXTURE_DIR) / "penalties";

const std::set<std::string> penalty_fixture_cases = {
    "dense_leaky_relu",         "dense_relu",
    "flatten_dense_tanh",       "dense_sigmoid",
    "dense_layer_norm_sigmoid", "conv_leaky_relu",
    "conv_layer_norm",          "conv_instance_norm_tanh",
    "conv_instance_norm_relu",  "spectral_norm_critic"};

constexpr double fixture_tolerance = 1e-9;

tensor64 read_batch(const io::safetensors& file, const std::string& name, const extents& sample) {
  const auto& shape = file.at(name).shape;
  REQUIRE(!shape.empty());
  tensor64 t;
  cpu64::resize(t, shape[0], sample[1], sample[2], sample[3]);
  file.read_into<double>(name, shape, std::span<double>(t.data(), t.size()));
  return t;
}

/// Compares one penalty's value, mean gradient norm and parameter gradients
/// with the fixture. Gradient errors are relative to the largest reference
/// gradient of the whole critic, because some gradients are exactly zero in
/// exact arithmetic (a bias before instance norm) and only rounding noise in
/// both implementations.
template <class Penalty, class Model>
void compare_penalty(const io::safetensors& file, Model& critic, const std::string& prefix,
                     const tensor64& points) {
  critic.zero_grad();
  const penalty_record record = Penalty::at(critic, points);
  const double value = file.at(prefix + ".value").template to<double>()[0];
  INFO(prefix << ": value " << record.value << ", PyTorch " << value);
  CHECK(std::abs(record.value - value) <= fixture_tolerance * std::abs(value));
  const std::vector<double> norms = file.at(prefix + ".gradient_norm").template to<double>();
  double mean_norm = 0;
  for (double norm : norms) mean_norm += norm / static_cast<double>(norms.size());
  CHECK(std::abs(record.mean_gradient_norm - mean_norm) <= fixture_tolerance * mean_norm);

  std::vector<double> reference(Model::parameter_count);
  critic.visit_parameters(
      [&](const std::string& key, double* value, double*, const parameter_spec& spec) {
        const auto offset = static_cast<std::size_t>(value - critic.parameters());
        file.read_into<double>(prefix + ".grad." + key, spec.shape(),
                               std::span<double>(reference.data() + offset, spec.size()));
      });
  double scale = 0;
  for (double g : reference) scale = std::max(scale, std::abs(g));
  REQUIRE(scale > 0);
  critic.visit_parameters(
      [&](const std::string& key, double* value, double* gradient, const parameter_spec& spec) {
        const auto offset = static_cast<std::size_t>(value - critic.parameters());
        double difference = 0;
        for (std::size_t i = 0; i < spec.size(); ++i)
          difference = std::max(difference, std::abs(gradient[i] - reference[offset + i]));
        INFO(prefix << ".grad." << key
                    << ": max|a - b| / max|b over all parameters| = " << difference / scale);
        CHECK(difference / scale < fixture_tolerance);
      });
}

template <class Spec>
void check_penalty_fixture(const std::string& case_name) {
  REQUIRE(penalty_fixture_cases.count(case_name) == 1);
  const auto path = penalty_fixture_dir / (case_name + ".safetensors");
  INFO("fixture " << path.string());
  REQUIRE(std::filesystem::exists(path));
  const io::safetensors file = io::safetensors::load(path);
  CHECK(file.metadata().at("case") == case_name);

  model<Spec, cpu<double>> critic(0);
  critic.visit_parameters(
      [&](const std::string& key, double* value, double*, const parameter_spec& spec) {
        file.read_into<double>("param." + key, spec.shape(), std::span<double>(value, spec.size()));
      });
  critic.visit_buffers([&](const std::string& key, double* data, const parameter_spec& spec) {
    file.read_into<double>("param." + key, spec.shape(), std::span<double>(data, spec.size()));
  });
  using in = typename Spec::input_shape;
  const extents sample = {0, in::channels, in::height, in::width};
  const tensor64 real = read_batch(file, "real", sample);
  const tensor64 fake = read_batch(file, "fake", sample);
  const tensor64 points = read_batch(file, "points", sample);
  const std::vector<double> mix = file.at("mix").to<double>();

  tensor64 mixed;
  interpolate_samples<cpu64>(real, fake, mix, mixed);
  CHECK(relative_max_error(mixed.data(), points.data(), points.size()) < 1e-15);

  compare_penalty<gp10>(file, critic, "gp", points);
  compare_penalty<r1_10>(file, critic, "r1", real);
  compare_penalty<r2_10>(file, critic, "r2", fake);
}

}  // namespace

TEST_CASE("penalty fixture files all checked") {
  REQUIRE(std::filesystem::is_directory(penalty_fixture_dir));
  std::size_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(penalty_fixture_dir)) {
    if (entry.path().extension() != ".safetensors") continue;
    ++files;
    INFO("fixture " << entry.path().filename().string());
    CHECK(penalty_fixture_cases.count(entry.path().stem().string()) == 1);
  }
  CHECK(files == penalty_fixture_cases.size());
}

TEST_CASE("penalties against pytorch double backward: dense critics") {
  check_penalty_fixture<sequential<input<6>, dense<5>, leaky_relu<>, dense<1>>>("dense_leaky_relu");
  check_penalty_fixture<sequential<input<6>, dense<8>, relu, dense<1>>>("dense_relu");
  check_penalty_fixture<sequential<input<2, 3, 3>, flatten, dense<5>, tanh_activation, dense<1>>>(
      "flatten_dense_tanh");
  check_penalty_fixture<sequential<input<6>, dense<5>, sigmoid, dense<1, false>>>("dense_sigmoid");
  check_penalty_fixture<sequential<input<5>, dense<6>, layer_norm, sigmoid, dense<1>>>(
      "dense_layer_norm_sigmoid");
}

TEST_CASE("penalties against pytorch double backward: convolutional critics") {
  check_penalty_fixture<
      sequential<input<2, 5, 5>, conv2d<4, 3, 2, 1>, leaky_relu<>, conv2d<1, 3, 1, 0>, flatten>>(
      "conv_leaky_relu");
  check_penalty_fixture<sequential<input<1, 8, 8>, conv2d<4, 4, 2, 1>, layer_norm, leaky_relu<>,
                                   conv2d<1, 4, 1, 0, false>, flatten>>("conv_layer_norm");
  check_penalty_fixture<sequential<input<2, 4, 4>, conv2d<3, 3, 1, 1>, instance_norm_with<true>,
                                   tanh_activation, flatten, dense<1>>>("conv_instance_norm_tanh");
  check_penalty_fixture<sequential<input<2, 4, 4>, conv2d<3, 3, 1, 1, false>, instance_norm, relu,
                                   conv2d<1, 4, 1, 0>, flatten>>("conv_instance_norm_relu");
}

TEST_CASE("penalties against pytorch double backward: spectral norm critic") {
  // Training mode: each penalty's forward pass runs one power iteration, as
  // PyTorch's does.
  check_penalty_fixture<sequential<input<2, 5, 5>, spectral_norm<conv2d<3, 3, 2, 1>>, leaky_relu<>,
                                   flatten, spectral_norm<dense<1>>>>("spectral_norm_critic");
}
