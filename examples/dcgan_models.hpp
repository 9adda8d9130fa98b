#pragma once
// The DCGAN generator and discriminator of the Fashion-MNIST examples, at
// 1x32x32 (28x28 images padded by 2 pixels on each side).

#include <cstddef>  // std::size_t

#include <advgan/advgan.hpp>

namespace dcgan {

using namespace advgan;

/// The DCGAN generator for 1x32x32 images: 100-d noise through transposed
/// convolutions with 4*Width, 2*Width and Width channels. Width 128 is the
/// paper's reference size (512, 256, 128).
template <std::size_t Width>
using generator =
    sequential<input<100, 1, 1>,                                              //
               conv_transpose2d<4 * Width, 4, 1, 0, 0, false>, batch_norm, relu,  // 4x4
               conv_transpose2d<2 * Width, 4, 2, 1, 0, false>, batch_norm, relu,  // 8x8
               conv_transpose2d<Width, 4, 2, 1, 0, false>, batch_norm, relu,      // 16x16
               conv_transpose2d<1, 4, 2, 1, 0, false>, tanh_activation>;          // 32x32

/// The DCGAN discriminator with Width, 2*Width and 4*Width channels; Width
/// 64 is the reference size (64, 128, 256). It ends in one logit.
template <std::size_t Width>
using discriminator =
    sequential<input<1, 32, 32>,                                                   //
               conv2d<Width, 4, 2, 1, false>, leaky_relu<>,                        // 16x16
               conv2d<2 * Width, 4, 2, 1, false>, batch_norm, leaky_relu<>,        // 8x8
               conv2d<4 * Width, 4, 2, 1, false>, batch_norm, leaky_relu<>,        // 4x4
               conv2d<1, 4, 1, 0, false>, flatten>;                                // 1

/// Generator widths: the default small one, which learns within minutes on
/// two cores, and the reference one.
inline constexpr std::size_t small_width = 32;
inline constexpr std::size_t reference_width = 128;

}  // namespace dcgan
