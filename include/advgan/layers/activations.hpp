#pragma once
// Point-wise activations: relu, leaky_relu<Slope>, tanh, sigmoid.
//
// Each is described by a small functor with value(x) and derivative(x, y)
// (y = value(x), which tanh and sigmoid use), and one class template runs
// any of them over a tensor.

#include <cmath>    // std::tanh, std::exp
#include <cstddef>  // std::size_t
#include <ratio>    // std::ratio

#include "advgan/layers/layer.hpp"

namespace advgan {

namespace activation {

/// max(x, 0); the derivative at 0 is 0, as in PyTorch.
struct relu_function {
  static constexpr const char* kind = "relu";
  template <class T>
  static T value(T x) {
    return x > 0 ? x : T(0);
  }
  template <class T>
  static T derivative(T x, T) {
    return x > 0 ? T(1) : T(0);
  }
  /// Zero everywhere except at 0, where it does not exist; PyTorch's double
  /// backward also takes it as 0.
  template <class T>
  static T second_derivative(T, T) {
    return T(0);
  }
};

/// x for x > 0, else Slope * x; the derivative at 0 is Slope, as in PyTorch.
template <class Slope>
struct leaky_relu_function {
  static constexpr const char* kind = "leaky_relu";
  static constexpr double slope = static_cast<double>(Slope::num) / Slope::den;
  template <class T>
  static T value(T x) {
    const T scaled = static_cast<T>(slope) * x;
    // For 0 < slope < 1 the activation is max(x, slope * x), and this select
    // between two computed values gives the same result for every x,
    // infinities and NaN included. GCC vectorises it, while it keeps
    // `x > 0 ? x : slope * x` as a branch because it does not speculate the
    // product under -ftrapping-math.
    if constexpr (slope > 0 && slope < 1) return scaled > x ? scaled : x;
    return x > 0 ? x : scaled;
  }
  template <class T>
  static T derivative(T x, T) {
    return x > 0 ? T(1) : static_cast<T>(slope);
  }
  /// Zero except at 0, as for relu.
  template <class T>
  static T second_derivative(T, T) {
    return T(0);
  }
};

struct tanh_function {
  static constexpr const char* kind = "tanh";
  template <class T>
  static T value(T x) {
    return std::tanh(x);
  }
  template <class T>
  static T derivative(T, T y) {
    return 1 - y * y;
  }
  /// d(1 - y^2)/dx = -2 y (1 - y^2).
  template <class T>
  static T second_derivative(T, T y) {
    return -2 * y * (1 - y * y);
  }
};

/// 1 / (1 + exp(-x)), written so that exp never overflows.
struct sigmoid_function {
  static constexpr const char* kind = "sigmoid";
  template <class T>
  static T value(T x) {
    if (x >= 0) return 1 / (1 + std::exp(-x));
    const T e = std::exp(x);
    return e / (1 + e);
  }
  template <class T>
  static T derivative(T, T y) {
    return y * (1 - y);
  }
  /// d(y (1 - y))/dx = y (1 - y) (1 - 2 y).
  template <class T>
  static T second_derivative(T, T y) {
    return y * (1 - y) * (1 - 2 * y);
  }
};

}  // namespace activation

template <class Function, class InputShape, class Backend>
class activation_layer {
 public:
  using backend = Backend;
  using scalar = typename Backend::scalar;
  using tensor = typename Backend::tensor;
  using input_shape = InputShape;
  using output_shape = InputShape;
  static constexpr auto parameters = no_parameters;

  void bind(scalar*, scalar*) {}
  void reset_parameters(philox&, init_scheme) {}

  void forward(const tensor& x, tensor& y, const forward_context&) {
    detail::expect_sample_shape<InputShape, Backend>(Function::kind, x);
    Backend::resize(y, Backend::shape(x));
    input_ = Backend::data(x);
    output_ = Backend::data(y);
    count_ = Backend::size(x);
    const scalar* in = input_;
    scalar* out = Backend::data(y);
    // No simd pragma: tanh and sigmoid call libm, and clang turns a simd
    // loop that it cannot vectorise into a warning. GCC -O3 and clang -O2
    // vectorise relu and leaky_relu here on their own.
    Backend::parallel_blocks(count_, [=](std::size_t begin, std::size_t end) {
      for (std::size_t i = begin; i < end; ++i) out[i] = Function::value(in[i]);
    });
  }

