#pragma once
// instance_norm: instance normalization over (H, W) of each channel of each
// sample, as torch.nn.InstanceNorm2d(C) with eps 1e-5 and no running
// statistics (PyTorch's default track_running_stats=False). The affine
// transform is off by default, as in PyTorch; instance_norm_with<true> adds
// a learned scale and shift per channel, of shape (C).
//
// Each sample is normalised on its own, so a critic with instance norm keeps
// per-sample input gradients, which gradient penalties need.

#include <array>    // std::array
#include <cstddef>  // std::size_t
#include <ratio>    // std::ratio

#include "advgan/layers/standardize.hpp"

namespace advgan {

namespace detail {

/// One group per channel of a sample and one affine value per channel.
template <class InputShape>
struct instance_norm_policy {
  static constexpr const char* kind = "instance_norm";
  static constexpr std::size_t area = InputShape::height * InputShape::width;
  static constexpr std::size_t group_size = area;
  static constexpr std::size_t affine_size = InputShape::channels;
  static constexpr std::size_t parameter_rank = 1;
  static constexpr std::array<std::size_t, 4> parameter_dims{InputShape::channels, 0, 0, 0};
  static constexpr std::size_t affine_index(std::size_t i) { return i / area; }
};

}  // namespace detail

/// Instance normalization, with a learned per-channel scale and shift when
/// Affine. Epsilon is a std::ratio.
template <bool Affine = false, class Epsilon = std::ratio<1, 100000>>
struct instance_norm_with {
  static constexpr const char* kind = "instance_norm";

  /// A 1x1 plane would always normalise to zero (PyTorch rejects it too).
  template <class InputShape>
  static constexpr bool accepts = InputShape::height* InputShape::width > 1;

  template <class InputShape>
  using output_shape = InputShape;

  template <class InputShape, class Backend>
  using bind = detail::standardize_layer<detail::instance_norm_policy<InputShape>, Affine, Epsilon,
                                         InputShape, Backend>;
};

using instance_norm = instance_norm_with<>;

}  // namespace advgan
