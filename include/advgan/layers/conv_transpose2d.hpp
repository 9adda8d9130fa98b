#pragma once
// conv_transpose2d<Out, Kernel, Stride, Padding, OutputPadding>: the
// transposed 2-D convolution of torch.nn.ConvTranspose2d, the adjoint of
// conv2d with the same settings; weight has PyTorch's shape (In, Out, K, K).
//
// Output size: (in - 1) * Stride - 2 * Padding + Kernel + OutputPadding. The
// OutputPadding extra rows and columns are real outputs (they receive kernel
// taps), not zeros, and OutputPadding must be smaller than Stride.
//
// Per sample: col = W^T x_n, a (Out*K*K) x (H*W) matrix, then y_n = col2im(col).

#include <cstddef>  // std::size_t

#include "advgan/layers/layer.hpp"

namespace advgan {

template <std::size_t Out, std::size_t Kernel, std::size_t Stride, std::size_t Padding,
          std::size_t OutputPadding, bool Bias, class InputShape, class Backend>
class conv_transpose2d_layer {
 public:
  using backend = Backend;
  using scalar = typename Backend::scalar;
  using tensor = typename Backend::tensor;
  using input_shape = InputShape;
  using output_shape = shape<
      Out,
      size_rule::conv_transpose_size(InputShape::height, Kernel, Stride, Padding, OutputPadding),
      size_rule::conv_transpose_size(InputShape::width, Kernel, Stride, Padding, OutputPadding)>;

  static constexpr std::size_t in = InputShape::channels;
  static constexpr std::size_t patch = Out * Kernel * Kernel;  // rows of col
  static constexpr std::size_t pixels = InputShape::height * InputShape::width;
  static constexpr std::array<parameter_spec, Bias ? 2 : 1> parameters = [] {
    std::array<parameter_spec, Bias ? 2 : 1> specs{};
    specs[0] = {"weight", {in, Out, Kernel, Kernel}, 4};
    if constexpr (Bias) specs[1] = {"bias", {Out}, 1};
    return specs;
  }();

  void bind(scalar* values, scalar* gradients) {
    weight_ = values;
    weight_grad_ = gradients;
    if constexpr (Bias) {
      bias_ = values + in * patch;
      bias_grad_ = gradients + in * patch;
    }
  }

  /// PyTorch computes the fan-in of a transposed convolution from weight
  /// dimension 1, so it is Out * K * K here.
  void reset_parameters(philox& rng, init_scheme scheme) {
    detail::init_weighted<Backend>(scheme, weight_, in * patch, bias_, Out, patch, rng);
  }

  void forward(const tensor& x, tensor& y, const forward_context&) {
    detail::expect_sample_shape<InputShape, Backend>("conv_transpose2d", x);
    batch_ = Backend::shape(x)[0];
    input_ = Backend::data(x);
    Backend::resize(y, batch_, Out, output_shape::height, output_shape::width);
    Backend::fill(Backend::data(y), Backend::size(y), scalar(0));
    Backend::resize(col_, 1, 1, patch, pixels);
    scalar* col = Backend::data(col_);
    for (std::size_t n = 0; n < batch_; ++n) {
      Backend::gemm(true, false, patch, pixels, in, 1, weight_, patch,
                    input_ + n * InputShape::size, pixels, 0, col, pixels);
      scalar* out = Backend::data(y) + n * output_shape::size;
      Backend::col2im(col, Out, output_shape::height, output_shape::width, Kernel, Stride, Padding,
                      out);
      if constexpr (Bias) {
        constexpr std::size_t area = output_shape::height * output_shape::width;
        for (std::size_t o = 0; o < Out; ++o)
          for (std::size_t p = 0; p < area; ++p) out[o * area + p] += bias_[o];
      }
    }
  }

  /// Per sample: col = im2col(dy_n); dx_n = W col; dW += x_n col^T;
  /// db += sums of dy_n per channel.
  void backward(const tensor& dy, tensor* dx, const backward_context& context) {
    Backend::resize(col_, 1, 1, patch, pixels);
    scalar* col = Backend::data(col_);
    if (dx != nullptr) Backend::resize(*dx, batch_, in, InputShape::height, InputShape::width);
    constexpr std::size_t area = output_shape::height * output_shape::width;
    for (std::size_t n = 0; n < batch_; ++n) {
      const scalar* grad = Backend::data(dy) + n * output_shape::size;
      Backend::im2col(grad, Out, output_shape::height, output_shape::width, Kernel, Stride, Padding,
                      col);
      if (context.parameter_gradients) {
        Backend::gemm(false, true, in, patch, pixels, 1, input_ + n * InputShape::size, pixels, col,
                      pixels, 1, weight_grad_, patch);
        if constexpr (Bias)
          for (std::size_t o = 0; o < Out; ++o)
            for (std::size_t p = 0; p < area; ++p) bias_grad_[o] += grad[o * area + p];
      }
      if (dx != nullptr)
        Backend::gemm(false, false, in, pixels, patch, 1, weight_, patch, col, pixels, 0,
                      Backend::data(*dx) + n * InputShape::size, pixels);
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

/// A transposed 2-D convolution with Out channels, a Kernel x Kernel kernel,
/// the given stride, padding and output padding, with or without a bias.
template <std::size_t Out, std::size_t Kernel, std::size_t Stride = 1, std::size_t Padding = 0,
          std::size_t OutputPadding = 0, bool Bias = true>
struct conv_transpose2d {
  static_assert(Out > 0, "advgan: conv_transpose2d needs at least one output channel");
  static_assert(Kernel > 0, "advgan: conv_transpose2d kernel size must be positive");
  static_assert(Stride > 0, "advgan: conv_transpose2d stride must be positive");
  static_assert(OutputPadding < Stride,
                "advgan: conv_transpose2d output_padding must be smaller than stride");
  static constexpr const char* kind = "conv_transpose2d";

  template <class InputShape>
  static constexpr bool accepts = size_rule::conv_transpose_valid(InputShape::height, Kernel,
                                                                  Stride, Padding, OutputPadding) &&
                                  size_rule::conv_transpose_valid(InputShape::width, Kernel, Stride,
                                                                  Padding, OutputPadding);

  template <class InputShape>
  using output_shape = shape<
      Out,
      size_rule::conv_transpose_size(InputShape::height, Kernel, Stride, Padding, OutputPadding),
      size_rule::conv_transpose_size(InputShape::width, Kernel, Stride, Padding, OutputPadding)>;

  template <class InputShape, class Backend>
  using bind = conv_transpose2d_layer<Out, Kernel, Stride, Padding, OutputPadding, Bias, InputShape,
                                      Backend>;
};

}  // namespace advgan
