#pragma once
// conv2d<Out, Kernel, Stride, Padding>: a 2-D convolution with a square
// kernel, as torch.nn.Conv2d; weight has PyTorch's shape (Out, In, K, K).
//
// Each sample is lowered with im2col to a (In*K*K) x (OH*OW) matrix, so the
// convolution is one GEMM per sample: y_n = W * col_n (+ b).

#include <cstddef>  // std::size_t

#include "advgan/layers/layer.hpp"

namespace advgan {

template <std::size_t Out, std::size_t Kernel, std::size_t Stride, std::size_t Padding, bool Bias,
          class InputShape, class Backend>
class conv2d_layer {
 public:
  using backend = Backend;
  using scalar = typename Backend::scalar;
  using tensor = typename Backend::tensor;
  using input_shape = InputShape;
  using output_shape = shape<Out, size_rule::conv_size(InputShape::height, Kernel, Stride, Padding),
                             size_rule::conv_size(InputShape::width, Kernel, Stride, Padding)>;

  static constexpr std::size_t in = InputShape::channels;
  static constexpr std::size_t patch = in * Kernel * Kernel;  // rows of col
  static constexpr std::size_t pixels = output_shape::height * output_shape::width;
  static constexpr std::array<parameter_spec, Bias ? 2 : 1> parameters = [] {
    std::array<parameter_spec, Bias ? 2 : 1> specs{};
    specs[0] = {"weight", {Out, in, Kernel, Kernel}, 4};
    if constexpr (Bias) specs[1] = {"bias", {Out}, 1};
    return specs;
  }();

  void bind(scalar* values, scalar* gradients) {
    weight_ = values;
    weight_grad_ = gradients;
    if constexpr (Bias) {
      bias_ = values + Out * patch;
      bias_grad_ = gradients + Out * patch;
    }
  }

  void reset_parameters(philox& rng, init_scheme scheme) {
    detail::init_weighted<Backend>(scheme, weight_, Out * patch, bias_, Out, patch, rng);
  }

  void forward(const tensor& x, tensor& y, const forward_context&) {
    detail::expect_sample_shape<InputShape, Backend>("conv2d", x);
    batch_ = Backend::shape(x)[0];
    input_ = Backend::data(x);
    Backend::resize(y, batch_, Out, output_shape::height, output_shape::width);
    Backend::resize(col_, 1, 1, patch, pixels);
    scalar* col = Backend::data(col_);
    for (std::size_t n = 0; n < batch_; ++n) {
      Backend::im2col(input_ + n * InputShape::size, in, InputShape::height, InputShape::width,
                      Kernel, Stride, Padding, col);
      scalar* out = Backend::data(y) + n * output_shape::size;
      Backend::gemm(false, false, Out, pixels, patch, 1, weight_, patch, col, pixels, 0, out,
                    pixels);
      if constexpr (Bias)
        for (std::size_t o = 0; o < Out; ++o)
          for (std::size_t p = 0; p < pixels; ++p) out[o * pixels + p] += bias_[o];
    }
  }

  /// Per sample: dW += dy_n col_n^T, db += row sums of dy_n, and
  /// dx_n = col2im(W^T dy_n).
  void backward(const tensor& dy, tensor* dx, const backward_context& context) {
    Backend::resize(col_, 1, 1, patch, pixels);
    scalar* col = Backend::data(col_);
    if (dx != nullptr) {
      Backend::resize(*dx, batch_, in, InputShape::height, InputShape::width);
      Backend::fill(Backend::data(*dx), Backend::size(*dx), scalar(0));
    }
    for (std::size_t n = 0; n < batch_; ++n) {
      const scalar* grad = Backend::data(dy) + n * output_shape::size;
      if (context.parameter_gradients) {
        Backend::im2col(input_ + n * InputShape::size, in, InputShape::height, InputShape::width,
                        Kernel, Stride, Padding, col);
        Backend::gemm(false, true, Out, patch, pixels, 1, grad, pixels, col, pixels, 1,
                      weight_grad_, patch);
        if constexpr (Bias)
          for (std::size_t o = 0; o < Out; ++o)
            for (std::size_t p = 0; p < pixels; ++p) bias_grad_[o] += grad[o * pixels + p];
      }
      if (dx == nullptr) continue;
      Backend::gemm(true, false, patch, pixels, Out, 1, weight_, patch, grad, pixels, 0, col,
                    pixels);
      Backend::col2im(col, in, InputShape::height, InputShape::width, Kernel, Stride, Padding,
                      Backend::data(*dx) + n * InputShape::size);
    }
  }

  template <class Visitor>
  void visit_buffers(Visitor&&) {}

 private:
  scalar* weight_ = nullptr;
  scalar* weight_grad_ = nullptr;
  scalar* bias_ = nullptr;
  scalar* bias_grad_ = nullptr;
  const scalar* input_ = nullptr;
  std::size_t batch_ = 0;
  tensor col_;
};

/// A 2-D convolution with Out channels, a Kernel x Kernel kernel, the given
/// stride and zero padding, with or without a bias.
template <std::size_t Out, std::size_t Kernel, std::size_t Stride = 1, std::size_t Padding = 0,
          bool Bias = true>
struct conv2d {
  static_assert(Out > 0, "advgan: conv2d needs at least one output channel");
  static_assert(Kernel > 0, "advgan: conv2d kernel size must be positive");
  static_assert(Stride > 0, "advgan: conv2d stride must be positive");
  static constexpr const char* kind = "conv2d";

  template <class InputShape>
  static constexpr bool accepts = size_rule::conv_valid(InputShape::height, Kernel, Stride,
                                                        Padding) &&
                                  size_rule::conv_valid(InputShape::width, Kernel, Stride, Padding);

  template <class InputShape>
  using output_shape = shape<Out, size_rule::conv_size(InputShape::height, Kernel, Stride, Padding),
                             size_rule::conv_size(InputShape::width, Kernel, Stride, Padding)>;

  template <class InputShape, class Backend>
  using bind = conv2d_layer<Out, Kernel, Stride, Padding, Bias, InputShape, Backend>;
};

}  // namespace advgan
