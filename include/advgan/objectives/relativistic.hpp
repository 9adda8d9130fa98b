#pragma once
// relativistic_average<Base>: the relativistic average GAN objectives of
// Jolicoeur-Martineau, "The relativistic discriminator: a key element
// missing from standard GAN" (2018, arXiv:1807.00734), for Base =
// non_saturating (RaSGAN), least_squares (RaLSGAN) and hinge (RaHingeGAN).
//
// With C the discriminator's logit, the relativistic logits are
//   D_ra(x_r) = C(x_r) - mean C(x_f),   D_ra(x_f) = C(x_f) - mean C(x_r),
// and, with E a mean over the batch,
//   RaSGAN      L_D = E_r[softplus(-D_ra(x_r))] + E_f[softplus(D_ra(x_f))]
//               (= -E_r[log sigmoid(D_ra(x_r))] - E_f[log(1 - sigmoid(D_ra(x_f)))])
//   RaLSGAN     L_D = E_r[(D_ra(x_r) - 1)^2] + E_f[(D_ra(x_f) + 1)^2]
//   RaHingeGAN  L_D = E_r[relu(1 - D_ra(x_r))] + E_f[relu(1 + D_ra(x_f))].
// Each generator loss is the discriminator loss with the roles of the real
// and fake batches exchanged: L_G(real, fake) = L_D(fake, real). These are
// the paper's equations, without the factor 1/2 that the author's PyTorch
// code (AlexiaJM/RelativisticGAN, code/GAN_losses_iter.py) applies to every
// relativistic loss. RaLSGAN has no 1/2 on its squares either, unlike
// advgan's least_squares.
//
// The mean terms couple every logit with every other. With a_i the real
// relativistic logits, b_j the fake ones, and L = E_i phi(a_i) + E_j psi(b_j),
//   dL/dr_k = (phi'(a_k) - E_j psi'(b_j)) / n_r,
//   dL/df_k = (psi'(b_k) - E_i phi'(a_i)) / n_f.
// The generator loss therefore has gradients with respect to both logit
// sets. The trainer backpropagates only the fake ones, because real data
// does not depend on the generator.
//
// Infinite logits: the loss and the gradients are the limits where those
// exist. A relativistic logit of the form inf - inf (an infinite logit
// against an infinite mean of the same sign, or a batch that holds both +inf
// and -inf) has no limit: its term is +inf and its derivative 0. Any other
// undefined form inf - inf in a gradient sum gives a gradient entry of 0,
// and in the loss gives +inf, never NaN. A NaN logit gives a NaN loss.

#include <concepts>     // std::floating_point
#include <cstddef>      // std::size_t
#include <limits>       // std::numeric_limits
#include <span>         // std::span
#include <type_traits>  // std::type_identity_t
#include <vector>       // std::vector

#include "advgan/core/error.hpp"
#include "advgan/core/finite.hpp"
#include "advgan/objectives/hinge.hpp"
#include "advgan/objectives/least_squares.hpp"
#include "advgan/objectives/non_saturating.hpp"
#include "advgan/objectives/objective.hpp"
#include "advgan/objectives/softplus.hpp"

namespace advgan {

namespace detail {

/// One batch of logits with its gradient and its name for messages.
template <class T>
struct logit_batch {
  const char* name;
  std::span<const T> logits;
  std::span<T> grad;
};

/// Throws argument_error for an empty batch or a gradient of another length.
template <class T>
void check_logit_batch(const char* objective, const logit_batch<T>& batch) {
  if (batch.logits.empty())
    throw argument_error(concat(objective, ": the ", batch.name,
                                " batch is empty; a loss is a mean over at least one logit"));
  if (batch.grad.size() != batch.logits.size())
    throw argument_error(concat(objective, ": the ", batch.name, " gradient has ",
                                batch.grad.size(), " values, expected one per logit (",
                                batch.logits.size(), ")"));
}

/// Returns the mean of the logits in double: +inf or -inf when the batch
/// contains infinities of one sign, and NaN when it contains both +inf and
/// -inf or a NaN.
template <class T>
double mean_logit(std::span<const T> logits) {
  double sum = 0;
  for (const T x : logits) sum += static_cast<double>(x);
  return sum / static_cast<double>(logits.size());
}

/// Returns whether logits contain a NaN.
template <class T>
bool has_nan(std::span<const T> logits) {
  for (const T x : logits)
    if (is_nan(x)) return true;
  return false;
}

/// The terms of one batch at its relativistic logits: the mean value, the
/// per-logit derivative of the term and the mean of those derivatives.
struct relativistic_terms {
  double mean_value = 0;
  std::vector<double> derivative;
  double mean_derivative = 0;
};

/// Evaluates term(x - other_mean) for every logit x of `batch`. A
/// relativistic logit that is NaN while x and other_mean are not (inf - inf)
/// contributes +inf to the loss and 0 to the derivatives.
template <class T, class Term>
relativistic_terms evaluate_relativistic(std::span<const T> logits, double other_mean,
                                         bool nan_input, Term term) {
  relativistic_terms result;
  result.derivative.resize(logits.size());
  loss_sum values;
  double derivative_sum = 0;
  for (std::size_t i = 0; i < logits.size(); ++i) {
    const double relative = static_cast<double>(logits[i]) - other_mean;
    if (is_nan(relative) && !nan_input) {
      values.add(std::numeric_limits<double>::infinity());
      result.derivative[i] = 0;
      continue;
    }
    const term_value t = term(relative);
    values.add(t.value);
    result.derivative[i] = t.derivative;
    derivative_sum += t.derivative;
  }
  const auto n = static_cast<double>(logits.size());
  result.mean_value = values.total() / n;
  result.mean_derivative = derivative_sum / n;
  return result;
}

/// Assigns grad[k] = (own[k] - other_mean_derivative) / n, with an undefined
/// inf - inf replaced by 0 unless a logit is NaN.
template <class T>
void assign_relativistic_gradient(std::span<T> grad, const std::vector<double>& own,
                                  double other_mean_derivative, bool nan_input) {
  const auto n = static_cast<double>(own.size());
  for (std::size_t k = 0; k < own.size(); ++k) {
    double value = (own[k] - other_mean_derivative) / n;
    if (is_nan(value) && !nan_input) value = 0;
    grad[k] = static_cast<T>(value);
  }
}

/// Returns E_i first_term(a_i) + E_j second_term(b_j) with a_i = first_i -
/// mean(second) and b_j = second_j - mean(first), and assigns the gradients
/// with respect to both batches (see the top of this file).
template <class T, class FirstTerm, class SecondTerm>
double relativistic_loss(const char* objective, const logit_batch<T>& first,
                         const logit_batch<T>& second, FirstTerm first_term,
                         SecondTerm second_term) {
  check_logit_batch(objective, first);
  check_logit_batch(objective, second);
  const bool nan_input = has_nan(first.logits) || has_nan(second.logits);
  const double first_mean = mean_logit(first.logits);
  const double second_mean = mean_logit(second.logits);
  const relativistic_terms a =
      evaluate_relativistic(first.logits, second_mean, nan_input, first_term);
  const relativistic_terms b =
      evaluate_relativistic(second.logits, first_mean, nan_input, second_term);
  assign_relativistic_gradient(first.grad, a.derivative, b.mean_derivative, nan_input);
  assign_relativistic_gradient(second.grad, b.derivative, a.mean_derivative, nan_input);
  return add_terms(a.mean_value, b.mean_value);
}

/// The discriminator and generator losses shared by every relativistic
/// average objective. Terms provides kind, real_term (the term of a real
/// relativistic logit in L_D) and fake_term.
template <class Terms>
struct relativistic_average_losses {
  /// Returns L_D and assigns its gradients with respect to both batches.
  template <std::floating_point T>
  static double discriminator_loss(std::type_identity_t<std::span<const T>> real_logits,
                                   std::type_identity_t<std::span<const T>> fake_logits,
                                   std::span<T> real_grad, std::span<T> fake_grad) {
    return relativistic_loss<T>(Terms::kind, {"real", real_logits, real_grad},
                                {"fake", fake_logits, fake_grad}, Terms::real_term,
                                Terms::fake_term);
  }

