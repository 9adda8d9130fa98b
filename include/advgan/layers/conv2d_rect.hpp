#pragma once
// conv2d_rect<Out, size2d<KH, KW>, size2d<SH, SW>, size2d<PH, PW>>: a 2-D
// convolution whose kernel, stride and padding may differ between height
// and width, as torch.nn.Conv2d(kernel_size=(KH, KW), stride=(SH, SW),
// padding=(PH, PW)). Its weight has PyTorch's shape (Out, In, KH, KW).
//
// It lowers the batch with im2col and runs one GEMM per chunk of samples,
// as conv2d does, through the backend's rectangular im2col_batch and
// col2im_batch. conv2d keeps its own square-kernel path, whose lowering
// loops unroll over compile-time geometry.

#include <algorithm>  // std::min, std::max
#include <cstddef>    // std::size_t

#include "advgan/layers/layer.hpp"

namespace advgan {

/// A (height, width) pair of a kernel size, stride or padding.
template <std::size_t Height, std::size_t Width>
struct size2d {
  static constexpr std::size_t height = Height;
  static constexpr std::size_t width = Width;
};

template <class T>
inline constexpr bool is_size2d_v = false;
template <std::size_t H, std::size_t W>
inline constexpr bool is_size2d_v<size2d<H, W>> = true;

template <std::size_t Out, class Kernel, class Stride, class Padding, bool Bias, class InputShape,
          class Backend>
class conv2d_rect_layer {
 public:
  using backend = Backend;
  using scalar = typename Backend::scalar;
  using tensor = typename Backend::tensor;
  using input_shape = InputShape;
  using output_shape =
      shape<Out,
            size_rule::conv_size(InputShape::height, Kernel::height, Stride::height,
                                 Padding::height),
            size_rule::conv_size(InputShape::width, Kernel::width, Stride::width, Padding::width)>;

  static constexpr std::size_t in = InputShape::channels;
  static constexpr std::size_t patch = in * Kernel::height * Kernel::width;  // rows of col
  static constexpr std::size_t pixels = output_shape::height * output_shape::width;
  static constexpr std::array<parameter_spec, Bias ? 2 : 1> parameters = [] {
    std::array<parameter_spec, Bias ? 2 : 1> specs{};
    specs[0] = {"weight", {Out, in, Kernel::height, Kernel::width}, 4};
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
    detail::expect_sample_shape<InputShape, Backend>("conv2d_rect", x);
    batch_ = Backend::shape(x)[0];
    input_ = Backend::data(x);
    Backend::resize(y, batch_, Out, output_shape::height, output_shape::width);
    scalar* out = Backend::data(y);
    const std::size_t chunk = chunk_size();
    Backend::parallel_tasks(chunk_count(chunk), [&](std::size_t index) {
      forward_chunk(index * chunk, std::min(chunk, batch_ - index * chunk), chunk, out);
    });
    if constexpr (Bias) add_bias(out);
  }

  /// For each chunk of samples: dW += dY col^T, db += sums of dy per
  /// channel, and dx = col2im(W^T dY), where dY is dy in channel-major order.
  void backward(const tensor& dy, tensor* dx, const backward_context& context) {
    const scalar* grad = Backend::data(dy);
    scalar* input_grad = nullptr;
    if (dx != nullptr) {
      Backend::resize(*dx, batch_, in, InputShape::height, InputShape::width);
      input_grad = Backend::data(*dx);
    }
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
    if constexpr (Bias)
      if (context.parameter_gradients) accumulate_bias_gradient(grad);
  }

  template <class Visitor>
  void visit_buffers(Visitor&&) {}

 private:
  static void lower(const scalar* x, std::size_t count, scalar* col) {
    Backend::im2col_batch(x, count, in, InputShape::height, InputShape::width, Kernel::height,
                          Kernel::width, Stride::height, Stride::width, Padding::height,
                          Padding::width, col);
  }

  static void raise(const scalar* col, std::size_t count, scalar* x) {
    Backend::col2im_batch(col, count, in, InputShape::height, InputShape::width, Kernel::height,
                          Kernel::width, Stride::height, Stride::width, Padding::height,
                          Padding::width, x);
  }

  /// Returns how many samples one GEMM covers, as conv2d does: as many as
  /// keep the im2col matrix and the channel-major copy of a chunk each within
  /// Backend::lowering_budget values.
  std::size_t chunk_size() const {
    const std::size_t per_sample = std::max(patch, Out) * pixels;
    return std::max<std::size_t>(1, std::min(batch_, Backend::lowering_budget / per_sample));
  }

  std::size_t chunk_count(std::size_t chunk) const { return (batch_ + chunk - 1) / chunk; }

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
    raise(col, count, input_grad + first * InputShape::size);
  }

  /// Returns the im2col matrix (patch x chunk * pixels) of a chunk in the
  /// backend's shared workspace, followed by room for its channel-major copy
  /// (Out x chunk * pixels).
  static scalar* chunk_buffers(std::size_t chunk) {
    return Backend::workspace(chunk * pixels * (patch + Out));
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
};

/// A 2-D convolution with Out channels and a Kernel = size2d<KH, KW> kernel,
/// the given stride and zero padding per dimension, with or without a bias.
template <std::size_t Out, class Kernel, class Stride = size2d<1, 1>, class Padding = size2d<0, 0>,
          bool Bias = true>
struct conv2d_rect {
  static_assert(is_size2d_v<Kernel> && is_size2d_v<Stride> && is_size2d_v<Padding>,
                "advgan: conv2d_rect takes its kernel, stride and padding as size2d<H, W>");
  static_assert(Out > 0, "advgan: conv2d_rect needs at least one output channel");
  static_assert(Kernel::height > 0 && Kernel::width > 0,
                "advgan: conv2d_rect kernel sizes must be positive");
  static_assert(Stride::height > 0 && Stride::width > 0,
                "advgan: conv2d_rect strides must be positive");
  static constexpr const char* kind = "conv2d_rect";

  template <class InputShape>
  static constexpr bool accepts = size_rule::conv_valid(InputShape::height, Kernel::height,
                                                        Stride::height, Padding::height) &&
                                  size_rule::conv_valid(InputShape::width, Kernel::width,
                                                        Stride::width, Padding::width);

  template <class InputShape>
  using output_shape =
      shape<Out,
            size_rule::conv_size(InputShape::height, Kernel::height, Stride::height,
                                 Padding::height),
            size_rule::conv_size(InputShape::width, Kernel::width, Stride::width, Padding::width)>;

  template <class InputShape, class Backend>
  using bind = conv2d_rect_layer<Out, Kernel, Stride, Padding, Bias, InputShape, Backend>;
};

}  // namespace advgan
