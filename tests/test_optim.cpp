// Optimizers against torch.optim trajectories (tests/fixtures/optim,
// written by tests/fixtures/make_optim_fixtures.py), bitwise resumption from
// state copied out through visit_state, option checks, and the parameter EMA
// against its closed form.

#include <doctest/doctest.h>
#include <omp.h>

#include <nlohmann/json.hpp>

#include <algorithm>  // std::equal, std::max
#include <cmath>      // std::abs, std::pow, std::isnan
#include <cstdint>    // std::int64_t
#include <fstream>    // std::ifstream
#include <limits>     // std::numeric_limits
#include <map>        // std::map
#include <set>        // std::set
#include <span>       // std::span
#include <stdexcept>  // std::runtime_error
#include <string>     // std::string
#include <vector>     // std::vector

#include "advgan/backend/cpu.hpp"
#include "advgan/compose/sequential.hpp"
#include "advgan/layers/dense.hpp"
#include "advgan/optim.hpp"

using namespace advgan;
using json = nlohmann::json;

namespace {

const json& trajectories() {
  static const json data = [] {
    std::ifstream in(ADVGAN_FIXTURE_DIR "/optim/trajectories.json");
    REQUIRE_MESSAGE(in.good(), "missing fixture; run tests/fixtures/make_optim_fixtures.py");
    return json::parse(in);
  }();
  return data;
}

template <class T>
std::vector<T> to_vector(const json& values) {
  std::vector<T> out;
  for (const auto& v : values) out.push_back(static_cast<T>(v.get<double>()));
  return out;
}

// Calls f(optimizer) with an optimizer of the fixture case's kind and options.
template <class T, class Function>
void with_optimizer(const json& fixture_case, std::size_t count, Function&& f) {
  const std::string kind = fixture_case["optimizer"];
  const json& o = fixture_case["options"];
  auto read = [&](const char* key, auto fallback) { return o.value(key, fallback); };
  if (kind == "adam" || kind == "adamw") {
    auto fill = [&](auto options) {
      options.lr = read("lr", options.lr);
      options.beta1 = read("beta1", options.beta1);
      options.beta2 = read("beta2", options.beta2);
      options.eps = read("eps", options.eps);
      options.weight_decay = read("weight_decay", options.weight_decay);
      options.amsgrad = read("amsgrad", options.amsgrad);
      return options;
    };
    if (kind == "adam") {
      adam<T> optimizer(count, fill(adam_options{}));
      f(optimizer);
    } else {
      adamw<T> optimizer(count, fill(adamw_options{}));
      f(optimizer);
    }
  } else if (kind == "sgd") {
    sgd_options options;
    options.lr = read("lr", options.lr);
    options.momentum = read("momentum", options.momentum);
    options.dampening = read("dampening", options.dampening);
    options.weight_decay = read("weight_decay", options.weight_decay);
    options.nesterov = read("nesterov", options.nesterov);
    sgd<T> optimizer(count, options);
    f(optimizer);
  } else if (kind == "rmsprop") {
    rmsprop_options options;
    options.lr = read("lr", options.lr);
    options.alpha = read("alpha", options.alpha);
    options.eps = read("eps", options.eps);
    options.weight_decay = read("weight_decay", options.weight_decay);
    options.momentum = read("momentum", options.momentum);
    options.centered = read("centered", options.centered);
    rmsprop<T> optimizer(count, options);
    f(optimizer);
  } else {
    FAIL("unknown optimizer kind in the fixture: ", kind);
  }
}

// Checks every value of `actual` against `expected` and reports the worst
// index: |actual - expected| <= tolerance * max(|expected|, 1).
template <class T>
void check_close(std::span<const T> actual, const json& expected, double tolerance,
                 const std::string& what) {
  REQUIRE(actual.size() == expected.size());
  double worst = 0;
  std::size_t worst_index = 0;
  for (std::size_t i = 0; i < actual.size(); ++i) {
    const double reference = expected[i].get<double>();
    const double error =
        std::abs(static_cast<double>(actual[i]) - reference) / std::max(std::abs(reference), 1.0);
    if (!(error <= worst)) {
      worst = error;
      worst_index = i;
    }
  }
  INFO(what, ": worst index ", worst_index, ", got ", static_cast<double>(actual[worst_index]),
       ", expected ", expected[worst_index].get<double>(), ", relative error ", worst);
  CHECK(worst <= tolerance);
}

// A copy of an optimizer's state, taken and restored through visit_state.
template <class T>
struct saved_state {
  std::map<std::string, std::vector<T>> arrays;
  std::map<std::string, std::int64_t> counters;

