#pragma once
// dense<Out>: a fully connected layer, y = x W^T + b, as torch.nn.Linear.
// The input is flattened per sample, so it follows a (C, H, W) shape as it
// follows a feature vector; weight has PyTorch's shape (Out, In).

#include <cstddef>  // std::size_t

#include "advgan/layers/layer.hpp"

namespace advgan {

template <std::size_t Out, bool Bias, class InputShape, class Backend>
class dense_layer {
 public:
  using backend = Backend;
  using scalar = typename Backend::scalar;
  using tensor = typename Backend::tensor;
  using input_shape = InputShape;
  using output_shape = shape<Out>;

  static constexpr std::size_t in = InputShape::size;
  static constexpr std::array<parameter_spec, Bias ? 2 : 1> parameters = [] {
    std::array<parameter_spec, Bias ? 2 : 1> specs{};
    specs[0] = {"weight", {Out, in}, 2};
    if constexpr (Bias) specs[1] = {"bias", {Out}, 1};
    return specs;
  }();

  void bind(scalar* values, scalar* gradients) {
    weight_ = values;
    weight_grad_ = gradients;
    if constexpr (Bias) {
      bias_ = values + Out * in;
      bias_grad_ = gradients + Out * in;
    }
  }

  void reset_parameters(philox& rng, init_scheme scheme) {
    detail::init_weighted<Backend>(scheme, weight_, Out * in, bias_, Out, in, rng);
  }

  /// x: (N, in) as (N, C, H, W); y: (N, Out, 1, 1).
  void forward(const tensor& x, tensor& y, const forward_context&) {
    detail::expect_sample_shape<InputShape, Backend>("dense", x);
    batch_ = Backend::shape(x)[0];
    input_ = Backend::data(x);
    Backend::resize(y, batch_, Out, 1, 1);
    scalar* out = Backend::data(y);
    Backend::gemm(false, true, batch_, Out, in, 1, input_, in, weight_, in, 0, out, Out);
    if constexpr (Bias) {
      Backend::parallel_for(batch_ * Out, [=, this](std::size_t i) { out[i] += bias_[i % Out]; });
    }
  }

  /// dx[n][i] = sum_o dy[n][o] W[o][i]; dW[o][i] += sum_n dy[n][o] x[n][i];
  /// db[o] += sum_n dy[n][o].
  void backward(const tensor& dy, tensor* dx, const backward_context& context) {
    const scalar* grad = Backend::data(dy);
    if (context.parameter_gradients) {
      Backend::gemm(true, false, Out, in, batch_, 1, grad, Out, input_, in, 1, weight_grad_, in);
      if constexpr (Bias) {
        for (std::size_t n = 0; n < batch_; ++n)
          for (std::size_t o = 0; o < Out; ++o) bias_grad_[o] += grad[n * Out + o];
      }
    }
    if (dx == nullptr) return;
    Backend::resize(*dx, batch_, InputShape::channels, InputShape::height, InputShape::width);
    Backend::gemm(false, false, batch_, in, Out, 1, grad, Out, weight_, in, 0, Backend::data(*dx),
                  in);
  }

  /// y' = x' W^T, without the bias.
  void tangent_forward(const tensor& x_tangent, tensor& y_tangent) {
    detail::expect_sample_shape<InputShape, Backend>("dense tangent", x_tangent);
    input_tangent_ = Backend::data(x_tangent);
    Backend::resize(y_tangent, batch_, Out, 1, 1);
    Backend::gemm(false, true, batch_, Out, in, 1, input_tangent_, in, weight_, in, 0,
                  Backend::data(y_tangent), Out);
  }

  /// backward(dy) for y, then dW += dy'^T x' and dx' = dy' W for y'.
  void tangent_backward(const tensor& dy, const tensor& dy_tangent, tensor* dx, tensor* dx_tangent,
                        const backward_context& context) {
    backward(dy, dx, context);
    const scalar* grad = Backend::data(dy_tangent);
    if (context.parameter_gradients)
      Backend::gemm(true, false, Out, in, batch_, 1, grad, Out, input_tangent_, in, 1, weight_grad_,
                    in);
    if (dx_tangent == nullptr) return;
    Backend::resize(*dx_tangent, batch_, InputShape::channels, InputShape::height,
                    InputShape::width);
    Backend::gemm(false, false, batch_, in, Out, 1, grad, Out, weight_, in, 0,
                  Backend::data(*dx_tangent), in);
  }

  template <class Visitor>
  void visit_buffers(Visitor&&) {}

  const scalar* weight() const { return weight_; }

 private:
  scalar* weight_ = nullptr;
  scalar* weight_grad_ = nullptr;
  scalar* bias_ = nullptr;
  scalar* bias_grad_ = nullptr;
  const scalar* input_ = nullptr;
  const scalar* input_tangent_ = nullptr;
  std::size_t batch_ = 0;
};

/// A fully connected layer with Out outputs, with or without a bias.
template <std::size_t Out, bool Bias = true>
struct dense {
  static_assert(Out > 0, "advgan: dense needs at least one output");
  static constexpr const char* kind = "dense";

  template <class InputShape>
  using output_shape = shape<Out>;

  template <class InputShape, class Backend>
  using bind = dense_layer<Out, Bias, InputShape, Backend>;
};

}  // namespace advgan
