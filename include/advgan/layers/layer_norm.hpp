#pragma once
// layer_norm: layer normalization over all of (C, H, W) of each sample, as
// torch.nn.LayerNorm([C, H, W]) with eps 1e-5. The affine weight and bias
// have one value per element of a sample, shape (C, H, W). On a feature
// vector (F, 1, 1) they have shape (F), as torch.nn.LayerNorm(F) on (N, F).
//
// Unlike batch norm, each sample is normalised on its own, so a critic with
// layer norm keeps per-sample input gradients, which gradient penalties need.

#include <array>    // std::array
#include <cstddef>  // std::size_t
#include <ratio>    // std::ratio

#include "advgan/layers/standardize.hpp"

namespace advgan {

namespace detail {

/// One group per sample and one affine value per element.
template <class InputShape>
struct layer_norm_policy {
  static constexpr const char* kind = "layer_norm";
  static constexpr std::size_t group_size = InputShape::size;
  static constexpr std::size_t affine_size = InputShape::size;
  static constexpr bool vector = InputShape::height == 1 && InputShape::width == 1;
  static constexpr std::size_t parameter_rank = vector ? 1 : 3;
  static constexpr std::array<std::size_t, 4> parameter_dims =
      vector ? std::array<std::size_t, 4>{InputShape::channels, 0, 0, 0}
             : std::array<std::size_t, 4>{InputShape::channels, InputShape::height,
                                          InputShape::width, 0};
  static constexpr std::size_t affine_index(std::size_t i) { return i; }
};

}  // namespace detail

/// Layer normalization, with a learned element-wise scale and shift when
/// Affine (PyTorch's elementwise_affine). Epsilon is a std::ratio.
template <bool Affine = true, class Epsilon = std::ratio<1, 100000>>
struct layer_norm_with {
  static constexpr const char* kind = "layer_norm";

  /// A sample of one value would always normalise to zero.
  template <class InputShape>
  static constexpr bool accepts = InputShape::size > 1;

  template <class InputShape>
  using output_shape = InputShape;

  template <class InputShape, class Backend>
  using bind = detail::standardize_layer<detail::layer_norm_policy<InputShape>, Affine, Epsilon,
                                         InputShape, Backend>;
};

using layer_norm = layer_norm_with<>;

}  // namespace advgan
