#pragma once
// hinge: the hinge-loss GAN objective.
//   discriminator: mean(relu(1 - real)) + mean(relu(1 + fake))
//   generator:     -mean(fake)
// At the hinge (real = 1, fake = -1) the gradient is 0, as PyTorch's relu
// derivative at 0.
//
// Infinite logits: the discriminator loss is 0 for real = +inf and for
// fake = -inf, and +inf for real = -inf or fake = +inf, with gradients
// -1/n and 1/n there. The generator loss is -inf at fake = +inf, +inf at
// fake = -inf, and +inf for a batch containing both. Gradients stay finite.

#include <concepts>     // std::floating_point
#include <span>         // std::span
#include <type_traits>  // std::type_identity_t

#include "advgan/objectives/objective.hpp"

namespace advgan {

/// The hinge-loss GAN objective.
struct hinge {
  static constexpr const char* kind = "hinge";

  /// Returns mean(relu(1 - real)) + mean(relu(1 + fake)) and assigns its
  /// gradients: -1/n_real where real < 1, 1/n_fake where fake > -1, else 0.
  template <std::floating_point T>
  static double discriminator_loss(std::type_identity_t<std::span<const T>> real_logits,
                                   std::type_identity_t<std::span<const T>> fake_logits,
                                   std::span<T> real_grad, std::span<T> fake_grad) {
    const double real = detail::mean_term(kind, "real", real_logits, real_grad, [](double x) {
      const double margin = 1 - x;
      return margin <= 0 ? detail::term_value{0.0, 0.0} : detail::term_value{margin, -1.0};
    });
    const double fake = detail::mean_term(kind, "fake", fake_logits, fake_grad, [](double x) {
      const double margin = 1 + x;
      return margin <= 0 ? detail::term_value{0.0, 0.0} : detail::term_value{margin, 1.0};
    });
    return detail::add_terms(real, fake);
  }

  /// Returns -mean(fake) and assigns its gradient -1/n.
  template <std::floating_point T>
  static double generator_loss(std::type_identity_t<std::span<const T>> fake_logits,
                               std::span<T> fake_grad) {
    return detail::mean_term(kind, "fake", fake_logits, fake_grad, [](double x) {
      return detail::term_value{-x, -1.0};
    });
  }
};

}  // namespace advgan
