#pragma once
// weight_clipping<Limit>: the original WGAN's way of keeping the critic
// Lipschitz (Arjovsky et al. 2017): after every critic update each critic
// parameter is clamped to [-Limit, Limit] (0.01 by default, the paper's c).
//
// Clipping and spectral normalization both bound the critic's Lipschitz
// constant, and clipping weight_orig would fight spectral_norm's power
// iteration. Naming both for one critic therefore fails to compile.

#include <algorithm>  // std::clamp
#include <concepts>   // std::convertible_to
#include <cstddef>    // std::size_t
#include <ratio>      // std::ratio
#include <span>       // std::span
#include <utility>    // std::index_sequence

#include "advgan/layers/spectral_norm.hpp"

namespace advgan {

/// Clamps every critic parameter to [-Limit, Limit] after each update.
/// Limit is a positive std::ratio.
template <class Limit = std::ratio<1, 100>>
struct weight_clipping {
  static_assert(Limit::num > 0, "advgan: weight_clipping needs a positive Limit");
  static constexpr const char* kind = "weight_clipping";
  static constexpr double limit = static_cast<double>(Limit::num) / Limit::den;

  /// Clamps each value to [-limit, limit].
  template <class T>
  static void constrain(std::span<T> parameters) {
    const auto bound = static_cast<T>(limit);
    for (T& value : parameters) value = std::clamp(value, -bound, bound);
  }
};

/// A rule that a trainer applies to the critic's parameters after every
/// critic update: constrain(std::span<T>) for float and double.
template <class Constraint>
concept parameter_constraint = requires(std::span<float> f, std::span<double> d) {
  { Constraint::kind } -> std::convertible_to<const char*>;
  Constraint::constrain(f);
  Constraint::constrain(d);
};

template <class Spec>
inline constexpr bool is_spectral_norm = false;
template <class Layer>
inline constexpr bool is_spectral_norm<spectral_norm<Layer>> = true;

namespace detail {

/// Fails to compile when a critic under weight clipping has a spectral_norm
/// layer; the template arguments name the layer's index and its spec.
template <std::size_t LayerIndex, class Layer, bool Valid>
struct check_clipping_without_spectral_norm {
  static_assert(Valid,
                "advgan: weight clipping and spectral normalization both bound the critic's "
                "Lipschitz constant, and clipping weight_orig fights the power iteration; use "
                "one of them (or a gradient penalty); see LayerIndex and Layer");
  static constexpr bool value = Valid;
};

/// True when no layer of the critic spec is a spectral_norm; otherwise the
/// check above fails to compile.
template <class CriticSpec>
constexpr bool check_clipping_critic() {
  return []<std::size_t... I>(std::index_sequence<I...>) {
    return (check_clipping_without_spectral_norm<
                I, typename CriticSpec::template layer_spec<I>,
                !is_spectral_norm<typename CriticSpec::template layer_spec<I>>>::value &&
            ...);
  }
  (std::make_index_sequence<CriticSpec::layer_count>{});
}

}  // namespace detail

}  // namespace advgan