  template <class Optimizer>
  void save(Optimizer& optimizer) {
    optimizer.visit_state([&](const char* name, auto&& state) {
      if constexpr (std::is_same_v<std::remove_cvref_t<decltype(state)>, std::int64_t>)
        counters[name] = state;
      else
        arrays[name].assign(state.begin(), state.end());
    });
  }

  template <class Optimizer>
  void restore(Optimizer& optimizer) const {
    optimizer.visit_state([&](const char* name, auto&& state) {
      if constexpr (std::is_same_v<std::remove_cvref_t<decltype(state)>, std::int64_t>) {
        REQUIRE(counters.count(name) == 1);
        state = counters.at(name);
      } else {
        REQUIRE(arrays.count(name) == 1);
        const std::vector<T>& saved = arrays.at(name);
        REQUIRE(saved.size() == state.size());
        std::copy(saved.begin(), saved.end(), state.begin());
      }
    });
  }
};

}  // namespace

static_assert(optimizer<adam<float>>);
static_assert(optimizer<adam<double>>);
static_assert(optimizer<adamw<float>>);
static_assert(optimizer<sgd<double>>);
static_assert(optimizer<rmsprop<float>>);
// The average is no optimizer: it has no step(params, grads).
static_assert(!optimizer<ema<float>>);
static_assert(!optimizer<int>);

TEST_CASE("optimizers match torch.optim in double") {
  const json& data = trajectories();
  const auto initial = to_vector<double>(data["initial"]);
  std::vector<std::vector<double>> gradients;
  for (const auto& g : data["gradients"]) gradients.push_back(to_vector<double>(g));

  for (const json& fixture_case : data["cases"]) {
    const std::string name = fixture_case["name"];
    INFO("case ", name);
    with_optimizer<double>(fixture_case, initial.size(), [&](auto& optimizer) {
      std::vector<double> params = initial;
      for (std::size_t step = 0; step < gradients.size(); ++step) {
        optimizer.step(params, gradients[step]);
        check_close<double>(params, fixture_case["trajectory"][step], 1e-12,
                            "parameters after step " + std::to_string(step + 1));
      }

      const json& expected_state = fixture_case["state"];
      std::set<std::string> visited;
      optimizer.visit_state([&](const char* state_name, auto&& state) {
        visited.insert(state_name);
        if constexpr (std::is_same_v<std::remove_cvref_t<decltype(state)>, std::int64_t>) {
          CHECK(state == 10);
          // torch.optim.SGD keeps no step count.
          if (expected_state.contains(state_name))
            CHECK(state == expected_state[state_name].get<std::int64_t>());
        } else {
          REQUIRE_MESSAGE(expected_state.contains(state_name), "unexpected state ",
                          std::string(state_name));
          check_close<double>(state, expected_state[state_name], 1e-12, state_name);
        }
      });
      for (const auto& item : expected_state.items()) {
        const std::string state_name = item.key();
        CHECK_MESSAGE(visited.count(state_name) == 1, "state not visited: ", state_name);
      }
    });
  }
}

TEST_CASE("optimizers track torch.optim in float") {
  const json& data = trajectories();
  const auto initial = to_vector<float>(data["initial"]);
  std::vector<std::vector<float>> gradients;
  for (const auto& g : data["gradients"]) gradients.push_back(to_vector<float>(g));

  for (const json& fixture_case : data["cases"]) {
    const std::string name = fixture_case["name"];
    INFO("case ", name);
    with_optimizer<float>(fixture_case, initial.size(), [&](auto& optimizer) {
      std::vector<float> params = initial;
      for (std::size_t step = 0; step < gradients.size(); ++step) {
        optimizer.step(params, gradients[step]);
        // Ten steps of float rounding, from inputs already rounded to float.
        check_close<float>(params, fixture_case["trajectory"][step], 2e-6,
                           "parameters after step " + std::to_string(step + 1));
      }
    });
  }
}

