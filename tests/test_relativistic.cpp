// Relativistic average objectives: values and gradients from PyTorch
// (tests/fixtures/relativistic/relativistic.json, written by
// tests/fixtures/make_relativistic_fixtures.py), central finite differences
// in double, the documented values of undefined infinite forms, and
// gan_trainer steps whose parameter gradients are checked against finite
// differences of L_D and L_G.

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <algorithm>  // std::max
#include <array>      // std::array
#include <cmath>      // std::abs, std::isfinite, std::isinf, std::isnan
#include <cstddef>    // std::size_t
#include <fstream>    // std::ifstream
#include <limits>     // std::numeric_limits
#include <memory>     // std::make_unique
#include <span>       // std::span
#include <string>     // std::string
#include <vector>     // std::vector

#include "advgan/advgan.hpp"
#include "gradient_check.hpp"

using namespace advgan;
using advgan::testing::cpu64;
using advgan::testing::random_tensor;
using advgan::testing::tensor64;
using json = nlohmann::json;

using ra_sgan = relativistic_average<non_saturating>;
using ra_lsgan = relativistic_average<least_squares>;
using ra_hinge = relativistic_average<hinge>;

static_assert(relativistic_objective<ra_sgan>);
static_assert(relativistic_objective<ra_lsgan>);
static_assert(relativistic_objective<ra_hinge>);
static_assert(!objective<ra_sgan>);
static_assert(!relativistic_objective<non_saturating>);
static_assert(!relativistic_objective<wasserstein>);

