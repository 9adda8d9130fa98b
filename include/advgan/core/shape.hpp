#pragma once
// Compile-time shapes and the size rules of convolution-like layers.
//
// Every activation is a 4-D tensor (N, C, H, W), row-major as in PyTorch. A
// layer's shape type describes one sample, (C, H, W); the batch size N is the
// only run-time dimension. A feature vector of F values is (F, 1, 1), which
// has the same memory layout as PyTorch's (N, F).

#include <array>    // std::array
#include <cstddef>  // std::size_t
#include <string>   // std::string

#include "advgan/core/error.hpp"

namespace advgan {

/// The shape of one sample: channels, height and width.
template <std::size_t Channels, std::size_t Height = 1, std::size_t Width = 1>
struct shape {
  static constexpr std::size_t channels = Channels;
  static constexpr std::size_t height = Height;
  static constexpr std::size_t width = Width;
  static constexpr std::size_t size = Channels * Height * Width;

  static std::string str() { return detail::concat("(", Channels, ", ", Height, ", ", Width, ")"); }
};

/// The first element of a `sequential`: the shape of one input sample.
template <std::size_t Channels, std::size_t Height = 1, std::size_t Width = 1>
struct input : shape<Channels, Height, Width> {
  using shape_type = shape<Channels, Height, Width>;
};

template <class T>
inline constexpr bool is_shape_v = false;
template <std::size_t C, std::size_t H, std::size_t W>
inline constexpr bool is_shape_v<shape<C, H, W>> = true;

/// Run-time (N, C, H, W) extents of a tensor.
using extents = std::array<std::size_t, 4>;

inline std::string to_string(const extents& e) {
  return detail::concat("(", e[0], ", ", e[1], ", ", e[2], ", ", e[3], ")");
}

/// Size rules shared by the compile-time checks and the run-time checks.
/// Each returns whether the parameters are valid; the size itself comes from
/// the matching `*_size` function.
namespace size_rule {

/// Output size of a convolution: floor((in + 2p - k) / s) + 1, which is valid
/// when the kernel fits the padded input and the stride is positive.
constexpr bool conv_valid(std::size_t in, std::size_t kernel, std::size_t stride,
                          std::size_t padding) {
  return stride > 0 && kernel > 0 && in + 2 * padding >= kernel;
}
constexpr std::size_t conv_size(std::size_t in, std::size_t kernel, std::size_t stride,
                                std::size_t padding) {
  return (in + 2 * padding - kernel) / stride + 1;
}

/// Output size of a transposed convolution, as PyTorch defines it:
/// (in - 1) * s - 2p + k + output_padding, valid when output_padding < s and
/// the result is positive.
constexpr bool conv_transpose_valid(std::size_t in, std::size_t kernel, std::size_t stride,
                                    std::size_t padding, std::size_t output_padding) {
  return stride > 0 && kernel > 0 && in > 0 && output_padding < stride &&
         (in - 1) * stride + kernel + output_padding > 2 * padding;
}
constexpr std::size_t conv_transpose_size(std::size_t in, std::size_t kernel, std::size_t stride,
                                          std::size_t padding, std::size_t output_padding) {
  return (in - 1) * stride + kernel + output_padding - 2 * padding;
}

/// Throws argument_error unless a convolution with these parameters is valid,
/// naming the layer and every parameter.
inline void check_conv(const char* layer, std::size_t in, std::size_t kernel, std::size_t stride,
                       std::size_t padding) {
  if (!conv_valid(in, kernel, stride, padding))
    throw argument_error(detail::concat(layer, ": kernel ", kernel, " with padding ", padding,
                                        " and stride ", stride, " does not fit input size ", in));
}

inline void check_conv_transpose(const char* layer, std::size_t in, std::size_t kernel,
                                 std::size_t stride, std::size_t padding,
                                 std::size_t output_padding) {
  if (output_padding >= stride)
    throw argument_error(detail::concat(layer, ": output_padding = ", output_padding,
                                        " must be smaller than stride = ", stride));
  if (!conv_transpose_valid(in, kernel, stride, padding, output_padding))
    throw argument_error(detail::concat(layer, ": kernel ", kernel, ", stride ", stride,
                                        ", padding ", padding, " and output_padding ",
                                        output_padding, " give no output for input size ", in));
}

}  // namespace size_rule

}  // namespace advgan
