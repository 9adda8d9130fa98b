#pragma once
// conv_transpose2d<Out, Kernel, Stride, Padding, OutputPadding>: the
// transposed 2-D convolution of torch.nn.ConvTranspose2d, the adjoint of
// conv2d with the same settings; weight has PyTorch's shape (In, Out, K, K).
//
// Output size: (in - 1) * Stride - 2 * Padding + Kernel + OutputPadding. The
// OutputPadding extra rows and columns are real outputs (they receive kernel
// taps), not zeros, and OutputPadding must be smaller than Stride.
//
// For the batch at once (or a chunk of samples within
// Backend::lowering_budget): col = W^T X, an (Out*K*K) x (N*H*W) matrix where X
// is the input in channel-major order, then y = col2im(col).

#include <algorithm>  // std::min, std::max
#include <cstddef>    // std::size_t

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
    scalar* out = Backend::data(y);
    if constexpr (single_pixel_input) {
      // Each output sample is one col2im column already: y = x W.
      Backend::gemm(false, false, batch_, patch, in, 1, input_, in, weight_, patch, 0, out, patch);
    } else {
      const std::size_t chunk = chunk_size();
      Backend::parallel_tasks(chunk_count(chunk), [&](std::size_t index) {
        forward_chunk(index * chunk, std::min(chunk, batch_ - index * chunk), chunk, out);
      });
    }
    if constexpr (Bias) add_bias(out);
  }

  /// With dy lowered by im2col to one matrix for the batch (or a chunk of
  /// samples at a time): dx = W col, dW += X col^T, where X is x in
  /// channel-major order, and db += sums of dy per channel.
  void backward(const tensor& dy, tensor* dx, const backward_context& context) {
    const scalar* grad = Backend::data(dy);
    scalar* input_grad = nullptr;
    if (dx != nullptr) {
      Backend::resize(*dx, batch_, in, InputShape::height, InputShape::width);
      input_grad = Backend::data(*dx);
    }
    if constexpr (single_pixel_input) {
      if (context.parameter_gradients)
        Backend::gemm(true, false, in, patch, batch_, 1, input_, in, grad, patch, 1, weight_grad_,
                      patch);
      if (input_grad != nullptr)
        Backend::gemm(false, true, batch_, in, patch, 1, grad, patch, weight_, patch, 0, input_grad,
                      in);
    } else {
      const std::size_t chunk = chunk_size();
      auto task = [&](std::size_t index, scalar* weight_grad, scalar beta) {
        backward_chunk(index * chunk, std::min(chunk, batch_ - index * chunk), chunk, grad,
                       input_grad, weight_grad, beta);
      };
      if (context.parameter_gradients)
        Backend::parallel_sum_tasks(chunk_count(chunk), weight_grad_, in * patch, task);
      else
        Backend::parallel_tasks(chunk_count(chunk),
                                [&](std::size_t index) { task(index, nullptr, 0); });
    }
    if constexpr (Bias)
      if (context.parameter_gradients) accumulate_bias_gradient(grad);
  }

  template <class Visitor>
  void visit_buffers(Visitor&&) {}

 private:
  static constexpr std::size_t area = output_shape::height * output_shape::width;

  /// True for a 1x1 input without padding, as in a DCGAN generator's first
  /// layer: the output is then the K x K kernel scaled by each input channel,
  /// and the layer is a dense layer onto the flat output sample.
  static constexpr bool single_pixel_input =
      InputShape::height == 1 && InputShape::width == 1 && Padding == 0 && OutputPadding == 0;

  /// Returns how many samples one GEMM covers: as many as keep the im2col
  /// matrix and the channel-major copy of a chunk each within
  /// Backend::lowering_budget values.
  std::size_t chunk_size() const {
    const std::size_t per_sample = std::max(patch, in) * pixels;
    return std::max<std::size_t>(1, std::min(batch_, Backend::lowering_budget / per_sample));
  }

  std::size_t chunk_count(std::size_t chunk) const { return (batch_ + chunk - 1) / chunk; }

  /// Runs the forward pass of samples [first, first + count): one GEMM with their
  /// channel-major input, then col2im into y.
  void forward_chunk(std::size_t first, std::size_t count, std::size_t chunk, scalar* out) const {
    const std::size_t columns = count * pixels;
    scalar* col = chunk_buffers(chunk);
    // One sample in NCHW order is already in channel-major order.
    const scalar* input_cm = input_ + first * InputShape::size;
    if (count > 1) {
      scalar* copy = col + chunk * pixels * patch;
      Backend::nchw_to_cnhw(input_cm, count, in, pixels, copy);
      input_cm = copy;
    }
    Backend::gemm(true, false, patch, columns, in, 1, weight_, patch, input_cm, columns, 0, col,
                  columns);
    Backend::template col2im_batch<output_shape::height, output_shape::width, Kernel, Stride,
                                   Padding>(col, count, Out, out + first * output_shape::size);
  }

  /// Runs the backward pass of samples [first, first + count): weight_grad =
  /// beta * weight_grad + their dW when weight_grad is not null, and their
  /// dx when input_grad is not null.
  void backward_chunk(std::size_t first, std::size_t count, std::size_t chunk, const scalar* grad,
                      scalar* input_grad, scalar* weight_grad, scalar beta) const {
    const std::size_t columns = count * pixels;
    scalar* col = chunk_buffers(chunk);
    scalar* channel_major = col + chunk * pixels * patch;
    Backend::template im2col_batch<output_shape::height, output_shape::width, Kernel, Stride,
                                   Padding>(grad + first * output_shape::size, count, Out, col);
    if (weight_grad != nullptr) {
      Backend::nchw_to_cnhw(input_ + first * InputShape::size, count, in, pixels, channel_major);
      Backend::gemm(false, true, in, patch, columns, 1, channel_major, columns, col, columns, beta,
                    weight_grad, patch);
    }
    if (input_grad == nullptr) return;
    Backend::gemm(false, false, in, columns, patch, 1, weight_, patch, col, columns, 0,
                  channel_major, columns);
    Backend::cnhw_to_nchw(channel_major, count, in, pixels, input_grad + first * InputShape::size);
  }

  /// Returns the im2col matrix (patch x chunk * pixels) of a chunk in the
  /// backend's shared workspace, followed by room for its channel-major copy
  /// (in x chunk * pixels).
  static scalar* chunk_buffers(std::size_t chunk) {
    return Backend::workspace(chunk * pixels * (patch + in));
  }

  void add_bias(scalar* out) const {
    Backend::parallel_for(
        batch_ * Out,
        [=, this](std::size_t plane) {
          scalar* values = out + plane * area;
          const scalar b = bias_[plane % Out];
          for (std::size_t p = 0; p < area; ++p) values[p] += b;
        },
        64);
  }

  void accumulate_bias_gradient(const scalar* grad) {
    for (std::size_t n = 0; n < batch_; ++n)
      for (std::size_t o = 0; o < Out; ++o) {
        const scalar* values = grad + (n * Out + o) * area;
        scalar total = 0;
        for (std::size_t p = 0; p < area; ++p) total += values[p];
        bias_grad_[o] += total;
      }
  }

  scalar* weight_ = nullptr;
  scalar* weight_grad_ = nullptr;
  scalar* bias_ = nullptr;
  scalar* bias_grad_ = nullptr;
  const scalar* input_ = nullptr;
  std::size_t batch_ = 0;
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