namespace {

constexpr double inf = std::numeric_limits<double>::infinity();

const json& reference() {
  static const json data = [] {
    std::ifstream in(ADVGAN_FIXTURE_DIR "/relativistic/relativistic.json");
    REQUIRE_MESSAGE(in.good(), "missing fixture; run tests/fixtures/make_relativistic_fixtures.py");
    return json::parse(in);
  }();
  return data;
}

// A fixture number: a JSON number, or the string "inf" or "-inf".
double fixture_number(const json& value) {
  if (value.is_string()) {
    const std::string text = value.get<std::string>();
    REQUIRE((text == "inf" || text == "-inf"));
    return text == "inf" ? inf : -inf;
  }
  return value.get<double>();
}

std::vector<double> fixture_numbers(const json& values) {
  std::vector<double> numbers;
  for (const json& value : values) numbers.push_back(fixture_number(value));
  return numbers;
}

// Checks computed against expected: infinities and zeros exactly, other
// values to max|a - b| / max|b| <= tolerance over the finite entries.
void check_values(const std::vector<double>& computed, const std::vector<double>& expected,
                  double tolerance, const std::string& quantity) {
  REQUIRE(computed.size() == expected.size());
  double difference = 0;
  double scale = 0;
  for (std::size_t i = 0; i < computed.size(); ++i) {
    INFO(quantity, " [", i, "]: got ", computed[i], ", expected ", expected[i]);
    CHECK_FALSE(std::isnan(computed[i]));
    if (std::isinf(expected[i]) || expected[i] == 0) {
      CHECK(computed[i] == expected[i]);
      continue;
    }
    difference = std::max(difference, std::abs(computed[i] - expected[i]));
    scale = std::max(scale, std::abs(expected[i]));
  }
  INFO(quantity, ": relative error ", (scale == 0 ? 0.0 : difference / scale));
  CHECK(difference <= tolerance * scale);
}

template <class T>
std::vector<double> as_double(const std::vector<T>& values) {
  return {values.begin(), values.end()};
}

template <class Objective, class T>
void check_case_against_pytorch(const json& entry, const std::string& dtype, double tolerance,
                                const std::string& case_name) {
  std::vector<T> real;
  std::vector<T> fake;
  for (double v : fixture_numbers(entry["real_logits"])) real.push_back(static_cast<T>(v));
  for (double v : fixture_numbers(entry["fake_logits"])) fake.push_back(static_cast<T>(v));
  std::vector<T> real_grad(real.size());
  std::vector<T> fake_grad(fake.size());
  std::vector<T> generator_real_grad(real.size());
  std::vector<T> generator_fake_grad(fake.size());
  const double d = Objective::discriminator_loss(std::span<const T>(real), std::span<const T>(fake),
                                                 std::span<T>(real_grad), std::span<T>(fake_grad));
  const double g = Objective::generator_loss(std::span<const T>(real), std::span<const T>(fake),
                                             std::span<T>(generator_real_grad),
                                             std::span<T>(generator_fake_grad));

  const json& expected = entry["results"][dtype][Objective::kind];
  const std::string where = std::string(Objective::kind) + " " + case_name + " " + dtype;
  check_values({d}, {fixture_number(expected["discriminator_loss"])}, tolerance,
               where + " discriminator loss");
  check_values(as_double(real_grad), fixture_numbers(expected["real_grad"]), tolerance,
               where + " discriminator real gradient");
  check_values(as_double(fake_grad), fixture_numbers(expected["fake_grad"]), tolerance,
               where + " discriminator fake gradient");
  check_values({g}, {fixture_number(expected["generator_loss"])}, tolerance,
               where + " generator loss");
  check_values(as_double(generator_real_grad), fixture_numbers(expected["generator_real_grad"]),
               tolerance, where + " generator real gradient");
  check_values(as_double(generator_fake_grad), fixture_numbers(expected["generator_fake_grad"]),
               tolerance, where + " generator fake gradient");
}

template <class Objective>
void check_against_pytorch() {
  const json& cases = reference()["cases"];
  REQUIRE(cases.size() >= 8);
  for (const auto& [name, entry] : cases.items()) {
    check_case_against_pytorch<Objective, double>(entry, "f64", 1e-10, name);
    check_case_against_pytorch<Objective, float>(entry, "f32", 1e-5, name);
  }
}

// Checks every gradient of both losses against central differences in
// double, at normal random logits times 3 with 5 real and 3 fake samples.
template <class Objective>
void check_finite_differences(std::uint64_t seed) {
  philox rng(seed);
  std::vector<double> real(5);
  std::vector<double> fake(3);
  for (auto& v : real) v = 3 * rng.normal();
  for (auto& v : fake) v = 3 * rng.normal();
  std::vector<double> d_real(real.size());
  std::vector<double> d_fake(fake.size());
  std::vector<double> g_real(real.size());
  std::vector<double> g_fake(fake.size());
  Objective::discriminator_loss(std::span<const double>(real), std::span<const double>(fake),
                                std::span<double>(d_real), std::span<double>(d_fake));
  Objective::generator_loss(std::span<const double>(real), std::span<const double>(fake),
                            std::span<double>(g_real), std::span<double>(g_fake));

  std::vector<double> scratch_real(real.size());
  std::vector<double> scratch_fake(fake.size());
  auto d_loss = [&] {
    return Objective::discriminator_loss(
        std::span<const double>(real), std::span<const double>(fake),
        std::span<double>(scratch_real), std::span<double>(scratch_fake));
  };
  auto g_loss = [&] {
    return Objective::generator_loss(std::span<const double>(real), std::span<const double>(fake),
                                     std::span<double>(scratch_real),
                                     std::span<double>(scratch_fake));
  };
  constexpr double h = 1e-5;
  auto central = [&](double& logit, auto loss) {
    const double saved = logit;
    logit = saved + h;
    const double plus = loss();
    logit = saved - h;
    const double minus = loss();
    logit = saved;
    return (plus - minus) / (2 * h);
  };
  auto check = [&](double analytic, double numeric, const std::string& term, std::size_t index) {
    INFO(std::string(Objective::kind), " ", term, " index ", index, ": analytic ", analytic,
         ", numeric ", numeric);
    CHECK(std::abs(analytic - numeric) <= 1e-8 * std::max(1.0, std::abs(numeric)));
  };
  for (std::size_t i = 0; i < real.size(); ++i) {
    check(d_real[i], central(real[i], d_loss), "discriminator real", i);
    check(g_real[i], central(real[i], g_loss), "generator real", i);
  }
  for (std::size_t i = 0; i < fake.size(); ++i) {
    check(d_fake[i], central(fake[i], d_loss), "discriminator fake", i);
    check(g_fake[i], central(fake[i], g_loss), "generator fake", i);
  }
}

struct loss_and_gradients {
  double loss;
  std::vector<double> real_grad;
  std::vector<double> fake_grad;
};

template <class Objective>
loss_and_gradients discriminator_at(const std::vector<double>& real,
                                    const std::vector<double>& fake) {
  loss_and_gradients result{0, std::vector<double>(real.size()), std::vector<double>(fake.size())};
  result.loss = Objective::discriminator_loss(
      std::span<const double>(real), std::span<const double>(fake),
      std::span<double>(result.real_grad), std::span<double>(result.fake_grad));
  return result;
}

}  // namespace

TEST_CASE("relativistic losses match PyTorch") {
  check_against_pytorch<ra_sgan>();
  check_against_pytorch<ra_lsgan>();
  check_against_pytorch<ra_hinge>();
}

