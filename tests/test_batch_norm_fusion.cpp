// Batch norm followed by a point-wise activation runs as one pass in
// model::forward and model::backward. These tests check that the fused pass
// gives the same values as the two layers one after the other, to the last
// bit, and that its gradients match finite differences.

#include <doctest/doctest.h>

#include <cstddef>
#include <vector>

#include "advgan/advgan.hpp"
#include "gradient_check.hpp"

using namespace advgan;
using advgan::testing::check_gradients;
using advgan::testing::cpu64;
using advgan::testing::random_tensor;
using advgan::testing::tensor64;

namespace {

// Every activation after a batch norm, a batch norm first (its fused
// backward then writes the model's input gradient), and a batch norm that
// is last and stays unfused. The layers before a batch norm have no bias:
// in training mode its gradient is zero, which a relative finite-difference
// check cannot resolve.
using fused_stack = sequential<input<2, 5, 5>, batch_norm, sigmoid, conv2d<3, 3, 1, 1, false>,
                               batch_norm, relu, conv2d<4, 3, 2, 1, false>, batch_norm,
                               leaky_relu<>, conv_transpose2d<3, 4, 2, 1, 0, false>, batch_norm,
                               tanh_activation, flatten, dense<6, false>, batch_norm>;

/// Restores the fused pass when a test ends, also when a check throws.
class fusion_setting {
 public:
  explicit fusion_setting(bool enabled) : saved_(detail::fuse_batch_norm_activation) {
    detail::fuse_batch_norm_activation = enabled;
  }
  ~fusion_setting() { detail::fuse_batch_norm_activation = saved_; }
  fusion_setting(const fusion_setting&) = delete;
  fusion_setting& operator=(const fusion_setting&) = delete;

 private:
  bool saved_;
};

/// What one forward and backward pass produced.
template <class Scalar>
struct pass_result {
  std::vector<std::vector<Scalar>> activations;
  std::vector<Scalar> input_gradient;
  std::vector<Scalar> parameter_gradients;
  std::vector<Scalar> buffers;
};

/// Runs two forward and backward passes in training mode, so the running
/// statistics move, then one more in the given mode, with the fused pass
/// on or off. Returns what the last passes wrote.
template <class Backend>
pass_result<typename Backend::scalar> run_passes(bool fused, bool training) {
  using scalar = typename Backend::scalar;
  const fusion_setting setting(fused);
  model<fused_stack, Backend> m(11, init_scheme::dcgan);
  const tensor64 x64 = random_tensor(3, 2, 5, 5, 21);
  const tensor64 dy64 = random_tensor(3, 6, 1, 1, 22);
  typename Backend::tensor x;
  typename Backend::tensor dy;
  Backend::resize(x, 3, 2, 5, 5);
  Backend::resize(dy, 3, 6, 1, 1);
  for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = static_cast<scalar>(x64.data()[i]);
  for (std::size_t i = 0; i < dy.size(); ++i) dy.data()[i] = static_cast<scalar>(dy64.data()[i]);

  typename Backend::tensor dx;
  for (int step = 0; step < 2; ++step) {
    m.train(true);
    m.forward(x);
    m.backward(dy, &dx);
  }
  m.train(training);
  m.zero_grad();
  m.forward(x);
  m.backward(dy, &dx);

  pass_result<scalar> result;
  for (std::size_t i = 0; i < fused_stack::layer_count; ++i) {
    const auto& a = m.activation(i);
    result.activations.emplace_back(a.data(), a.data() + a.size());
  }
  result.input_gradient.assign(dx.data(), dx.data() + dx.size());
  result.parameter_gradients.assign(m.gradients(), m.gradients() + m.parameter_count);
  std::vector<std::int64_t> counters;
  m.save_buffers(result.buffers, counters);
  return result;
}

template <class Backend>
void check_fused_equals_unfused(bool training) {
  const auto fused = run_passes<Backend>(true, training);
  const auto separate = run_passes<Backend>(false, training);
  for (std::size_t i = 0; i < fused_stack::layer_count; ++i) {
    INFO("layer ", i);
    CHECK(fused.activations[i] == separate.activations[i]);
  }
  CHECK(fused.input_gradient == separate.input_gradient);
  CHECK(fused.parameter_gradients == separate.parameter_gradients);
  CHECK(fused.buffers == separate.buffers);
}

}  // namespace

TEST_CASE("fused batch norm equals separate layers") {
  SUBCASE("float, training") {
    check_fused_equals_unfused<cpu<float>>(true);
  }
  SUBCASE("float, evaluation") {
    check_fused_equals_unfused<cpu<float>>(false);
  }
  SUBCASE("double, training") {
    check_fused_equals_unfused<cpu64>(true);
  }
  SUBCASE("double, evaluation") {
    check_fused_equals_unfused<cpu64>(false);
  }
}

TEST_CASE("fused batch norm gradients") {
  const fusion_setting setting(true);
  model<fused_stack, cpu64> m(12, init_scheme::dcgan);
  check_gradients(m, random_tensor(3, 2, 5, 5, 23), true);
  check_gradients(m, random_tensor(3, 2, 5, 5, 24), false);
}

TEST_CASE("fused batch norm keeps the activation's state") {
  // After a fused forward, the activation layer's own backward must see the
  // same input and output as after its own forward.
  const fusion_setting setting(true);
  model<fused_stack, cpu64> m(13, init_scheme::dcgan);
  const tensor64 x = random_tensor(3, 2, 5, 5, 25);
  m.forward(x);
  const tensor64& z = m.activation(1);
  tensor64 dz = random_tensor(3, 2, 5, 5, 26);
  tensor64 through_layer;
  m.layer<1>().backward(dz, &through_layer, {});
  REQUIRE(through_layer.size() == z.size());
  for (std::size_t i = 0; i < z.size(); ++i) {
    const double expected = z.data()[i] * (1 - z.data()[i]) * dz.data()[i];
    CHECK(through_layer.data()[i] == doctest::Approx(expected).epsilon(1e-15));
  }
}