  /// dx = f'(x) * dy. dx may be the same tensor as dy, because each value
  /// of dx depends only on dy at its own position.
  void backward(const tensor& dy, tensor* dx, const backward_context&) {
    if (dx == nullptr) return;
    Backend::resize(*dx, Backend::shape(dy));
    const scalar* in = input_;
    const scalar* out = output_;
    const scalar* grad = Backend::data(dy);
    scalar* result = Backend::data(*dx);
    Backend::parallel_blocks(count_, [=](std::size_t begin, std::size_t end) {
      for (std::size_t i = begin; i < end; ++i)
        result[i] = Function::derivative(in[i], out[i]) * grad[i];
    });
  }

  /// Declares that backward accepts dx pointing to the tensor that dy refers
  /// to, so a model can reuse the gradient buffer.
  static constexpr bool in_place_backward = true;

  /// y' = f'(x) x'.
  void tangent_forward(const tensor& x_tangent, tensor& y_tangent) {
    detail::expect_sample_shape<InputShape, Backend>(Function::kind, x_tangent);
    Backend::resize(y_tangent, Backend::shape(x_tangent));
    input_tangent_ = Backend::data(x_tangent);
    const scalar* in = input_;
    const scalar* out = output_;
    const scalar* tangent = input_tangent_;
    scalar* result = Backend::data(y_tangent);
    Backend::parallel_for(count_, [=](std::size_t i) {
      result[i] = Function::derivative(in[i], out[i]) * tangent[i];
    });
  }

  /// dx = f'(x) dy + f''(x) x' dy' and dx' = f'(x) dy'.
  void tangent_backward(const tensor& dy, const tensor& dy_tangent, tensor* dx, tensor* dx_tangent,
                        const backward_context&) {
    const scalar* in = input_;
    const scalar* out = output_;
    const scalar* tangent = input_tangent_;
    const scalar* grad = Backend::data(dy);
    const scalar* grad_tangent = Backend::data(dy_tangent);
    if (dx != nullptr) {
      Backend::resize(*dx, Backend::shape(dy));
      scalar* result = Backend::data(*dx);
      Backend::parallel_for(count_, [=](std::size_t i) {
        result[i] = Function::derivative(in[i], out[i]) * grad[i] +
                    Function::second_derivative(in[i], out[i]) * tangent[i] * grad_tangent[i];
      });
    }
    if (dx_tangent != nullptr) {
      Backend::resize(*dx_tangent, Backend::shape(dy_tangent));
      scalar* result = Backend::data(*dx_tangent);
      Backend::parallel_for(count_, [=](std::size_t i) {
        result[i] = Function::derivative(in[i], out[i]) * grad_tangent[i];
      });
    }
  }

  template <class Visitor>
  void visit_buffers(Visitor&&) {}

 private:
  const scalar* input_ = nullptr;
  const scalar* output_ = nullptr;
  std::size_t count_ = 0;
  const scalar* input_tangent_ = nullptr;
};

/// A spec for any point-wise activation functor.
template <class Function>
struct pointwise {
  static constexpr const char* kind = Function::kind;

  template <class InputShape>
  using output_shape = InputShape;

  template <class InputShape, class Backend>
  using bind = activation_layer<Function, InputShape, Backend>;
};

using relu = pointwise<activation::relu_function>;
/// LeakyReLU with the negative slope as a std::ratio (default 0.2, the
/// DCGAN value; PyTorch's own default is 0.01).
template <class Slope = std::ratio<1, 5>>
using leaky_relu = pointwise<activation::leaky_relu_function<Slope>>;
/// Named tanh_activation because a type named tanh would clash with the C
/// library's ::tanh in code that says `using namespace advgan;`.
using tanh_activation = pointwise<activation::tanh_function>;
using sigmoid = pointwise<activation::sigmoid_function>;

}  // namespace advgan
