#pragma once
// Pooling layers with PyTorch's semantics:
//   max_pool2d<Kernel, Stride, Padding>     as torch.nn.MaxPool2d
//   avg_pool2d<Kernel, Stride, Padding, CountIncludePad>
//                                           as torch.nn.AvgPool2d
//   global_avg_pool2d                       as torch.nn.AdaptiveAvgPool2d(1)
//
// The windows are square. Output sizes round down (ceil_mode=False):
// floor((in + 2 * Padding - Kernel) / Stride) + 1. As in PyTorch, Padding
// may be at most Kernel / 2, so every window contains at least one input
// value.

#include <algorithm>  // std::fill_n
#include <cmath>      // std::isnan
#include <cstddef>    // std::size_t
#include <cstdint>    // std::uint32_t
#include <limits>     // std::numeric_limits
#include <vector>     // std::vector

#include "advgan/layers/layer.hpp"

namespace advgan {

namespace detail {

/// The input rows (or columns) [begin, end) that window position `out` of
/// a square pooling window covers inside the image.
struct window_range {
  std::size_t begin;
  std::size_t end;
};

constexpr window_range pooling_window(std::size_t out, std::size_t kernel, std::size_t stride,
                                      std::size_t padding, std::size_t size) {
  const std::size_t start = out * stride;  // in padded coordinates
  const std::size_t begin = start < padding ? 0 : start - padding;
  const std::size_t end_padded = start + kernel;
  const std::size_t end = end_padded < padding ? 0 : end_padded - padding;
  return {begin, end < size ? end : size};
}

template <std::size_t Kernel, std::size_t Stride, std::size_t Padding>
struct pooling_rule {
  static constexpr bool valid(std::size_t in) {
    return 2 * Padding <= Kernel && size_rule::conv_valid(in, Kernel, Stride, Padding);
  }
  template <class InputShape>
  using output_shape =
      shape<InputShape::channels, size_rule::conv_size(InputShape::height, Kernel, Stride, Padding),
            size_rule::conv_size(InputShape::width, Kernel, Stride, Padding)>;
};

}  // namespace detail

template <std::size_t Kernel, std::size_t Stride, std::size_t Padding, class InputShape,
          class Backend>
class max_pool2d_layer {
 public:
  using backend = Backend;
  using scalar = typename Backend::scalar;
  using tensor = typename Backend::tensor;
  using input_shape = InputShape;
  using output_shape =
      typename detail::pooling_rule<Kernel, Stride, Padding>::template output_shape<InputShape>;
  static constexpr auto parameters = no_parameters;

  void bind(scalar*, scalar*) {}
  void reset_parameters(philox&, init_scheme) {}

  /// y = the maximum of each window, padding excluded. Where several values
  /// tie, the first in row-major order wins, and a NaN wins over any number,
  /// as in PyTorch. Backward sends the gradient to that position.
  void forward(const tensor& x, tensor& y, const forward_context&) {
    detail::expect_sample_shape<InputShape, Backend>("max_pool2d", x);
    batch_ = Backend::shape(x)[0];
    Backend::resize(y, batch_, output_shape::channels, output_shape::height, output_shape::width);
    argmax_.resize(batch_ * output_shape::size);
    const scalar* in = Backend::data(x);
    scalar* out = Backend::data(y);
    Backend::parallel_for(
        batch_ * InputShape::channels,
        [=, this](std::size_t plane) {
          pool_plane(in + plane * plane_in, out + plane * plane_out,
                     argmax_.data() + plane * plane_out);
        },
        1);
  }

  void backward(const tensor& dy, tensor* dx, const backward_context&) {
    if (dx == nullptr) return;
    Backend::resize(*dx, batch_, InputShape::channels, InputShape::height, InputShape::width);
    const scalar* grad = Backend::data(dy);
    scalar* out = Backend::data(*dx);
    Backend::parallel_for(
        batch_ * InputShape::channels,
        [=, this](std::size_t plane) {
          scalar* target = out + plane * plane_in;
          std::fill_n(target, plane_in, scalar(0));
          const std::uint32_t* index = argmax_.data() + plane * plane_out;
          const scalar* source = grad + plane * plane_out;
          for (std::size_t o = 0; o < plane_out; ++o) target[index[o]] += source[o];
        },
        1);
  }

  template <class Visitor>
  void visit_buffers(Visitor&&) {}

 private:
  static constexpr std::size_t plane_in = InputShape::height * InputShape::width;
  static constexpr std::size_t plane_out = output_shape::height * output_shape::width;
  static_assert(plane_in <= std::numeric_limits<std::uint32_t>::max(),
                "advgan: max_pool2d stores window positions as 32-bit indices");

