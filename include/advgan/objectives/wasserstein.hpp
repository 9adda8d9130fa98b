#pragma once
// wasserstein: the WGAN objective, where the discriminator is a critic whose
// output is a score rather than a logit of a probability.
//   critic:    mean(fake) - mean(real)
//   generator: -mean(fake)
// The negated critic loss estimates the Wasserstein-1 distance only while
// the critic stays close to 1-Lipschitz, which a gradient penalty or weight
// clipping enforces. The gradients are the constants -1/n on real and +1/n
// on fake.
//
// Infinite scores give infinite losses: the critic loss is -inf when real
// contains +inf or fake contains -inf and no term is +inf. Where the sum is
// undefined (a batch containing both +inf and -inf, or real and fake both
// containing +inf) the loss is +inf. Gradients stay finite.

#include <concepts>     // std::floating_point
#include <span>         // std::span
#include <type_traits>  // std::type_identity_t

#include "advgan/objectives/objective.hpp"

namespace advgan {

/// The Wasserstein GAN objective.
struct wasserstein {
  static constexpr const char* kind = "wasserstein";

  /// Returns mean(fake) - mean(real) and assigns its gradients -1/n_real and
  /// 1/n_fake.
  template <std::floating_point T>
  static double discriminator_loss(std::type_identity_t<std::span<const T>> real_logits,
                                   std::type_identity_t<std::span<const T>> fake_logits,
                                   std::span<T> real_grad, std::span<T> fake_grad) {
    const double real = detail::mean_term(kind, "real", real_logits, real_grad, [](double x) {
      return detail::term_value{-x, -1.0};
    });
    const double fake = detail::mean_term(kind, "fake", fake_logits, fake_grad, [](double x) {
      return detail::term_value{x, 1.0};
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
