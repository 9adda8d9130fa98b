#pragma once
// conv2d<Out, Kernel, Stride, Padding>: a 2-D convolution with a square
// kernel, as torch.nn.Conv2d; weight has PyTorch's shape (Out, In, K, K).
//
// The batch is lowered with im2col to one (In*K*K) x (N*OH*OW) matrix, so the
// convolution is one GEMM for all samples, Y = W * col, whose channel-major
// result is then copied to NCHW. Large batches go in chunks of samples, so
// the lowered matrix stays within Backend::lowering_budget elements.

#include <algorithm>  // std::min, std::max
#include <cstddef>    // std::size_t

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
    scalar* out = Backend::data(y);
    if constexpr (whole_input_patch) {
      // Each sample is one im2col column already: y = x W^T.
      Backend::gemm(false, true, batch_, Out, patch, 1, input_, patch, weight_, patch, 0, out, Out);
    } else {
      const std::size_t chunk = chunk_size();
      Backend::parallel_tasks(chunk_count(chunk), [&](std::size_t index) {
        forward_chunk(index * chunk, std::min(chunk, batch_ - index * chunk), chunk, out);
      });
    }
    if constexpr (Bias) add_bias(out);
  }

  /// With the batch lowered to one matrix (or a chunk of samples at a time):
  /// dW += dY col^T, db += sums of dy per channel, and dx = col2im(W^T dY),
  /// where dY is dy in channel-major order.
  void backward(const tensor& dy, tensor* dx, const backward_context& context) {
    const scalar* grad = Backend::data(dy);
    scalar* input_grad = nullptr;
    if (dx != nullptr) {
      Backend::resize(*dx, batch_, in, InputShape::height, InputShape::width);
      input_grad = Backend::data(*dx);
    }
    if constexpr (whole_input_patch) {
      if (context.parameter_gradients)
        Backend::gemm(true, false, Out, patch, batch_, 1, grad, Out, input_, patch, 1, weight_grad_,
                      patch);
      if (input_grad != nullptr)
        Backend::gemm(false, false, batch_, patch, Out, 1, grad, Out, weight_, patch, 0, input_grad,
                      patch);
    } else {
      const std::size_t chunk = chunk_size();
      auto task = [&](std::size_t index, scalar* weight_grad, scalar beta) {
        backward_chunk(index * chunk, std::min(chunk, batch_ - index * chunk), chunk, grad,
                       input_grad, weight_grad, beta);
      };
      if (context.parameter_gradients)
        Backend::parallel_sum_tasks(chunk_count(chunk), weight_grad_, Out * patch, task);
      else
        Backend::parallel_tasks(chunk_count(chunk),
                                [&](std::size_t index) { task(index, nullptr, 0); });
    }
    if constexpr (Bias)
      if (context.parameter_gradients) accumulate_bias_gradient(grad);
  }

  /// Per sample y'_n = W * col(x'_n), without the bias.
  void tangent_forward(const tensor& x_tangent, tensor& y_tangent) {
    detail::expect_sample_shape<InputShape, Backend>("conv2d tangent", x_tangent);
    input_tangent_ = Backend::data(x_tangent);
    const std::size_t batch = Backend::shape(x_tangent)[0];
    Backend::resize(y_tangent, batch, Out, output_shape::height, output_shape::width);
    Backend::resize(tangent_col_, 1, 1, patch, pixels);
    scalar* col = Backend::data(tangent_col_);
    for (std::size_t n = 0; n < batch; ++n) {
      Backend::im2col(input_tangent_ + n * InputShape::size, in, InputShape::height,
                      InputShape::width, Kernel, Stride, Padding, col);
      Backend::gemm(false, false, Out, pixels, patch, 1, weight_, patch, col, pixels, 0,
                    Backend::data(y_tangent) + n * output_shape::size, pixels);
    }
  }

  /// backward(dy) for y, then per sample dW += dy'_n col(x'_n)^T and
  /// dx'_n = col2im(W^T dy'_n) for y'.
  void tangent_backward(const tensor& dy, const tensor& dy_tangent, tensor* dx, tensor* dx_tangent,
                        const backward_context& context) {
    backward(dy, dx, context);
    const std::size_t batch = Backend::shape(dy_tangent)[0];
    Backend::resize(tangent_col_, 1, 1, patch, pixels);
    scalar* col = Backend::data(tangent_col_);
    if (dx_tangent != nullptr) {
      Backend::resize(*dx_tangent, batch, in, InputShape::height, InputShape::width);
      Backend::fill(Backend::data(*dx_tangent), Backend::size(*dx_tangent), scalar(0));
    }
    for (std::size_t n = 0; n < batch; ++n) {
      const scalar* grad = Backend::data(dy_tangent) + n * output_shape::size;
      if (context.parameter_gradients) {
        Backend::im2col(input_tangent_ + n * InputShape::size, in, InputShape::height,
                        InputShape::width, Kernel, Stride, Padding, col);
        Backend::gemm(false, true, Out, patch, pixels, 1, grad, pixels, col, pixels, 1,
                      weight_grad_, patch);
      }
      if (dx_tangent == nullptr) continue;
      Backend::gemm(true, false, patch, pixels, Out, 1, weight_, patch, grad, pixels, 0, col,
                    pixels);
      Backend::col2im(col, in, InputShape::height, InputShape::width, Kernel, Stride, Padding,
                      Backend::data(*dx_tangent) + n * InputShape::size);
    }
  }

  template <class Visitor>
  void visit_buffers(Visitor&&) {}

 private:
  /// True when the kernel covers the whole unpadded input and the output is
  /// 1x1, as in a DCGAN discriminator's last layer: each sample is then its
  /// own im2col column, and the layer is a dense layer on the flat sample.
  static constexpr bool whole_input_patch =
      Padding == 0 && Kernel == InputShape::height && Kernel == InputShape::width;

  /// Returns how many samples one GEMM covers: as many as keep the im2col
  /// matrix and the channel-major copy of a chunk each within
  /// Backend::lowering_budget values.
  std::size_t chunk_size() const {
    const std::size_t per_sample = std::max(patch, Out) * pixels;
    return std::max<std::size_t>(1, std::min(batch_, Backend::lowering_budget / per_sample));
  }

  std::size_t chunk_count(std::size_t chunk) const { return (batch_ + chunk - 1) / chunk; }

  /// Runs the forward pass of samples [first, first + count): lower them, one
  /// GEMM, and copy the channel-major result into y.
  void forward_chunk(std::size_t first, std::size_t count, std::size_t chunk, scalar* out) const {
    const std::size_t columns = count * pixels;
    scalar* col = chunk_buffers(chunk);
    // One sample in channel-major order is already in NCHW order.
    scalar* out_cm = count == 1 ? out + first * output_shape::size : col + chunk * pixels * patch;
    lower(input_ + first * InputShape::size, count, col);
    Backend::gemm(false, false, Out, columns, patch, 1, weight_, patch, col, columns, 0, out_cm,
                  columns);
    if (count > 1)
      Backend::cnhw_to_nchw(out_cm, count, Out, pixels, out + first * output_shape::size);
  }

  /// Runs the backward pass of samples [first, first + count): weight_grad =
  /// beta * weight_grad + their dW when weight_grad is not null, and their
  /// dx when input_grad is not null.
  void backward_chunk(std::size_t first, std::size_t count, std::size_t chunk, const scalar* grad,
                      scalar* input_grad, scalar* weight_grad, scalar beta) const {
    const std::size_t columns = count * pixels;
    scalar* col = chunk_buffers(chunk);
    scalar* grad_cm = col + chunk * pixels * patch;
    Backend::nchw_to_cnhw(grad + first * output_shape::size, count, Out, pixels, grad_cm);
    if (weight_grad != nullptr) {
      lower(input_ + first * InputShape::size, count, col);
      Backend::gemm(false, true, Out, patch, columns, 1, grad_cm, columns, col, columns, beta,
                    weight_grad, patch);
    }
    if (input_grad == nullptr) return;
    Backend::gemm(true, false, patch, columns, Out, 1, weight_, patch, grad_cm, columns, 0, col,
                  columns);
    Backend::template col2im_batch<InputShape::height, InputShape::width, Kernel, Stride, Padding>(
        col, count, in, input_grad + first * InputShape::size);
  }

  /// Returns the im2col matrix (patch x chunk * pixels) of a chunk in the
  /// backend's shared workspace, followed by room for its channel-major copy
  /// (Out x chunk * pixels).
  static scalar* chunk_buffers(std::size_t chunk) {
    return Backend::workspace(chunk * pixels * (patch + Out));
  }

  static void lower(const scalar* x, std::size_t count, scalar* col) {
    Backend::template im2col_batch<InputShape::height, InputShape::width, Kernel, Stride, Padding>(
        x, count, in, col);
  }

  void add_bias(scalar* out) const {
    Backend::parallel_for(
        batch_ * Out,
        [=, this](std::size_t plane) {
          scalar* values = out + plane * pixels;
          const scalar b = bias_[plane % Out];
          for (std::size_t p = 0; p < pixels; ++p) values[p] += b;
        },
        64);
  }

  void accumulate_bias_gradient(const scalar* grad) {
    for (std::size_t n = 0; n < batch_; ++n)
      for (std::size_t o = 0; o < Out; ++o) {
        const scalar* values = grad + (n * Out + o) * pixels;
        scalar total = 0;
        for (std::size_t p = 0; p < pixels; ++p) total += values[p];
        bias_grad_[o] += total;
      }
  }

  scalar* weight_ = nullptr;
  scalar* weight_grad_ = nullptr;
  scalar* bias_ = nullptr;
  scalar* bias_grad_ = nullptr;
  const scalar* input_ = nullptr;
  std::size_t batch_ = 0;
  const scalar* input_tangent_ = nullptr;
  tensor tangent_col_;  // im2col of one sample of x'
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