TEST_CASE("relativistic gradients match finite differences") {
  for (std::uint64_t seed : {1u, 2u, 3u}) {
    check_finite_differences<ra_sgan>(seed);
    check_finite_differences<ra_lsgan>(seed);
    check_finite_differences<ra_hinge>(seed);
  }
}

TEST_CASE("relativistic losses at hand-computed values") {
  // real {1, 3}, fake {0}: a = {1, 3}, b = {-2}.
  const std::vector<double> real{1, 3};
  const std::vector<double> fake{0};
  SUBCASE("RaLSGAN") {
    // L_D = ((1 - 1)^2 + (3 - 1)^2) / 2 + (-2 + 1)^2 = 3.
    const loss_and_gradients d = discriminator_at<ra_lsgan>(real, fake);
    CHECK(d.loss == 3);
    // dL/dr_k = (2 (a_k - 1) - 2 (b + 1)) / 2 = {1, 3}; dL/df = 2 (b + 1) - mean 2 (a - 1) = -4.
    CHECK(d.real_grad == std::vector<double>{1, 3});
    CHECK(d.fake_grad == std::vector<double>{-4});
  }
  SUBCASE("RaHingeGAN") {
    // L_D = (relu(0) + relu(-2)) / 2 + relu(-1) = 0, with zero gradients.
    const loss_and_gradients d = discriminator_at<ra_hinge>(real, fake);
    CHECK(d.loss == 0);
    CHECK(d.real_grad == std::vector<double>{0, 0});
    CHECK(d.fake_grad == std::vector<double>{0});
  }
}

TEST_CASE("relativistic undefined infinite forms") {
  SUBCASE("a batch holding +inf and -inf has no mean") {
    // mean(real) is undefined, so every fake relativistic logit is undefined,
    // with term +inf and derivative 0. The real terms stay defined.
    const std::vector<double> real{inf, -inf};
    const std::vector<double> fake{0.5, 1.5};
    for (int objective = 0; objective < 3; ++objective) {
      const loss_and_gradients d = objective == 0   ? discriminator_at<ra_sgan>(real, fake)
                                   : objective == 1 ? discriminator_at<ra_lsgan>(real, fake)
                                                    : discriminator_at<ra_hinge>(real, fake);
      INFO("objective ", objective);
      CHECK(d.loss == inf);
      for (double g : d.fake_grad) CHECK_FALSE(std::isnan(g));
      for (double g : d.real_grad) CHECK_FALSE(std::isnan(g));
    }
    // RaSGAN: a = {+inf, -inf} with phi'(a) = -sigmoid(-a) = {0, -1}; the
    // fake derivatives are 0, so dL/dr = phi'(a) / 2 and dL/df = -mean phi'(a) / 2.
    const loss_and_gradients d = discriminator_at<ra_sgan>(real, fake);
    CHECK(d.real_grad == std::vector<double>{0, -0.5});
    CHECK(d.fake_grad == std::vector<double>{0.25, 0.25});
  }
  SUBCASE("an infinite logit against an infinite mean of the same sign") {
    // real {+inf}, fake {+inf}: a = b = inf - inf, undefined on both sides.
    const std::vector<double> both{inf};
    const loss_and_gradients d = discriminator_at<ra_sgan>(both, both);
    CHECK(d.loss == inf);
    CHECK(d.real_grad == std::vector<double>{0});
    CHECK(d.fake_grad == std::vector<double>{0});
    const loss_and_gradients ls = discriminator_at<ra_lsgan>(both, both);
    CHECK(ls.loss == inf);
    CHECK(ls.real_grad == std::vector<double>{0});
    CHECK(ls.fake_grad == std::vector<double>{0});
  }
  SUBCASE("opposite infinite derivatives in RaLSGAN give 0") {
    // real {+inf, -inf, 0} has an undefined mean, fake {1} a finite one: a =
    // {+inf, -inf, -1} with derivatives {+inf, -inf, -4}, whose mean is
    // undefined, so dL/df is 0; the fake term is +inf.
    const loss_and_gradients d =
        discriminator_at<ra_lsgan>(std::vector<double>{inf, -inf, 0}, std::vector<double>{1});
    CHECK(d.loss == inf);
    CHECK(d.fake_grad == std::vector<double>{0});
    CHECK(d.real_grad[0] == inf);
    CHECK(d.real_grad[1] == -inf);
    CHECK(d.real_grad[2] == doctest::Approx(-4.0 / 3));
  }
}

TEST_CASE("relativistic NaN logits give a NaN loss") {
  const std::vector<double> real{0.5, std::numeric_limits<double>::quiet_NaN()};
  const std::vector<double> fake{1};
  CHECK(std::isnan(discriminator_at<ra_sgan>(real, fake).loss));
  CHECK(std::isnan(discriminator_at<ra_hinge>(real, fake).loss));
}