TEST_CASE("resumed optimizers are bitwise identical") {
  const json& data = trajectories();
  const auto initial = to_vector<double>(data["initial"]);
  std::vector<std::vector<double>> gradients;
  for (const auto& g : data["gradients"]) gradients.push_back(to_vector<double>(g));
  const std::size_t half = gradients.size() / 2;

  for (const json& fixture_case : data["cases"]) {
    const std::string name = fixture_case["name"];
    INFO("case ", name);
    std::vector<double> straight_params = initial;
    saved_state<double> straight;
    with_optimizer<double>(fixture_case, initial.size(), [&](auto& optimizer) {
      for (const auto& g : gradients) optimizer.step(straight_params, g);
      straight.save(optimizer);
    });

    // Five steps, then the state goes into fresh storage and the optimizer away.
    std::vector<double> resumed_params = initial;
    saved_state<double> checkpoint;
    with_optimizer<double>(fixture_case, initial.size(), [&](auto& optimizer) {
      for (std::size_t step = 0; step < half; ++step)
        optimizer.step(resumed_params, gradients[step]);
      checkpoint.save(optimizer);
    });
    saved_state<double> resumed;
    with_optimizer<double>(fixture_case, initial.size(), [&](auto& optimizer) {
      checkpoint.restore(optimizer);
      CHECK(optimizer.step_count() == static_cast<std::int64_t>(half));
      for (std::size_t step = half; step < gradients.size(); ++step)
        optimizer.step(resumed_params, gradients[step]);
      resumed.save(optimizer);
    });

    CHECK(resumed_params == straight_params);
    CHECK(resumed.counters == straight.counters);
    CHECK(resumed.counters.at("step") == 10);
    for (const auto& entry : straight.arrays) {
      const std::string& state_name = entry.first;
      const std::vector<double>& values = entry.second;
      INFO("state ", state_name);
      REQUIRE(resumed.arrays.count(state_name) == 1);
      CHECK(resumed.arrays.at(state_name) == values);
    }
    CHECK(resumed.arrays.size() == straight.arrays.size());
  }
}

TEST_CASE("threaded update equals the serial one") {
  // 70,006 parameters, above the threshold where the update loop goes
  // parallel: 1,892 copies of the fixture's 37 values and 2 more.
  const json& data = trajectories();
  const auto initial = to_vector<double>(data["initial"]);
  std::vector<std::vector<double>> gradients;
  for (const auto& g : data["gradients"]) gradients.push_back(to_vector<double>(g));
  const std::size_t count = 1892 * initial.size() + 2;
  auto tile = [&](const std::vector<double>& values) {
    std::vector<double> out(count);
    for (std::size_t i = 0; i < count; ++i) out[i] = values[i % values.size()];
    return out;
  };

  const int threads = omp_get_max_threads();
  omp_set_num_threads(2);
  for (const json& fixture_case : data["cases"]) {
    const std::string name = fixture_case["name"];
    INFO("case ", name);
    std::vector<double> small = initial;
    with_optimizer<double>(fixture_case, initial.size(), [&](auto& optimizer) {
      for (const auto& g : gradients) optimizer.step(small, g);
    });
    std::vector<double> large = tile(initial);
    with_optimizer<double>(fixture_case, count, [&](auto& optimizer) {
      for (const auto& g : gradients) optimizer.step(large, tile(g));
    });
    CHECK(large == tile(small));
  }
  omp_set_num_threads(threads);
}

TEST_CASE("optimizer state storage is allocated once") {
  std::vector<double> params(37, 0.5);
  const std::vector<double> grads(37, 0.25);
  adam<double> optimizer(params.size(), {.amsgrad = true});
  std::map<std::string, const double*> addresses;
  optimizer.visit_state([&](const char* name, auto&& state) {
    if constexpr (!std::is_same_v<std::remove_cvref_t<decltype(state)>, std::int64_t>)
      addresses[name] = state.data();
  });
  CHECK(addresses.size() == 3);
  for (int i = 0; i < 3; ++i) optimizer.step(params, grads);
  optimizer.visit_state([&](const char* name, auto&& state) {
    if constexpr (!std::is_same_v<std::remove_cvref_t<decltype(state)>, std::int64_t>)
      CHECK(addresses.at(name) == state.data());
  });
}

