#pragma once
// least_squares: the LSGAN objective with targets a = 0 for fake and b = 1
// for real in the discriminator loss, and c = 1 in the generator loss.
//   discriminator: 0.5 mean((real - 1)^2) + 0.5 mean(fake^2)
//   generator:     0.5 mean((fake - 1)^2)
// The gradients are (real - 1)/n, fake/n and (fake - 1)/n.
//
// Infinite logits have no finite limit here: the loss is +inf and the
// gradient of that logit is +inf or -inf (the sign of the logit), never NaN.

#include <concepts>     // std::floating_point
#include <span>         // std::span
#include <type_traits>  // std::type_identity_t

#include "advgan/objectives/objective.hpp"

namespace advgan {

/// The least-squares GAN objective (targets 0, 1 and 1).
struct least_squares {
  static constexpr const char* kind = "least_squares";

  /// Returns 0.5 mean((real - 1)^2) + 0.5 mean(fake^2) and assigns its
  /// gradients.
  template <std::floating_point T>
  static double discriminator_loss(std::type_identity_t<std::span<const T>> real_logits,
                                   std::type_identity_t<std::span<const T>> fake_logits,
                                   std::span<T> real_grad, std::span<T> fake_grad) {
    const double real = detail::mean_term(kind, "real", real_logits, real_grad, [](double x) {
      return detail::term_value{0.5 * (x - 1) * (x - 1), x - 1};
    });
    const double fake = detail::mean_term(kind, "fake", fake_logits, fake_grad, [](double x) {
      return detail::term_value{0.5 * x * x, x};
    });
    return detail::add_terms(real, fake);
  }

  /// Returns 0.5 mean((fake - 1)^2) and assigns its gradient (fake - 1)/n.
  template <std::floating_point T>
  static double generator_loss(std::type_identity_t<std::span<const T>> fake_logits,
                               std::span<T> fake_grad) {
    return detail::mean_term(kind, "fake", fake_logits, fake_grad, [](double x) {
      return detail::term_value{0.5 * (x - 1) * (x - 1), x - 1};
    });
  }
};

}  // namespace advgan
