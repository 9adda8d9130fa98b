#pragma once
// non_saturating: the GAN objective with the non-saturating generator loss.
//   discriminator: BCE(real, 1) + BCE(fake, 0), as minimax
//   generator:     BCE(fake, 1) = -mean log sigmoid(fake) = mean softplus(-fake)
// The generator's gradient -sigmoid(-fake) is largest where the
// discriminator rejects fakes confidently.
//
// Infinite logits give the limits: the generator loss is 0 at fake = +inf
// with gradient 0, and +inf at fake = -inf with gradient -1/n.

#include <concepts>     // std::floating_point
#include <span>         // std::span
#include <type_traits>  // std::type_identity_t

#include "advgan/objectives/minimax.hpp"
#include "advgan/objectives/objective.hpp"
#include "advgan/objectives/softplus.hpp"

namespace advgan {

/// The GAN objective with the non-saturating generator loss -log D(G(z)).
struct non_saturating {
  static constexpr const char* kind = "non_saturating";

  /// Returns BCE(real, 1) + BCE(fake, 0) and assigns its gradients.
  template <std::floating_point T>
  static double discriminator_loss(std::type_identity_t<std::span<const T>> real_logits,
                                   std::type_identity_t<std::span<const T>> fake_logits,
                                   std::span<T> real_grad, std::span<T> fake_grad) {
    return detail::bce_discriminator_loss<T>(kind, real_logits, fake_logits, real_grad, fake_grad);
  }

  /// Returns mean softplus(-fake) and assigns its gradient -sigmoid(-fake) / n.
  template <std::floating_point T>
  static double generator_loss(std::type_identity_t<std::span<const T>> fake_logits,
                               std::span<T> fake_grad) {
    return detail::mean_term(kind, "fake", fake_logits, fake_grad, [](double x) {
      return detail::term_value{math::softplus(-x), -math::sigmoid(-x)};
    });
  }
};

}  // namespace advgan