TEST_CASE("learning rate can be changed between steps") {
  std::vector<double> params{1.0, -2.0, 0.5};
  const std::vector<double> grads{0.25, 1.5, -4.0};
  sgd<double> optimizer(params.size(), {.lr = 0.1});
  CHECK(optimizer.learning_rate() == 0.1);
  optimizer.set_learning_rate(0.5);
  CHECK(optimizer.learning_rate() == 0.5);
  optimizer.step(params, grads);
  CHECK(params == std::vector<double>{1.0 - 0.5 * 0.25, -2.0 - 0.5 * 1.5, 0.5 + 0.5 * 4.0});

  adam<float> adam_optimizer(3);
  adam_optimizer.set_learning_rate(2e-4);
  CHECK(adam_optimizer.learning_rate() == 2e-4);
  CHECK_THROWS_AS(adam_optimizer.set_learning_rate(-1), argument_error);
  CHECK(adam_optimizer.learning_rate() == 2e-4);
}

TEST_CASE("invalid optimizer options are rejected") {
  using doctest::Contains;
  CHECK_THROWS_WITH_AS(adam<double>(3, {.lr = -1e-3}), Contains("adam: invalid lr -0.001"),
                       argument_error);
  CHECK_THROWS_WITH_AS(adam<double>(3, {.lr = std::numeric_limits<double>::quiet_NaN()}),
                       Contains("invalid lr nan"), argument_error);
  CHECK_THROWS_WITH_AS(adam<double>(3, {.beta1 = 1.0}), Contains("invalid beta1 1"),
                       argument_error);
  CHECK_THROWS_WITH_AS(adam<double>(3, {.beta2 = -0.5}), Contains("invalid beta2 -0.5"),
                       argument_error);
  CHECK_THROWS_WITH_AS(adam<double>(3, {.eps = -1}), Contains("invalid eps -1"), argument_error);
  CHECK_THROWS_WITH_AS(adamw<double>(3, {.weight_decay = -0.1}),
                       Contains("adamw: invalid weight_decay -0.1"), argument_error);
  CHECK_THROWS_WITH_AS(sgd<double>(3, {.momentum = -0.9}), Contains("sgd: invalid momentum -0.9"),
                       argument_error);
  CHECK_THROWS_WITH_AS(sgd<double>(3, {.dampening = 1.5}), Contains("invalid dampening 1.5"),
                       argument_error);
  CHECK_THROWS_WITH_AS(sgd<double>(3, {.nesterov = true}),
                       Contains("nesterov requires momentum > 0 and dampening = 0"),
                       argument_error);
  CHECK_THROWS_AS(sgd<double>(3, {.momentum = 0.9, .dampening = 0.1, .nesterov = true}),
                  argument_error);
  CHECK_THROWS_WITH_AS(rmsprop<double>(3, {.alpha = 1.5}), Contains("rmsprop: invalid alpha 1.5"),
                       argument_error);
  CHECK_THROWS_WITH_AS(rmsprop<double>(3, {.momentum = -1}), Contains("invalid momentum -1"),
                       argument_error);
  CHECK_THROWS_WITH_AS(ema<double>(std::vector<double>(3), 1.5), Contains("ema: invalid decay 1.5"),
                       argument_error);
}

TEST_CASE("step rejects arrays of the wrong length") {
  std::vector<double> params(4);
  const std::vector<double> grads(3);
  adam<double> optimizer(3);
  CHECK_THROWS_WITH_AS(
      optimizer.step(params, grads),
      doctest::Contains("adam: step() got 4 parameters and 3 gradients, expected 3"),
      argument_error);
  CHECK(optimizer.step_count() == 0);
  rmsprop<double> other(4);
  CHECK_THROWS_AS(other.step(params, grads), argument_error);
}

