#pragma once
// What every layer provides, and the helpers layers share.
//
// A layer comes in two parts. The spec is a small type such as
// `conv2d<64, 4, 2, 1>` that states the layer's settings; given the shape
// of its input it names the output shape and the bound layer class. The
// bound layer holds the run-time state for one backend and scalar type.
//
// The `layer` contract of a bound layer L with backend B:
//   L::input_shape, L::output_shape   shapes of one sample, fixed at compile time.
//   L::parameters                     a std::array of parameter_spec, in the
//                                     order of PyTorch's state_dict.
//   bind(values, gradients)           points the layer at its slice of the
//                                     model's parameter and gradient storage.
//   reset_parameters(rng, scheme)     writes initial values.
//   forward(x, y, context)            y = f(x); y is resized to (N, output_shape).
//                                     Caches what backward needs, which
//                                     includes a pointer to x: x must stay
//                                     alive and unchanged until backward.
//   backward(dy, dx, context)         *dx = df/dx^T dy (assigned) when dx is
//                                     not null; parameter gradients += their
//                                     share when context.parameter_gradients.
//   visit_buffers(visitor)            calls visitor(name, data, shape) for each
//                                     floating-point buffer and
//                                     visitor(name, int64&) for each counter.

#include <array>        // std::array
#include <cmath>        // std::sqrt
#include <concepts>     // std::same_as
#include <cstddef>      // std::size_t
#include <cstdint>      // std::int64_t
#include <span>         // std::span
#include <string_view>  // std::string_view
#include <vector>       // std::vector

#include "advgan/core/philox.hpp"
#include "advgan/core/shape.hpp"

namespace advgan {

/// A named parameter or buffer and its PyTorch shape (rank 0 to 4).
struct parameter_spec {
  std::string_view name;
  std::array<std::size_t, 4> dims{};
  std::size_t rank = 0;

  constexpr std::size_t size() const {
    std::size_t n = 1;
    for (std::size_t i = 0; i < rank; ++i) n *= dims[i];
    return n;
  }
  std::vector<std::size_t> shape() const { return {dims.begin(), dims.begin() + rank}; }
};

/// How to set initial parameter values.
enum class init_scheme {
  /// PyTorch's defaults: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the
  /// weights and biases of dense and convolution layers, ones and zeros for
  /// normalization scale and shift.
  pytorch,
  /// The DCGAN paper's: weights normal(0, 0.02), normalization scale
  /// normal(1, 0.02), biases and shifts zero.
  dcgan,
};

/// Settings of one forward pass.
struct forward_context {
  bool training = true;
  /// Source of the noise that stochastic layers (dropout) draw; may be null
  /// when the model has none.
  philox* rng = nullptr;
};

/// Settings of one backward pass.
struct backward_context {
  /// Whether parameter gradients accumulate. A generator step only needs the
  /// discriminator's input gradient, so it turns this off there.
  bool parameter_gradients = true;
};

/// A layer spec that can follow a sample of shape InputShape.
template <class Spec, class InputShape>
concept layer_spec = is_shape_v<InputShape> && requires {
  { Spec::kind } -> std::convertible_to<std::string_view>;
  typename Spec::template output_shape<InputShape>;
};

/// A layer bound to a backend: the contract described at the top of this file.
template <class Layer>
concept layer = requires(Layer& l, const typename Layer::tensor& x, typename Layer::tensor& y,
                         typename Layer::tensor* dx, typename Layer::scalar* p, philox& rng,
                         const forward_context& fc, const backward_context& bc) {
  typename Layer::input_shape;
  typename Layer::output_shape;
  { Layer::parameters.size() } -> std::convertible_to<std::size_t>;
  l.bind(p, p);
  l.reset_parameters(rng, init_scheme::pytorch);
  l.forward(x, y, fc);
  l.backward(x, dx, bc);
};

/// A parameter-free layer's empty parameter list.
inline constexpr std::array<parameter_spec, 0> no_parameters{};

namespace detail {

/// Checks at compile time that a layer accepts its input; the failing
/// instantiation names the layer spec and the input shape.
template <class Spec, class InputShape, bool Valid>
struct check_layer_input {
  static_assert(Valid,
                "advgan: this layer cannot take its input shape; the template arguments of "
                "check_layer_input name the layer and the input shape");
  static constexpr bool value = Valid;
};

/// Throws shape_error unless x has the per-sample shape Shape.
template <class Shape, class Backend>
void expect_sample_shape(const char* layer, const typename Backend::tensor& x) {
  const extents e = Backend::shape(x);
  if (e[1] != Shape::channels || e[2] != Shape::height || e[3] != Shape::width || e[0] == 0)
    throw shape_error(
        layer,
        detail::concat("(N >= 1, ", Shape::channels, ", ", Shape::height, ", ", Shape::width, ")"),
        to_string(e));
}

/// Writes PyTorch's default initialisation of a weight and bias with the
/// given fan-in: uniform in +-1/sqrt(fan_in). (PyTorch reaches the weight
/// bound through kaiming_uniform with a = sqrt(5), which gives the same.)
template <class Backend, class Scalar>
void init_fan_in(Scalar* weight, std::size_t weight_size, Scalar* bias, std::size_t bias_size,
                 std::size_t fan_in, philox& rng) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
  Backend::fill_uniform(weight, weight_size, rng, -bound, bound);
  if (bias != nullptr) Backend::fill_uniform(bias, bias_size, rng, -bound, bound);
}

/// Writes the chosen initialisation for a weighted layer.
template <class Backend, class Scalar>
void init_weighted(init_scheme scheme, Scalar* weight, std::size_t weight_size, Scalar* bias,
                   std::size_t bias_size, std::size_t fan_in, philox& rng) {
  if (scheme == init_scheme::pytorch) {
    init_fan_in<Backend>(weight, weight_size, bias, bias_size, fan_in, rng);
    return;
  }
  Backend::fill_normal(weight, weight_size, rng, 0.0, 0.02);
  if (bias != nullptr) Backend::fill(bias, bias_size, Scalar(0));
}

}  // namespace detail

}  // namespace advgan
