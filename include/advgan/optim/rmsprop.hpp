#pragma once
// rmsprop<T>: RMSprop with optional momentum, centering and L2 weight decay,
// as torch.optim.RMSprop (PyTorch 1.13), where eps is added outside the
// square root:
//   g += weight_decay * p
//   s = alpha * s + (1 - alpha) * g * g
//   centered: a = alpha * a + (1 - alpha) * g, and avg = sqrt(s - a * a) + eps
//   otherwise avg = sqrt(s) + eps
//   momentum > 0: buf = momentum * buf + g / avg, p -= lr * buf
//   otherwise p -= lr * g / avg

#include <cmath>     // std::sqrt
#include <concepts>  // std::floating_point
#include <cstddef>   // std::size_t
#include <cstdint>   // std::int64_t
#include <span>      // std::span
#include <vector>    // std::vector

#include "advgan/optim/optimizer.hpp"

namespace advgan {

/// Options of rmsprop<T>, with torch.optim.RMSprop's defaults.
struct rmsprop_options {
  double lr = 1e-2;
  double alpha = 0.99;
  double eps = 1e-8;
  double weight_decay = 0;
  double momentum = 0;
  bool centered = false;
};

/// RMSprop, as torch.optim.RMSprop.
/// @tparam T  float or double, the parameter type
template <std::floating_point T>
class rmsprop {
 public:
  using scalar = T;
  using options_type = rmsprop_options;

  /// Allocates the zeroed running averages for `count` parameters: the
  /// gradient average only when centered, the momentum buffer only when
  /// momentum > 0. Throws argument_error for an option out of range.
  explicit rmsprop(std::size_t count, const rmsprop_options& options = {})
      : options_(options),
        square_avg_(count, T(0)),
        momentum_buffer_(options.momentum > 0 ? count : 0, T(0)),
        grad_avg_(options.centered ? count : 0, T(0)) {
    detail::check_learning_rate("rmsprop", options.lr);
    // torch.optim.RMSprop accepts any alpha >= 0, but above 1 the average
    // diverges.
    detail::check_option(options.alpha >= 0 && options.alpha <= 1, "rmsprop", "alpha",
                         options.alpha, "a value in [0, 1]");
    detail::check_option(options.eps >= 0, "rmsprop", "eps", options.eps, "a value >= 0");
    detail::check_option(options.weight_decay >= 0, "rmsprop", "weight_decay", options.weight_decay,
                         "a value >= 0");
    detail::check_option(options.momentum >= 0, "rmsprop", "momentum", options.momentum,
                         "a value >= 0");
  }

  /// Applies one update to params from grads. Both contain parameter_count()
  /// values.
  void step(std::span<T> params, std::span<const T> grads) {
    detail::check_step_sizes("rmsprop", square_avg_.size(), params, grads);
    ++step_;

    const T negative_lr = static_cast<T>(-options_.lr);
    const T alpha = static_cast<T>(options_.alpha);
    const T one_minus_alpha = static_cast<T>(1 - options_.alpha);
    const T eps = static_cast<T>(options_.eps);
    const T weight_decay = static_cast<T>(options_.weight_decay);
    const bool decay = options_.weight_decay != 0;
    const T momentum = static_cast<T>(options_.momentum);
    const bool use_momentum = options_.momentum > 0;
    const bool centered = options_.centered;

    T* p = params.data();
    const T* g = grads.data();
    T* square_avg = square_avg_.data();
    T* buf = momentum_buffer_.data();
    T* grad_avg = grad_avg_.data();
    detail::for_each_element(params.size(), [=](std::size_t i) {
      T grad = g[i];
      if (decay) grad = grad + weight_decay * p[i];
      square_avg[i] = square_avg[i] * alpha + one_minus_alpha * grad * grad;
      T avg;
      if (centered) {
        grad_avg[i] = grad_avg[i] * alpha + one_minus_alpha * grad;
        avg = std::sqrt(square_avg[i] + T(-1) * grad_avg[i] * grad_avg[i]);
      } else {
        avg = std::sqrt(square_avg[i]);
      }
      avg = avg + eps;
      if (use_momentum) {
        buf[i] = buf[i] * momentum + grad / avg;
        p[i] = p[i] + negative_lr * buf[i];
      } else {
        p[i] = p[i] + negative_lr * grad / avg;
      }
    });
  }

  /// Calls visitor("step", int64&), visitor("square_avg", span), then
  /// "momentum_buffer" when momentum > 0 and "grad_avg" when centered.
  template <class Visitor>
  void visit_state(Visitor&& visitor) {
    visitor("step", step_);
    visitor("square_avg", std::span<T>(square_avg_));
    if (options_.momentum > 0) visitor("momentum_buffer", std::span<T>(momentum_buffer_));
    if (options_.centered) visitor("grad_avg", std::span<T>(grad_avg_));
  }

  double learning_rate() const { return options_.lr; }
  void set_learning_rate(double lr) {
    detail::check_learning_rate("rmsprop", lr);
    options_.lr = lr;
  }

  const rmsprop_options& options() const { return options_; }
  std::int64_t step_count() const { return step_; }
  std::size_t parameter_count() const { return square_avg_.size(); }

 private:
  rmsprop_options options_;
  std::int64_t step_ = 0;
  std::vector<T> square_avg_;
  std::vector<T> momentum_buffer_;  // empty unless momentum > 0
  std::vector<T> grad_avg_;         // empty unless centered
};

}  // namespace advgan
