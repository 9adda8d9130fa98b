#pragma once
// The objective concept, and the loop that every adversarial loss shares.
//
// An objective turns the discriminator's logits on a real batch and a fake
// batch into a loss and the loss's gradient with respect to each logit. Each
// batch term is a mean over that batch, as PyTorch's default reduction, and
// the discriminator loss is the sum of its real and fake terms. Losses are
// computed in double whatever the logit type. Gradients are assigned (=),
// not accumulated.
//
// Infinite logits: every objective returns the limit where one exists. An
// undefined form inf - inf is reported as +inf, never NaN. It arises from a
// batch containing both +inf and -inf, or from a real and a fake term that
// are infinite with opposite signs. A finite-loss check then still catches
// it. NaN logits give a NaN loss.

#include <concepts>     // std::floating_point, std::same_as
#include <cstddef>      // std::size_t
#include <limits>       // std::numeric_limits
#include <span>         // std::span
#include <type_traits>  // std::type_identity_t

#include "advgan/core/error.hpp"
#include "advgan/core/finite.hpp"

namespace advgan {

namespace detail {

/// A sum of loss terms that resolves inf - inf to +inf instead of NaN.
class loss_sum {
 public:
  // The tests read the bits of `term`, so that they also hold under
  // -ffast-math, where std::isnan and comparisons with infinity fold away.
  void add(double term) {
    if (is_nan(term))
      has_nan_ = true;
    else if (is_positive_infinity(term))
      has_positive_infinity_ = true;
    else if (is_negative_infinity(term))
      has_negative_infinity_ = true;
    else
      finite_ += term;
  }

  double total() const {
    if (has_nan_) return std::numeric_limits<double>::quiet_NaN();
    if (has_positive_infinity_) return std::numeric_limits<double>::infinity();
    if (has_negative_infinity_) return -std::numeric_limits<double>::infinity();
    return finite_;
  }

 private:
  double finite_ = 0;
  bool has_nan_ = false;
  bool has_positive_infinity_ = false;
  bool has_negative_infinity_ = false;
};

/// The value and the derivative of one batch term at one logit.
struct term_value {
  double value;
  double derivative;
};

/// Returns the mean over the batch of term(logits[i]).value and sets
/// grad[i] = term(logits[i]).derivative / n. Throws argument_error for an
/// empty batch or a gradient span of another length.
template <class T, class Term>
double mean_term(const char* objective, const char* batch, std::span<const T> logits,
                 std::span<T> grad, Term term) {
  if (logits.empty())
    throw argument_error(concat(objective, ": the ", batch,
                                " batch is empty; a loss is a mean over at least one logit"));
  if (grad.size() != logits.size())
    throw argument_error(concat(objective, ": the ", batch, " gradient has ", grad.size(),
                                " values, expected one per logit (", logits.size(), ")"));
  const auto n = static_cast<double>(logits.size());
  loss_sum sum;
  for (std::size_t i = 0; i < logits.size(); ++i) {
    const term_value t = term(static_cast<double>(logits[i]));
    sum.add(t.value);
    grad[i] = static_cast<T>(t.derivative / n);
  }
  return sum.total() / n;
}

/// Returns real + fake with inf - inf resolved to +inf.
inline double add_terms(double real, double fake) {
  loss_sum sum;
  sum.add(real);
  sum.add(fake);
  return sum.total();
}

template <class Objective, class T>
concept objective_for_scalar = requires(std::span<const T> logits, std::span<T> grad) {
  { Objective::discriminator_loss(logits, logits, grad, grad) } -> std::same_as<double>;
  { Objective::generator_loss(logits, grad) } -> std::same_as<double>;
};

template <class Objective, class T>
concept relativistic_objective_for_scalar = requires(std::span<const T> logits, std::span<T> grad) {
  { Objective::discriminator_loss(logits, logits, grad, grad) } -> std::same_as<double>;
  { Objective::generator_loss(logits, logits, grad, grad) } -> std::same_as<double>;
};

}  // namespace detail

/// An adversarial objective usable with float and double logits:
/// - `Objective::discriminator_loss(real_logits, fake_logits, real_grad,
///   fake_grad)` returns the discriminator loss and assigns its gradient
///   with respect to each logit;
/// - `Objective::generator_loss(fake_logits, fake_grad)` does the same for
///   the generator loss.
/// Logits are std::span<const T>, gradients std::span<T> of the same length.
template <class Objective>
concept objective = detail::objective_for_scalar<Objective, float> &&
    detail::objective_for_scalar<Objective, double>;

/// An adversarial objective whose generator loss also depends on the real
/// logits, such as the relativistic average objectives: discriminator_loss
/// as in `objective`, and
/// `Objective::generator_loss(real_logits, fake_logits, real_grad,
/// fake_grad)`, which returns the generator loss and assigns its gradient
/// with respect to both logit sets.
template <class Objective>
concept relativistic_objective = detail::relativistic_objective_for_scalar<Objective, float> &&
    detail::relativistic_objective_for_scalar<Objective, double>;

}  // namespace advgan