  /// Returns L_G, which is L_D with the batches exchanged, and assigns its
  /// gradients with respect to both batches.
  template <std::floating_point T>
  static double generator_loss(std::type_identity_t<std::span<const T>> real_logits,
                               std::type_identity_t<std::span<const T>> fake_logits,
                               std::span<T> real_grad, std::span<T> fake_grad) {
    return relativistic_loss<T>(Terms::kind, {"fake", fake_logits, fake_grad},
                                {"real", real_logits, real_grad}, Terms::real_term,
                                Terms::fake_term);
  }
};

/// Whether relativistic_average<Base> is defined.
template <class Base>
inline constexpr bool has_relativistic_average = false;
template <>
inline constexpr bool has_relativistic_average<non_saturating> = true;
template <>
inline constexpr bool has_relativistic_average<least_squares> = true;
template <>
inline constexpr bool has_relativistic_average<hinge> = true;

}  // namespace detail

/// The relativistic average version of the objective Base. Defined for
/// non_saturating, least_squares and hinge.
template <class Base>
struct relativistic_average {
  static_assert(detail::has_relativistic_average<Base>,
                "advgan: relativistic_average<Base> is defined for Base = non_saturating "
                "(RaSGAN), least_squares (RaLSGAN) and hinge (RaHingeGAN)");
};

/// RaSGAN: the terms softplus(-a) = -log sigmoid(a) for real and softplus(b)
/// = -log(1 - sigmoid(b)) for fake relativistic logits.
template <>
struct relativistic_average<non_saturating>
    : detail::relativistic_average_losses<relativistic_average<non_saturating>> {
  static constexpr const char* kind = "relativistic_average<non_saturating>";
  static detail::term_value real_term(double a) { return {math::softplus(-a), -math::sigmoid(-a)}; }
  static detail::term_value fake_term(double b) { return {math::softplus(b), math::sigmoid(b)}; }
};

/// RaLSGAN: the terms (a - 1)^2 for real and (b + 1)^2 for fake relativistic
/// logits.
template <>
struct relativistic_average<least_squares>
    : detail::relativistic_average_losses<relativistic_average<least_squares>> {
  static constexpr const char* kind = "relativistic_average<least_squares>";
  static detail::term_value real_term(double a) { return {(a - 1) * (a - 1), 2 * (a - 1)}; }
  static detail::term_value fake_term(double b) { return {(b + 1) * (b + 1), 2 * (b + 1)}; }
};

/// RaHingeGAN: the terms relu(1 - a) for real and relu(1 + b) for fake
/// relativistic logits, with derivative 0 at the hinge as PyTorch's relu.
template <>
struct relativistic_average<hinge>
    : detail::relativistic_average_losses<relativistic_average<hinge>> {
  static constexpr const char* kind = "relativistic_average<hinge>";
  static detail::term_value real_term(double a) {
    const double margin = 1 - a;
    return margin <= 0 ? detail::term_value{0.0, 0.0} : detail::term_value{margin, -1.0};
  }
  static detail::term_value fake_term(double b) {
    const double margin = 1 + b;
    return margin <= 0 ? detail::term_value{0.0, 0.0} : detail::term_value{margin, 1.0};
  }
};

}  // namespace advgan
