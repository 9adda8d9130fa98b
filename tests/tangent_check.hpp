#pragma once
// A finite-difference checker for a model's tangent pass and its backward
// pass, in double precision.

#include <doctest/doctest.h>

#include <string>  // std::string
#include <vector>  // std::vector

#include "advgan/advgan.hpp"
#include "gradient_check.hpp"

namespace advgan::testing {

/// Checks, for random x, x' and loss weights a and b, that
/// - tangent_forward(x') matches (y(x + h x') - y(x - h x')) / 2h, and
/// - tangent_backward(a, b) matches central differences of
///   L(x, x', theta) = a . y + b . y' with y' = J(x) x', with respect to x,
///   x' and every parameter.
/// Models with a random layer (dropout) are not supported.
template <class Model>
void check_tangent(Model& model, const tensor64& x, std::uint64_t seed, double tolerance = 1e-6,
                   double step = 1e-6) {
  const auto e = x.shape();
  tensor64 input = x;
  tensor64 tangent = random_tensor(e[0], e[1], e[2], e[3], seed + 1);
  const tensor64 y0 = model.forward(input);
  const auto out = y0.shape();
  const tensor64 a = random_tensor(out[0], out[1], out[2], out[3], seed + 2);
  const tensor64 b = random_tensor(out[0], out[1], out[2], out[3], seed + 3);

  auto compare = [&](const std::string& what, const double* analytic,
                     const std::vector<double>& numeric) {
    const double error = relative_max_error(analytic, numeric.data(), numeric.size());
    INFO(what << ": relative error " << error);
    CHECK(error < tolerance);
  };

  // The tangent against a directional difference of the forward pass.
  tensor64 shifted = input;
  std::vector<double> directional(y0.size());
  for (std::size_t i = 0; i < input.size(); ++i)
    shifted.data()[i] = input.data()[i] + step * tangent.data()[i];
  const tensor64 up = model.forward(shifted);
  for (std::size_t i = 0; i < input.size(); ++i)
    shifted.data()[i] = input.data()[i] - step * tangent.data()[i];
  const tensor64& down = model.forward(shifted);
  for (std::size_t i = 0; i < y0.size(); ++i)
    directional[i] = (up.data()[i] - down.data()[i]) / (2 * step);
  model.forward(input);
  const tensor64 y_tangent = model.tangent_forward(tangent);
  compare("output tangent", y_tangent.data(), directional);

  auto loss = [&] {
    const tensor64& y = model.forward(input);
    double total = cpu64::dot(y.data(), a.data(), y.size());
    const tensor64& t = model.tangent_forward(tangent);
    return total + cpu64::dot(t.data(), b.data(), t.size());
  };
  auto differences = [&](double* values, std::size_t count) {
    std::vector<double> numeric(count);
    for (std::size_t i = 0; i < count; ++i) {
      const double saved = values[i];
      values[i] = saved + step;
      const double plus = loss();
      values[i] = saved - step;
      const double minus = loss();
      values[i] = saved;
      numeric[i] = (plus - minus) / (2 * step);
    }
    return numeric;
  };

  loss();
  model.zero_grad();
  tensor64 dx;
  tensor64 dx_tangent;
  model.tangent_backward(a, b, &dx, &dx_tangent);
  const std::vector<double> analytic(model.gradients(), model.gradients() + Model::parameter_count);
  compare("input gradient", dx.data(), differences(input.data(), input.size()));
  compare("input tangent gradient", dx_tangent.data(), differences(tangent.data(), tangent.size()));
  model.visit_parameters(
      [&](const std::string& name, double* value, double*, const parameter_spec& spec) {
        const auto offset = static_cast<std::size_t>(value - model.parameters());
        compare("parameter " + name, analytic.data() + offset, differences(value, spec.size()));
      });
}

}  // namespace advgan::testing
