#pragma once
// minimax: the original GAN objective, with the saturating generator loss.
//   discriminator: BCE(real, 1) + BCE(fake, 0)
//                = mean softplus(-real) + mean softplus(fake)
//   generator:     mean log(1 - sigmoid(fake)) = -mean softplus(fake)
// The generator loss saturates: where the discriminator rejects fakes
// confidently (fake logits far below 0) its gradient -sigmoid(fake) vanishes.
// non_saturating is the usual remedy.
//
// Infinite logits give the limits: BCE is 0 at a logit of the right sign
// (real = +inf, fake = -inf) and +inf at the wrong one. The generator loss
// is -inf at fake = +inf with gradient -1/n, and 0 at fake = -inf with
// gradient 0.

#include <concepts>     // std::floating_point
#include <span>         // std::span
#include <type_traits>  // std::type_identity_t

#include "advgan/objectives/objective.hpp"
#include "advgan/objectives/softplus.hpp"

namespace advgan {

namespace detail {

/// The binary cross-entropy discriminator loss shared by minimax and
/// non_saturating: targets 1 on real logits and 0 on fake logits.
template <class T>
double bce_discriminator_loss(const char* objective, std::span<const T> real_logits,
                              std::span<const T> fake_logits, std::span<T> real_grad,
                              std::span<T> fake_grad) {
  const double real = mean_term(objective, "real", real_logits, real_grad, [](double x) {
    return term_value{math::bce_with_logits(x, 1.0), math::bce_with_logits_gradient(x, 1.0)};
  });
  const double fake = mean_term(objective, "fake", fake_logits, fake_grad, [](double x) {
    return term_value{math::bce_with_logits(x, 0.0), math::bce_with_logits_gradient(x, 0.0)};
  });
  return add_terms(real, fake);
}

}  // namespace detail

/// The minimax GAN objective with the saturating generator loss
/// log(1 - D(G(z))).
struct minimax {
  static constexpr const char* kind = "minimax";

  /// Returns BCE(real, 1) + BCE(fake, 0) and assigns its gradients.
  template <std::floating_point T>
  static double discriminator_loss(std::type_identity_t<std::span<const T>> real_logits,
                                   std::type_identity_t<std::span<const T>> fake_logits,
                                   std::span<T> real_grad, std::span<T> fake_grad) {
    return detail::bce_discriminator_loss<T>(kind, real_logits, fake_logits, real_grad, fake_grad);
  }

  /// Returns -mean softplus(fake) and assigns its gradient -sigmoid(fake) / n.
  template <std::floating_point T>
  static double generator_loss(std::type_identity_t<std::span<const T>> fake_logits,
                               std::span<T> fake_grad) {
    return detail::mean_term(kind, "fake", fake_logits, fake_grad, [](double x) {
      return detail::term_value{-math::softplus(x), -math::sigmoid(x)};
    });
  }
};

}  // namespace advgan
