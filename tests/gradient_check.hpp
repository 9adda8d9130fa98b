#pragma once
// A finite-difference gradient checker for bound layers and models in
// double precision, shared by the layer tests.

#include <doctest/doctest.h>

#include <algorithm>  // std::max
#include <cmath>      // std::abs
#include <string>     // std::string
#include <vector>     // std::vector

#include "advgan/advgan.hpp"

namespace advgan::testing {

using cpu64 = cpu<double>;
using tensor64 = cpu64::tensor;

/// Returns a tensor (n, c, h, w) of normal values from `seed`.
inline tensor64 random_tensor(std::size_t n, std::size_t c, std::size_t h, std::size_t w,
                              std::uint64_t seed, double stddev = 1.0) {
  tensor64 t;
  cpu64::resize(t, n, c, h, w);
  philox rng(seed, 99);
  cpu64::fill_normal(t.data(), t.size(), rng, 0.0, stddev);
  return t;
}

/// Largest absolute difference over the largest absolute reference value.
inline double relative_max_error(const double* computed, const double* reference, std::size_t n) {
  double difference = 0;
  double scale = 0;
  for (std::size_t i = 0; i < n; ++i) {
    difference = std::max(difference, std::abs(computed[i] - reference[i]));
    scale = std::max(scale, std::abs(reference[i]));
  }
  return scale == 0 ? difference : difference / scale;
}

/// Checks a model's input gradient and every parameter gradient against
/// central finite differences of L = sum(weights * forward(x)), in
/// training or evaluation mode. Layers whose forward pass changes state
/// (batch-norm running statistics) are fine: the loss does not read that
/// state in training mode, and evaluation mode does not change it.
template <class Model>
void check_gradients(Model& model, tensor64 x, bool training, double tolerance = 1e-6,
                     double step = 1e-6) {
  model.train(training);
  philox noise(4242);
  const tensor64& y0 = model.forward(x, &noise);
  tensor64 weights = random_tensor(y0.shape()[0], y0.shape()[1], y0.shape()[2], y0.shape()[3], 7);
  auto loss = [&](tensor64& input) {
    philox same_noise(4242);
    const tensor64& y = model.forward(input, &same_noise);
    return cpu64::dot(y.data(), weights.data(), y.size());
  };
  loss(x);
  model.zero_grad();
  tensor64 dx;
  model.backward(weights, &dx);

  auto compare = [&](const std::string& what, const std::vector<double>& analytic,
                     const std::vector<double>& numeric) {
    const double error = relative_max_error(analytic.data(), numeric.data(), analytic.size());
    INFO(what << ": relative error " << error);
    CHECK(error < tolerance);
  };

  std::vector<double> numeric(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double saved = x.data()[i];
    x.data()[i] = saved + step;
    const double up = loss(x);
    x.data()[i] = saved - step;
    const double down = loss(x);
    x.data()[i] = saved;
    numeric[i] = (up - down) / (2 * step);
  }
  compare("input gradient", {dx.data(), dx.data() + dx.size()}, numeric);

  std::vector<double> analytic(model.gradients(), model.gradients() + Model::parameter_count);
  model.visit_parameters(
      [&](const std::string& name, double* value, double*, const parameter_spec& spec) {
        const std::size_t offset = static_cast<std::size_t>(value - model.parameters());
        std::vector<double> numeric_parameter(spec.size());
        for (std::size_t i = 0; i < spec.size(); ++i) {
          const double saved = value[i];
          value[i] = saved + step;
          const double up = loss(x);
          value[i] = saved - step;
          const double down = loss(x);
          value[i] = saved;
          numeric_parameter[i] = (up - down) / (2 * step);
        }
        compare("parameter " + name,
                {analytic.begin() + static_cast<std::ptrdiff_t>(offset),
                 analytic.begin() + static_cast<std::ptrdiff_t>(offset + spec.size())},
                numeric_parameter);
      });
}

}  // namespace advgan::testing