TEST_CASE("relativistic bad batches are rejected") {
  const std::vector<double> logits{1, 2};
  std::vector<double> grad(2);
  std::vector<double> short_grad(1);
  const std::vector<double> empty;
  std::vector<double> empty_grad;
  auto message_of = [](auto call) {
    try {
      call();
    } catch (const argument_error& e) {
      return std::string(e.what());
    }
    return std::string("no exception");
  };
  const std::string empty_message = message_of([&] {
    ra_sgan::generator_loss(std::span<const double>(logits), std::span<const double>(empty),
                            std::span<double>(grad), std::span<double>(empty_grad));
  });
  INFO(empty_message);
  CHECK(empty_message.find("relativistic_average<non_saturating>") != std::string::npos);
  CHECK(empty_message.find("fake batch is empty") != std::string::npos);
  const std::string length_message = message_of([&] {
    ra_hinge::discriminator_loss(std::span<const double>(logits), std::span<const double>(logits),
                                 std::span<double>(short_grad), std::span<double>(grad));
  });
  INFO(length_message);
  CHECK(length_message.find("real gradient has 1 values, expected one per logit (2)") !=
        std::string::npos);
}

namespace {

using tiny_generator =
    sequential<input<4>, dense<8>, relu, dense<4>, reshape<1, 2, 2>, tanh_activation>;
// Batch norm and dropout make the critic's re-run of the real batch
// observable: a wrong noise position or buffer state changes the gradients
// and the running statistics.
using stateful_critic =
    sequential<input<1, 2, 2>, flatten, dense<6>, batch_norm, leaky_relu<>, dropout<>, dense<1>>;

trainer_options frozen_options() {
  trainer_options options;
  options.seed = 11;
  // A zero learning rate keeps the parameters where the gradients were
  // taken, so finite differences after step() see the same point.
  options.discriminator_optimizer = {0.0, 0.5, 0.999};
  options.generator_optimizer = {0.0, 0.5, 0.999};
  options.sample_count = 4;
  return options;
}

template <class Model>
std::vector<double> parameters_of(Model& m) {
  return {m.parameters(), m.parameters() + Model::parameter_count};
}

template <class Model>
std::vector<double> buffers_of(Model& m) {
  std::vector<double> values;
  m.visit_buffers([&](const std::string&, auto&&... buffer) {
    if constexpr (sizeof...(buffer) == 2) {
      auto [data, spec] = std::tie(buffer...);
      values.insert(values.end(), data, data + spec.size());
    } else {
      auto [counter] = std::tie(buffer...);
      values.push_back(static_cast<double>(counter));
    }
  });
  return values;
}

// Returns the central difference of loss() along each parameter of m.
template <class Model, class Loss>
std::vector<double> numeric_gradient(Model& m, Loss loss) {
  constexpr double h = 1e-6;
  std::vector<double> numeric(Model::parameter_count);
  for (std::size_t i = 0; i < Model::parameter_count; ++i) {
    double& p = m.parameters()[i];
    const double saved = p;
    p = saved + h;
    const double plus = loss();
    p = saved - h;
    const double minus = loss();
    p = saved;
    numeric[i] = (plus - minus) / (2 * h);
  }
  return numeric;
}

template <class Objective>
void check_trainer_gradients() {
  INFO(std::string(Objective::kind));
  const trainer_options options = frozen_options();
  using trainer_type = gan_trainer<tiny_generator, stateful_critic, Objective, cpu64>;
  auto trainer = std::make_unique<trainer_type>(options);
  const tensor64 real = random_tensor(5, 1, 2, 2, 21);
  const step_record record = trainer->step(real);
  REQUIRE(record.generator_updated);
  auto& g = trainer->generator();
  auto& d = trainer->discriminator();
  const std::vector<double> d_gradient(d.gradients(), d.gradients() + d.parameter_count);
  const std::vector<double> g_gradient(g.gradients(), g.gradients() + g.parameter_count);
  const std::vector<double> trainer_buffers = buffers_of(d);

  // The trainer's streams: latent noise is stream 1 and layer noise stream 2.
  tensor64 latent;
  cpu64::resize(latent, 5, 4, 1, 1);
  philox noise(options.seed, 1);
  cpu64::fill_normal(latent.data(), latent.size(), noise, 0, 1);

  // D step: D(real), G(z), D(fake) along one layer-noise stream.
  std::uint64_t after_discriminator_step = 0;
  auto discriminator_loss = [&] {
    philox layer_noise(options.seed, 2);
    const tensor64 real_logits = d.forward(real, &layer_noise);
    const tensor64 fake = g.forward(latent, &layer_noise);
    const tensor64& fake_logits = d.forward(fake, &layer_noise);
    after_discriminator_step = layer_noise.offset();
    std::vector<double> real_grad(5);
    std::vector<double> fake_grad(5);
    return Objective::discriminator_loss(std::span<const double>(real_logits.data(), 5),
                                         std::span<const double>(fake_logits.data(), 5),
                                         std::span<double>(real_grad),
                                         std::span<double>(fake_grad));
  };
  // G step: D(real), then D on the generator's output, continuing the stream.
  auto generator_loss = [&] {
    philox layer_noise(options.seed, 2);
    layer_noise.seek(after_discriminator_step);
    const tensor64 real_logits = d.forward(real, &layer_noise);
    const tensor64 fake = g.forward(latent, nullptr);
    const tensor64& fake_logits = d.forward(fake, &layer_noise);
    std::vector<double> real_grad(5);
    std::vector<double> fake_grad(5);
    return Objective::generator_loss(std::span<const double>(real_logits.data(), 5),
                                     std::span<const double>(fake_logits.data(), 5),
                                     std::span<double>(real_grad), std::span<double>(fake_grad));
  };
  CHECK(discriminator_loss() == doctest::Approx(record.discriminator_loss).epsilon(1e-12));
  CHECK(generator_loss() == doctest::Approx(record.generator_loss).epsilon(1e-12));

  const std::vector<double> d_numeric = numeric_gradient(d, discriminator_loss);
  const double d_error =
      advgan::testing::relative_max_error(d_gradient.data(), d_numeric.data(), d_numeric.size());
  INFO("discriminator gradient relative error ", d_error);
  CHECK(d_error < 1e-6);
  discriminator_loss();
  const std::vector<double> g_numeric = numeric_gradient(g, generator_loss);
  const double g_error =
      advgan::testing::relative_max_error(g_gradient.data(), g_numeric.data(), g_numeric.size());
  INFO("generator gradient relative error ", g_error);
  CHECK(g_error < 1e-6);

  // Batch-norm statistics as after one pass each on real and fake in the D
  // step and again in the G step: the re-run of the real batch leaves none.
  model<stateful_critic, cpu64> fresh(options.seed + 1, options.init);
  philox layer_noise(options.seed, 2);
  for (int pass = 0; pass < 2; ++pass) {
    fresh.forward(real, &layer_noise);
    const tensor64 fake = g.forward(latent, nullptr);
    fresh.forward(fake, &layer_noise);
  }
  CHECK(buffers_of(fresh) == trainer_buffers);
}

template <class Objective>
std::vector<double> train_a_few_steps(std::vector<double>* first_parameters) {
  trainer_options options;
  options.seed = 5;
  options.sample_count = 4;
  using trainer_type = gan_trainer<tiny_generator, stateful_critic, Objective, cpu64>;
  auto trainer = std::make_unique<trainer_type>(options);
  if (first_parameters != nullptr) *first_parameters = parameters_of(trainer->generator());
  for (std::uint64_t i = 0; i < 4; ++i) {
    const step_record record = trainer->step(random_tensor(6, 1, 2, 2, 30 + i));
    CHECK(std::isfinite(record.discriminator_loss));
    CHECK(std::isfinite(record.generator_loss));
    CHECK(record.generator_updated);
  }
  std::vector<double> result = parameters_of(trainer->generator());
  const std::vector<double> critic = parameters_of(trainer->discriminator());
  result.insert(result.end(), critic.begin(), critic.end());
  return result;
}

template <class Objective>
void check_training_runs() {
  INFO(std::string(Objective::kind));
  std::vector<double> initial;
  const std::vector<double> first = train_a_few_steps<Objective>(&initial);
  const std::vector<double> second = train_a_few_steps<Objective>(nullptr);
  CHECK(first == second);
  const std::vector<double> generator_after(first.begin(),
                                            first.begin() + static_cast<long>(initial.size()));
  CHECK(generator_after != initial);
}

}  // namespace

TEST_CASE("trainer relativistic gradients match finite differences") {
  check_trainer_gradients<ra_sgan>();
  check_trainer_gradients<ra_lsgan>();
  check_trainer_gradients<ra_hinge>();
}

TEST_CASE("trainer relativistic steps are finite and deterministic") {
  check_training_runs<ra_sgan>();
  check_training_runs<ra_lsgan>();
  check_training_runs<ra_hinge>();
}
