// Adversarial objectives and their element-wise functions: saturated and
// infinite logits, central finite differences in double, and values from
// PyTorch (tests/fixtures/optim/objectives.json, written by
// tests/fixtures/make_optim_fixtures.py).

#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <array>    // std::array
#include <cmath>    // std::isnan, std::isinf, std::abs
#include <fstream>  // std::ifstream
#include <limits>   // std::numeric_limits
#include <span>     // std::span
#include <string>   // std::string
#include <vector>   // std::vector

#include "advgan/core/philox.hpp"
#include "advgan/objectives.hpp"

using namespace advgan;
using json = nlohmann::json;

static_assert(objective<minimax>);
static_assert(objective<non_saturating>);
static_assert(objective<wasserstein>);
static_assert(objective<hinge>);
static_assert(objective<least_squares>);

namespace {

// Has a generator loss but no discriminator loss.
struct generator_only {
  template <class T>
  static double generator_loss(std::span<const T>, std::span<T>) {
    return 0;
  }
};

}  // namespace

static_assert(!objective<generator_only>);
static_assert(!objective<int>);

namespace {

constexpr double inf = std::numeric_limits<double>::infinity();

const json& reference() {
  static const json data = [] {
    std::ifstream in(ADVGAN_FIXTURE_DIR "/optim/objectives.json");
    REQUIRE_MESSAGE(in.good(), "missing fixture; run tests/fixtures/make_optim_fixtures.py");
    return json::parse(in);
  }();
  return data;
}

// |actual - expected| <= tolerance * |expected|, with a message naming the
// quantity. Exact when expected is 0 or infinite.
void check_relative(double actual, double expected, double tolerance, const std::string& quantity) {
  INFO(quantity, ": got ", actual, ", expected ", expected);
  CHECK_FALSE(std::isnan(actual));
  if (expected == 0 || std::isinf(expected))
    CHECK(actual == expected);
  else
    CHECK(std::abs(actual - expected) <= tolerance * std::abs(expected));
}

template <class T>
void check_element_table() {
  constexpr T t_inf = std::numeric_limits<T>::infinity();
  const std::array<T, 8> x{0, 20, -20, 100, -200, 200, t_inf, -t_inf};
  const std::array<T, 8> y{0, 1, 1, 0, 1, 0, 1, 0};
  // max(x, 0) - x y + log1p(exp(-|x|)): ln 2, log1p(exp(-20)) and
  // 20 + log1p(exp(-20)) to 19 digits. At x = 100, -200 and 200 the
  // log1p(exp(-|x|)) term is below half an ulp of |x|. At x = +-inf with the
  // matching target the limit is 0.
  const std::array<double, 8> loss{
      0.6931471805599453094, 2.061153620314380703e-9, 20.00000000206115362, 100, 200, 200, 0, 0};
  // sigmoid(x) - y: sigmoid(20) - 1 = -exp(-20) / (1 + exp(-20)), and
  // sigmoid(-20) - 1 = -1 / (1 + exp(-20)).
  const std::array<double, 8> gradient{
      0.5, -2.061153618190203581e-9, -0.9999999979388463818, 1, -1, 1, 0, 0};
  for (std::size_t i = 0; i < x.size(); ++i) {
    const std::string where = "x = " + std::to_string(x[i]) + ", y = " + std::to_string(y[i]);
    check_relative(math::bce_with_logits(x[i], y[i]), loss[i], 1e-6, "bce_with_logits at " + where);
    check_relative(math::bce_with_logits_gradient(x[i], y[i]), gradient[i], 1e-6,
                   "gradient at " + where);
  }
}

// Logit cases for the saturation table.
constexpr std::array<double, 4> extreme_logits{1e4, -1e4, inf, -inf};

// The value and derivative of one batch term at each of extreme_logits.
struct term_table {
  std::array<double, 4> value;
  std::array<double, 4> derivative;
};

// The expected limits of one objective's three batch terms.
struct objective_table {
  term_table real;       // discriminator, real batch
  term_table fake;       // discriminator, fake batch
  term_table generator;  // generator, fake batch
};

// The documented sum of a real and a fake term: inf - inf is +inf.
double expected_sum(double real, double fake) {
  if (std::isinf(real) && std::isinf(fake) && real != fake) return inf;
  return real + fake;
}

// Runs every combination of extreme real and fake logits, batch size 1, in T.
template <class Objective, class T>
void check_extremes(const objective_table& table) {
  for (std::size_t r = 0; r < extreme_logits.size(); ++r)
    for (std::size_t f = 0; f < extreme_logits.size(); ++f) {
      const std::array<T, 1> real{static_cast<T>(extreme_logits[r])};
      const std::array<T, 1> fake{static_cast<T>(extreme_logits[f])};
      std::array<T, 1> real_grad{};
      std::array<T, 1> fake_grad{};
      INFO(std::string(Objective::kind), " discriminator, real ", extreme_logits[r], ", fake ",
           extreme_logits[f]);
      const double loss =
          Objective::discriminator_loss(std::span<const T>(real), std::span<const T>(fake),
                                        std::span<T>(real_grad), std::span<T>(fake_grad));
      CHECK_FALSE(std::isnan(loss));
      CHECK(loss == expected_sum(table.real.value[r], table.fake.value[f]));
      CHECK(real_grad[0] == static_cast<T>(table.real.derivative[r]));
      CHECK(fake_grad[0] == static_cast<T>(table.fake.derivative[f]));
    }
  for (std::size_t f = 0; f < extreme_logits.size(); ++f) {
    const std::array<T, 1> fake{static_cast<T>(extreme_logits[f])};
    std::array<T, 1> fake_grad{};
    INFO(std::string(Objective::kind), " generator, fake ", extreme_logits[f]);
    const double loss =
        Objective::generator_loss(std::span<const T>(fake), std::span<T>(fake_grad));
    CHECK_FALSE(std::isnan(loss));
    CHECK(loss == table.generator.value[f]);
    CHECK(fake_grad[0] == static_cast<T>(table.generator.derivative[f]));
  }
}

// The terms of BCE(real, 1) and BCE(fake, 0) at extreme_logits = {1e4, -1e4, inf, -inf}.
// log1p(exp(-1e4)) is 0 in double, so the finite values are exact.
constexpr term_table bce_real{{0, 1e4, 0, inf}, {0, -1, 0, -1}};
constexpr term_table bce_fake{{1e4, 0, inf, 0}, {1, 0, 1, 0}};

template <class T>
void check_all_extremes() {
  // minimax G: -softplus(x), derivative -sigmoid(x).
  check_extremes<minimax, T>({bce_real, bce_fake, {{-1e4, 0, -inf, 0}, {-1, 0, -1, 0}}});
  // non-saturating G: softplus(-x), derivative -sigmoid(-x).
  check_extremes<non_saturating, T>({bce_real, bce_fake, {{0, 1e4, 0, inf}, {0, -1, 0, -1}}});
  // Wasserstein: -x on real, x on fake, -x for G.
  check_extremes<wasserstein, T>({{{-1e4, 1e4, -inf, inf}, {-1, -1, -1, -1}},
                                  {{1e4, -1e4, inf, -inf}, {1, 1, 1, 1}},
                                  {{-1e4, 1e4, -inf, inf}, {-1, -1, -1, -1}}});
  // Hinge: relu(1 - x) on real, relu(1 + x) on fake, -x for G.
  check_extremes<hinge, T>({{{0, 10001, 0, inf}, {0, -1, 0, -1}},
                            {{10001, 0, inf, 0}, {1, 0, 1, 0}},
                            {{-1e4, 1e4, -inf, inf}, {-1, -1, -1, -1}}});
  // Least squares: 0.5 (x - 1)^2 on real and for G, 0.5 x^2 on fake. The
  // gradients x - 1 and x are infinite at infinite logits.
  const term_table shifted{{0.5 * 9999.0 * 9999.0, 0.5 * 10001.0 * 10001.0, inf, inf},
                           {9999, -10001, inf, -inf}};
  check_extremes<least_squares, T>(
      {shifted, {{5e7, 5e7, inf, inf}, {1e4, -1e4, inf, -inf}}, shifted});
}

// Checks every gradient of an objective against central differences of its
// loss, in double, at normal random logits times 3.
template <class Objective>
void check_finite_differences(std::uint64_t seed) {
  philox rng(seed);
  std::vector<double> real(5);
  std::vector<double> fake(3);
  for (auto& v : real) v = 3 * rng.normal();
  for (auto& v : fake) v = 3 * rng.normal();
  std::vector<double> real_grad(real.size());
  std::vector<double> fake_grad(fake.size());
  std::vector<double> scratch_real(real.size());
  std::vector<double> scratch_fake(fake.size());
  std::vector<double> generator_grad(fake.size());
  Objective::discriminator_loss(std::span<const double>(real), std::span<const double>(fake),
                                std::span<double>(real_grad), std::span<double>(fake_grad));
  Objective::generator_loss(std::span<const double>(fake), std::span<double>(generator_grad));

  auto d_loss = [&] {
    return Objective::discriminator_loss(
        std::span<const double>(real), std::span<const double>(fake),
        std::span<double>(scratch_real), std::span<double>(scratch_fake));
  };
  auto g_loss = [&] {
    return Objective::generator_loss(std::span<const double>(fake),
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
  // Central differences of these smooth (or piecewise linear) losses are
  // accurate to about h^2 times the third derivative plus rounding.
  auto check = [&](double analytic, double numeric, const std::string& term, std::size_t index) {
    INFO(std::string(Objective::kind), " ", term, " index ", index, ": analytic ", analytic,
         ", numeric ", numeric);
    CHECK(std::abs(analytic - numeric) <= 1e-8 * std::max(1.0, std::abs(numeric)));
  };
  for (std::size_t i = 0; i < real.size(); ++i)
    check(real_grad[i], central(real[i], d_loss), "discriminator real", i);
  for (std::size_t i = 0; i < fake.size(); ++i)
    check(fake_grad[i], central(fake[i], d_loss), "discriminator fake", i);
  for (std::size_t i = 0; i < fake.size(); ++i)
    check(generator_grad[i], central(fake[i], g_loss), "generator fake", i);
}

template <class Objective>
void check_against_pytorch() {
  const json& data = reference();
  const json& expected = data["objectives"][Objective::kind];
  const auto real = data["real_logits"].get<std::vector<double>>();
  const auto fake = data["fake_logits"].get<std::vector<double>>();
  std::vector<double> real_grad(real.size());
  std::vector<double> fake_grad(fake.size());
  std::vector<double> generator_grad(fake.size());
  const double d =
      Objective::discriminator_loss(std::span<const double>(real), std::span<const double>(fake),
                                    std::span<double>(real_grad), std::span<double>(fake_grad));
  const double g =
      Objective::generator_loss(std::span<const double>(fake), std::span<double>(generator_grad));

  const std::string kind = Objective::kind;
  check_relative(d, expected["discriminator_loss"].get<double>(), 1e-12,
                 kind + " discriminator loss");
  check_relative(g, expected["generator_loss"].get<double>(), 1e-12, kind + " generator loss");
  for (std::size_t i = 0; i < real.size(); ++i)
    check_relative(real_grad[i], expected["real_grad"][i].get<double>(), 1e-12,
                   kind + " real gradient " + std::to_string(i));
  for (std::size_t i = 0; i < fake.size(); ++i) {
    check_relative(fake_grad[i], expected["fake_grad"][i].get<double>(), 1e-12,
                   kind + " fake gradient " + std::to_string(i));
    check_relative(generator_grad[i], expected["generator_fake_grad"][i].get<double>(), 1e-12,
                   kind + " generator gradient " + std::to_string(i));
  }
}

}  // namespace

TEST_CASE("bce_with_logits at saturated and infinite logits") {
  SUBCASE("float") {
    check_element_table<float>();
  }
  SUBCASE("double") {
    check_element_table<double>();
  }
}

TEST_CASE("softplus and sigmoid at the extremes") {
  CHECK(math::softplus(inf) == inf);
  CHECK(math::softplus(-inf) == 0);
  CHECK(math::softplus(-1e4) == 0);
  CHECK(math::softplus(1e4) == 1e4);
  CHECK(math::softplus(800.0) == 800.0);  // log(1 + exp(800)) overflows in naive form
  CHECK(math::softplus(100.0f) == 100.0f);
  CHECK(math::sigmoid(inf) == 1);
  CHECK(math::sigmoid(-inf) == 0);
  CHECK(math::sigmoid(-800.0) == 0);
  CHECK(math::sigmoid(0.0f) == 0.5f);
  CHECK(std::isnan(math::softplus(std::numeric_limits<double>::quiet_NaN())));
  // A target that does not match an infinite logit: the loss has no finite limit.
  CHECK(math::bce_with_logits(inf, 0.0) == inf);
  CHECK(math::bce_with_logits(-inf, 1.0) == inf);
  CHECK(math::bce_with_logits(inf, 0.9) == inf);
  CHECK(math::bce_with_logits_gradient(inf, 0.9) == doctest::Approx(0.1).epsilon(1e-15));
  CHECK(math::bce_with_logits_gradient(-inf, 0.9) == doctest::Approx(-0.9).epsilon(1e-15));
}

TEST_CASE("generator losses far in saturation") {
  const std::array<double, 1> logit{-200};
  std::array<double, 1> grad{};
  // Non-saturating: softplus(200) = 200, gradient -sigmoid(200) = -1.
  CHECK(non_saturating::generator_loss(std::span<const double>(logit), std::span<double>(grad)) ==
        200);
  CHECK(grad[0] == -1);
  // Minimax: -softplus(-200) = -log1p(exp(-200)) = -1.3838965267367375e-87, and the
  // gradient -sigmoid(-200) is as small. This is the saturation that
  // non_saturating avoids.
  const double minimax_loss =
      minimax::generator_loss(std::span<const double>(logit), std::span<double>(grad));
  check_relative(minimax_loss, -1.3838965267367375e-87, 1e-12, "minimax generator loss");
  check_relative(grad[0], -1.3838965267367375e-87, 1e-12, "minimax generator gradient");

  // In float the gradient underflows to zero, while the loss is still computed in double.
  const std::array<float, 1> float_logit{-200};
  std::array<float, 1> float_grad{};
  const double float_loss =
      minimax::generator_loss(std::span<const float>(float_logit), std::span<float>(float_grad));
  check_relative(float_loss, -1.3838965267367375e-87, 1e-12, "minimax generator loss in float");
  CHECK_FALSE(std::isnan(float_grad[0]));
  CHECK(float_grad[0] == 0);
}

TEST_CASE("objectives at logits of 1e4 and infinity") {
  SUBCASE("float") {
    check_all_extremes<float>();
  }
  SUBCASE("double") {
    check_all_extremes<double>();
  }
}

TEST_CASE("undefined infinite sums give +inf") {
  const std::array<double, 2> mixed{inf, -inf};
  std::array<double, 2> grad{};
  CHECK(wasserstein::generator_loss(std::span<const double>(mixed), std::span<double>(grad)) ==
        inf);
  CHECK(grad[0] == -0.5);
  CHECK(grad[1] == -0.5);
  CHECK(hinge::generator_loss(std::span<const double>(mixed), std::span<double>(grad)) == inf);

  const std::array<double, 1> real{inf};
  std::array<double, 1> real_grad{};
  const std::array<double, 2> finite{1, 2};
  std::array<double, 2> finite_grad{};
  CHECK(wasserstein::discriminator_loss(
            std::span<const double>(real), std::span<const double>(mixed),
            std::span<double>(real_grad), std::span<double>(grad)) == inf);
  // A single infinite term keeps its sign: mean(fake) - mean(real) = 1.5 - inf.
  CHECK(wasserstein::discriminator_loss(
            std::span<const double>(real), std::span<const double>(finite),
            std::span<double>(real_grad), std::span<double>(finite_grad)) == -inf);
}

TEST_CASE("NaN logits give a NaN loss") {
  const std::array<double, 2> logits{0.5, std::numeric_limits<double>::quiet_NaN()};
  std::array<double, 2> grad{};
  CHECK(
      std::isnan(hinge::generator_loss(std::span<const double>(logits), std::span<double>(grad))));
  CHECK(std::isnan(
      non_saturating::generator_loss(std::span<const double>(logits), std::span<double>(grad))));
  const std::array<double, 1> real{std::numeric_limits<double>::quiet_NaN()};
  std::array<double, 1> real_grad{};
  CHECK(std::isnan(
      hinge::discriminator_loss(std::span<const double>(real), std::span<const double>(logits),
                                std::span<double>(real_grad), std::span<double>(grad))));
}

TEST_CASE("objective gradients against finite differences") {
  check_finite_differences<minimax>(1);
  check_finite_differences<non_saturating>(2);
  check_finite_differences<wasserstein>(3);
  check_finite_differences<hinge>(4);
  check_finite_differences<least_squares>(5);
}

TEST_CASE("objectives match PyTorch") {
  check_against_pytorch<minimax>();
  check_against_pytorch<non_saturating>();
  check_against_pytorch<wasserstein>();
  check_against_pytorch<hinge>();
  check_against_pytorch<least_squares>();
}

TEST_CASE("element-wise functions match PyTorch") {
  const json& e = reference()["elementwise"];
  const auto x = e["x"].get<std::vector<double>>();
  const auto y = e["y"].get<std::vector<double>>();
  for (std::size_t i = 0; i < x.size(); ++i) {
    const std::string at = " at x = " + std::to_string(x[i]) + ", y = " + std::to_string(y[i]);
    check_relative(math::softplus(x[i]), e["softplus"][i].get<double>(), 1e-14, "softplus" + at);
    check_relative(math::sigmoid(x[i]), e["sigmoid"][i].get<double>(), 1e-14, "sigmoid" + at);
    check_relative(math::bce_with_logits(x[i], y[i]), e["bce_with_logits"][i].get<double>(), 1e-13,
                   "bce_with_logits" + at);
    check_relative(math::bce_with_logits_gradient(x[i], y[i]),
                   e["bce_with_logits_grad"][i].get<double>(), 1e-13,
                   "bce_with_logits_gradient" + at);
  }
}

TEST_CASE("objectives reject bad batch sizes") {
  using doctest::Contains;
  const std::vector<float> logits{0.5f, -1.0f, 2.0f};
  std::vector<float> grad(3);
  std::vector<float> short_grad(2);
  const std::vector<float> empty;
  std::vector<float> empty_grad;
  CHECK_THROWS_WITH_AS(
      non_saturating::generator_loss(std::span<const float>(empty), std::span<float>(empty_grad)),
      Contains("non_saturating: the fake batch is empty"), argument_error);
  CHECK_THROWS_WITH_AS(
      hinge::discriminator_loss(std::span<const float>(logits), std::span<const float>(logits),
                                std::span<float>(short_grad), std::span<float>(grad)),
      Contains("hinge: the real gradient has 2 values, expected one per logit (3)"),
      argument_error);
  CHECK_THROWS_AS(least_squares::discriminator_loss(
                      std::span<const float>(logits), std::span<const float>(empty),
                      std::span<float>(grad), std::span<float>(empty_grad)),
                  argument_error);
}
