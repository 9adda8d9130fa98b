#pragma once
// Element-wise functions of a logit x, written so that no finite input
// overflows and infinite inputs give their limits instead of NaN. The
// objectives build on them, and tests check them one by one.
//
// They live in advgan::math because advgan::sigmoid already names the
// sigmoid layer.

#include <cmath>     // std::exp, std::log1p, std::fabs
#include <concepts>  // std::floating_point

#include "advgan/core/finite.hpp"

namespace advgan::math {

/// Returns 1 / (1 + exp(-x)), evaluating exp only at non-positive arguments
/// so that it never overflows. sigmoid(+inf) = 1 and sigmoid(-inf) = 0.
template <std::floating_point T>
T sigmoid(T x) {
  if (x >= 0) return T(1) / (T(1) + std::exp(-x));
  const T e = std::exp(x);
  return e / (T(1) + e);
}

/// Returns log(1 + exp(x)) as max(x, 0) + log1p(exp(-|x|)). softplus(+inf)
/// = +inf and softplus(-inf) = 0. Its derivative is sigmoid(x).
template <std::floating_point T>
T softplus(T x) {
  return (x > 0 ? x : T(0)) + std::log1p(std::exp(-std::fabs(x)));
}

/// Returns the binary cross-entropy of the logit x against the target y,
/// -[y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))], as PyTorch's
/// binary_cross_entropy_with_logits: max(x, 0) - x y + log1p(exp(-|x|)).
///
/// At infinite x that form is inf - inf, so the limit is returned instead:
/// 0 where the target matches (x = +inf with y = 1, x = -inf with y = 0),
/// and +inf for a target in [0, 1] that does not.
template <std::floating_point T>
T bce_with_logits(T x, T y) {
  if (advgan::detail::is_infinite(x)) {  // a bit test, which -ffast-math keeps
    if (x > 0) return y == 1 ? T(0) : (T(1) - y) * x;  // the limit of (1 - y) x
    return y == 0 ? T(0) : -y * x;                     // the limit of -y x
  }
  return (x > 0 ? x : T(0)) - x * y + std::log1p(std::exp(-std::fabs(x)));
}

/// Returns the derivative of bce_with_logits(x, y) with respect to x,
/// sigmoid(x) - y, written as (1 - y) sigmoid(x) - y sigmoid(-x) so that it
/// keeps full relative precision where sigmoid(x) rounds to y (x = 20,
/// y = 1 gives -2.06e-9, not 0). It is 1 - y at x = +inf and -y at x = -inf.
template <std::floating_point T>
T bce_with_logits_gradient(T x, T y) {
  return (T(1) - y) * sigmoid(x) - y * sigmoid(-x);
}

}  // namespace advgan::math