  static void pool_plane(const scalar* in, scalar* out, std::uint32_t* argmax) {
    for (std::size_t oy = 0; oy < output_shape::height; ++oy) {
      const auto rows = detail::pooling_window(oy, Kernel, Stride, Padding, InputShape::height);
      for (std::size_t ox = 0; ox < output_shape::width; ++ox) {
        const auto cols = detail::pooling_window(ox, Kernel, Stride, Padding, InputShape::width);
        std::size_t best_index = rows.begin * InputShape::width + cols.begin;
        scalar best = -std::numeric_limits<scalar>::infinity();
        for (std::size_t iy = rows.begin; iy < rows.end; ++iy)
          for (std::size_t ix = cols.begin; ix < cols.end; ++ix) {
            const scalar value = in[iy * InputShape::width + ix];
            if (value > best || std::isnan(value)) {
              best = value;
              best_index = iy * InputShape::width + ix;
            }
          }
        out[oy * output_shape::width + ox] = best;
        argmax[oy * output_shape::width + ox] = static_cast<std::uint32_t>(best_index);
      }
    }
  }

  std::size_t batch_ = 0;
  std::vector<std::uint32_t> argmax_;  // per output value, its input position in the plane
};

template <std::size_t Kernel, std::size_t Stride, std::size_t Padding, bool CountIncludePad,
          class InputShape, class Backend>
class avg_pool2d_layer {
 public:
  using backend = Backend;
  using scalar = typename Backend::scalar;
  using tensor = typename Backend::tensor;
  using input_shape = InputShape;
  using output_shape =
      typename detail::pooling_rule<Kernel, Stride, Padding>::template output_shape<InputShape>;
  static constexpr auto parameters = no_parameters;

  void bind(scalar*, scalar*) {}
  void reset_parameters(philox&, init_scheme) {}

  /// y = the sum of each window's input values over Kernel * Kernel, or
  /// over the number of values inside the image when CountIncludePad is
  /// false.
  void forward(const tensor& x, tensor& y, const forward_context&) {
    detail::expect_sample_shape<InputShape, Backend>("avg_pool2d", x);
    batch_ = Backend::shape(x)[0];
    Backend::resize(y, batch_, output_shape::channels, output_shape::height, output_shape::width);
    const scalar* in = Backend::data(x);
    scalar* out = Backend::data(y);
    Backend::parallel_for(
        batch_ * InputShape::channels,
        [=](std::size_t plane) { pool_plane(in + plane * plane_in, out + plane * plane_out); }, 1);
  }

  /// dx = each window's dy / divisor, summed where windows overlap.
  void backward(const tensor& dy, tensor* dx, const backward_context&) {
    if (dx == nullptr) return;
    Backend::resize(*dx, batch_, InputShape::channels, InputShape::height, InputShape::width);
    const scalar* grad = Backend::data(dy);
    scalar* out = Backend::data(*dx);
    Backend::parallel_for(
        batch_ * InputShape::channels,
        [=](std::size_t plane) { spread_plane(grad + plane * plane_out, out + plane * plane_in); },
        1);
  }

  template <class Visitor>
  void visit_buffers(Visitor&&) {}

 private:
  static constexpr std::size_t plane_in = InputShape::height * InputShape::width;
  static constexpr std::size_t plane_out = output_shape::height * output_shape::width;

  static scalar divisor(const detail::window_range& rows, const detail::window_range& cols) {
    if constexpr (CountIncludePad) return static_cast<scalar>(Kernel * Kernel);
    return static_cast<scalar>((rows.end - rows.begin) * (cols.end - cols.begin));
  }

  static void pool_plane(const scalar* in, scalar* out) {
    for (std::size_t oy = 0; oy < output_shape::height; ++oy) {
      const auto rows = detail::pooling_window(oy, Kernel, Stride, Padding, InputShape::height);
      for (std::size_t ox = 0; ox < output_shape::width; ++ox) {
        const auto cols = detail::pooling_window(ox, Kernel, Stride, Padding, InputShape::width);
        scalar total = 0;
        for (std::size_t iy = rows.begin; iy < rows.end; ++iy)
          for (std::size_t ix = cols.begin; ix < cols.end; ++ix)
            total += in[iy * InputShape::width + ix];
        out[oy * output_shape::width + ox] = total / divisor(rows, cols);
      }
    }
  }

  static void spread_plane(const scalar* grad, scalar* out) {
    std::fill_n(out, plane_in, scalar(0));
    for (std::size_t oy = 0; oy < output_shape::height; ++oy) {
      const auto rows = detail::pooling_window(oy, Kernel, Stride, Padding, InputShape::height);
      for (std::size_t ox = 0; ox < output_shape::width; ++ox) {
        const auto cols = detail::pooling_window(ox, Kernel, Stride, Padding, InputShape::width);
        const scalar share = grad[oy * output_shape::width + ox] / divisor(rows, cols);
        for (std::size_t iy = rows.begin; iy < rows.end; ++iy)
          for (std::size_t ix = cols.begin; ix < cols.end; ++ix)
            out[iy * InputShape::width + ix] += share;
      }
    }
  }