TEST_CASE("optimizer updates a whole model in one step") {
  using spec = sequential<input<3>, dense<2>, dense<1>>;
  model<spec, cpu<double>> net(5);
  constexpr std::size_t count = model<spec, cpu<double>>::parameter_count;
  static_assert(count == 3 * 2 + 2 + 2 * 1 + 1);
  std::span<double> params(net.parameters(), count);
  std::span<double> grads(net.gradients(), count);
  for (std::size_t i = 0; i < count; ++i) grads[i] = 0.1 * static_cast<double>(i) - 0.3;
  const std::vector<double> before(params.begin(), params.end());

  sgd<double> optimizer(count, {.lr = 0.25});
  optimizer.step(params, grads);
  for (std::size_t i = 0; i < count; ++i) {
    INFO("parameter ", i);
    CHECK(params[i] == before[i] + -0.25 * grads[i]);
  }
}

TEST_CASE("ema matches the closed form") {
  // After k updates with parameters p_1 .. p_k, starting from p_0:
  //   shadow_k = decay^k p_0 + (1 - decay) * sum_j decay^(k - j) p_j.
  constexpr double decay = 0.9;
  constexpr std::size_t count = 11;
  constexpr int updates = 25;
  philox rng(42);
  std::vector<std::vector<double>> history(updates + 1, std::vector<double>(count));
  for (auto& p : history)
    for (auto& v : p) v = rng.normal();

  ema<double> average(history[0], decay);
  CHECK(average.parameter_count() == count);
  for (int k = 1; k <= updates; ++k) average.update(history[static_cast<std::size_t>(k)]);
  CHECK(average.update_count() == updates);

  for (std::size_t i = 0; i < count; ++i) {
    double expected = std::pow(decay, updates) * history[0][i];
    for (int j = 1; j <= updates; ++j)
      expected +=
          (1 - decay) * std::pow(decay, updates - j) * history[static_cast<std::size_t>(j)][i];
    INFO("index ", i);
    CHECK(average.average()[i] == doctest::Approx(expected).epsilon(1e-13));
  }
}

TEST_CASE("ema swaps into parameters and back") {
  std::vector<float> params{1, 2, 3, 4};
  ema<float> average(params, 0.5);
  const std::vector<float> trained{3, 6, 9, 12};
  params = trained;
  average.update(params);  // shadow = 0.5 * {1, 2, 3, 4} + 0.5 * {3, 6, 9, 12}
  const std::vector<float> expected_average{2, 4, 6, 8};
  CHECK(std::equal(average.average().begin(), average.average().end(), expected_average.begin()));

  {
    auto applied = average.apply(params);
    CHECK(params == expected_average);
  }
  CHECK(params == trained);
  CHECK(std::equal(average.average().begin(), average.average().end(), expected_average.begin()));

  try {
    auto applied = average.apply(params);
    throw std::runtime_error("sampling failed");
  } catch (const std::runtime_error&) {
  }
  CHECK(params == trained);

  std::vector<float> exported(4);
  average.copy_to(exported);
  CHECK(exported == expected_average);
  CHECK_THROWS_AS(average.exchange(std::span<float>(exported).first(3)), argument_error);

  average.reset(params);
  CHECK(average.update_count() == 0);
  CHECK(std::equal(average.average().begin(), average.average().end(), trained.begin()));
}

TEST_CASE("ema state round trip") {
  philox rng(3);
  std::vector<double> params(9);
  for (auto& v : params) v = rng.normal();
  ema<double> straight(params, 0.99);
  ema<double> first_half(params, 0.99);
  std::vector<std::vector<double>> updates(6, std::vector<double>(params.size()));
  for (auto& u : updates)
    for (auto& v : u) v = rng.normal();
  for (const auto& u : updates) straight.update(u);
  for (std::size_t k = 0; k < 3; ++k) first_half.update(updates[k]);

  saved_state<double> checkpoint;
  checkpoint.save(first_half);
  CHECK(checkpoint.counters.at("step") == 3);
  CHECK(checkpoint.arrays.count("shadow") == 1);
  ema<double> resumed(std::vector<double>(params.size()), 0.99);
  checkpoint.restore(resumed);
  for (std::size_t k = 3; k < updates.size(); ++k) resumed.update(updates[k]);
  CHECK(std::equal(resumed.average().begin(), resumed.average().end(), straight.average().begin()));
  CHECK(resumed.update_count() == 6);
}