  std::size_t batch_ = 0;
};

template <class InputShape, class Backend>
class global_avg_pool2d_layer {
 public:
  using backend = Backend;
  using scalar = typename Backend::scalar;
  using tensor = typename Backend::tensor;
  using input_shape = InputShape;
  using output_shape = shape<InputShape::channels, 1, 1>;
  static constexpr auto parameters = no_parameters;

  void bind(scalar*, scalar*) {}
  void reset_parameters(philox&, init_scheme) {}

  /// y[n][c] = the mean of plane (n, c), summed in double.
  void forward(const tensor& x, tensor& y, const forward_context&) {
    detail::expect_sample_shape<InputShape, Backend>("global_avg_pool2d", x);
    batch_ = Backend::shape(x)[0];
    Backend::resize(y, batch_, InputShape::channels, 1, 1);
    const scalar* in = Backend::data(x);
    scalar* out = Backend::data(y);
    Backend::parallel_for(
        batch_ * InputShape::channels,
        [=](std::size_t plane) {
          out[plane] = static_cast<scalar>(Backend::sum(in + plane * area, area) / area);
        },
        64);
  }

  /// dx = dy[n][c] / (H * W) at every position of plane (n, c).
  void backward(const tensor& dy, tensor* dx, const backward_context&) {
    if (dx == nullptr) return;
    Backend::resize(*dx, batch_, InputShape::channels, InputShape::height, InputShape::width);
    const scalar* grad = Backend::data(dy);
    scalar* out = Backend::data(*dx);
    Backend::parallel_for(
        batch_ * InputShape::channels,
        [=](std::size_t plane) {
          std::fill_n(out + plane * area, area, static_cast<scalar>(grad[plane] / area));
        },
        64);
  }

  template <class Visitor>
  void visit_buffers(Visitor&&) {}

 private:
  static constexpr std::size_t area = InputShape::height * InputShape::width;
  std::size_t batch_ = 0;
};

/// Max pooling over Kernel x Kernel windows (stride defaults to Kernel, as in
/// PyTorch), with implicit padding of -infinity.
template <std::size_t Kernel, std::size_t Stride = Kernel, std::size_t Padding = 0>
struct max_pool2d {
  static_assert(Kernel > 0, "advgan: max_pool2d kernel size must be positive");
  static_assert(Stride > 0, "advgan: max_pool2d stride must be positive");
  static_assert(2 * Padding <= Kernel, "advgan: max_pool2d padding must be at most Kernel / 2");
  static constexpr const char* kind = "max_pool2d";

  template <class InputShape>
  static constexpr bool accepts =
      detail::pooling_rule<Kernel, Stride, Padding>::valid(InputShape::height) &&
      detail::pooling_rule<Kernel, Stride, Padding>::valid(InputShape::width);

  template <class InputShape>
  using output_shape =
      typename detail::pooling_rule<Kernel, Stride, Padding>::template output_shape<InputShape>;

  template <class InputShape, class Backend>
  using bind = max_pool2d_layer<Kernel, Stride, Padding, InputShape, Backend>;
};

/// Average pooling over Kernel x Kernel windows with zero padding.
/// CountIncludePad = true divides by Kernel * Kernel everywhere (PyTorch's
/// default), false by the number of values inside the image.
template <std::size_t Kernel, std::size_t Stride = Kernel, std::size_t Padding = 0,
          bool CountIncludePad = true>
struct avg_pool2d {
  static_assert(Kernel > 0, "advgan: avg_pool2d kernel size must be positive");
  static_assert(Stride > 0, "advgan: avg_pool2d stride must be positive");
  static_assert(2 * Padding <= Kernel, "advgan: avg_pool2d padding must be at most Kernel / 2");
  static constexpr const char* kind = "avg_pool2d";

  template <class InputShape>
  static constexpr bool accepts =
      detail::pooling_rule<Kernel, Stride, Padding>::valid(InputShape::height) &&
      detail::pooling_rule<Kernel, Stride, Padding>::valid(InputShape::width);

  template <class InputShape>
  using output_shape =
      typename detail::pooling_rule<Kernel, Stride, Padding>::template output_shape<InputShape>;

  template <class InputShape, class Backend>
  using bind = avg_pool2d_layer<Kernel, Stride, Padding, CountIncludePad, InputShape, Backend>;
};

/// The mean of each channel: (C, H, W) to (C, 1, 1).
struct global_avg_pool2d {
  static constexpr const char* kind = "global_avg_pool2d";

  template <class InputShape>
  using output_shape = shape<InputShape::channels, 1, 1>;

  template <class InputShape, class Backend>
  using bind = global_avg_pool2d_layer<InputShape, Backend>;
};

}  // namespace advgan
