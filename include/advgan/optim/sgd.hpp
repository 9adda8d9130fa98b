#pragma once
// sgd<T>: stochastic gradient descent with momentum, dampening, Nesterov
// momentum and L2 weight decay, as torch.optim.SGD (PyTorch 1.13):
//   g += weight_decay * p
//   first step: buf = g, later steps: buf = momentum * buf + (1 - dampening) * g
//   g = nesterov ? g + momentum * buf : buf      (only when momentum != 0)
//   p -= lr * g

#include <concepts>  // std::floating_point
#include <cstddef>   // std::size_t
#include <cstdint>   // std::int64_t
#include <span>      // std::span
#include <vector>    // std::vector

#include "advgan/optim/optimizer.hpp"

namespace advgan {

/// Options of sgd<T>. torch.optim.SGD has no default learning rate, so lr
/// defaults to tf.keras.optimizers.SGD's 0.01.
struct sgd_options {
  double lr = 1e-2;
  double momentum = 0;
  double dampening = 0;
  double weight_decay = 0;
  bool nesterov = false;
};

/// Stochastic gradient descent, as torch.optim.SGD.
/// @tparam T  float or double, the parameter type
template <std::floating_point T>
class sgd {
 public:
  using scalar = T;
  using options_type = sgd_options;

  /// Allocates the momentum buffer for `count` parameters when momentum is
  /// not 0. Throws argument_error for an option out of range, and for
  /// Nesterov momentum without momentum or with dampening.
  explicit sgd(std::size_t count, const sgd_options& options = {})
      : options_(options), count_(count), momentum_buffer_(options.momentum != 0 ? count : 0) {
    detail::check_learning_rate("sgd", options.lr);
    detail::check_option(options.momentum >= 0, "sgd", "momentum", options.momentum,
                         "a value >= 0");
    detail::check_option(options.dampening >= 0 && options.dampening <= 1, "sgd", "dampening",
                         options.dampening, "a value in [0, 1]");
    detail::check_option(options.weight_decay >= 0, "sgd", "weight_decay", options.weight_decay,
                         "a value >= 0");
    if (options.nesterov && (options.momentum <= 0 || options.dampening != 0))
      throw argument_error(
          detail::concat("sgd: nesterov requires momentum > 0 and dampening = 0, got momentum ",
                         options.momentum, " and dampening ", options.dampening));
  }

  /// Applies one update to params from grads. Both contain parameter_count()
  /// values.
  void step(std::span<T> params, std::span<const T> grads) {
    detail::check_step_sizes("sgd", count_, params, grads);
    const bool first_step = step_ == 0;
    ++step_;

    const T negative_lr = static_cast<T>(-options_.lr);
    const T weight_decay = static_cast<T>(options_.weight_decay);
    const bool decay = options_.weight_decay != 0;
    const T momentum = static_cast<T>(options_.momentum);
    const bool use_momentum = options_.momentum != 0;
    const T one_minus_dampening = static_cast<T>(1 - options_.dampening);
    const bool nesterov = options_.nesterov;

    T* p = params.data();
    const T* g = grads.data();
    T* buf = momentum_buffer_.data();
    detail::for_each_element(count_, [=](std::size_t i) {
      T direction = g[i];
      if (decay) direction = direction + weight_decay * p[i];
      if (use_momentum) {
        buf[i] = first_step ? direction : buf[i] * momentum + one_minus_dampening * direction;
        direction = nesterov ? direction + momentum * buf[i] : buf[i];
      }
      p[i] = p[i] + negative_lr * direction;
    });
  }

  /// Calls visitor("step", int64&) and, when momentum is not 0,
  /// visitor("momentum_buffer", span). torch.optim.SGD keeps no step count,
  /// and marks the first step by a momentum buffer of None instead.
  template <class Visitor>
  void visit_state(Visitor&& visitor) {
    visitor("step", step_);
    if (options_.momentum != 0) visitor("momentum_buffer", std::span<T>(momentum_buffer_));
  }

  double learning_rate() const { return options_.lr; }
  void set_learning_rate(double lr) {
    detail::check_learning_rate("sgd", lr);
    options_.lr = lr;
  }

  const sgd_options& options() const { return options_; }
  std::int64_t step_count() const { return step_; }
  std::size_t parameter_count() const { return count_; }

 private:
  sgd_options options_;
  std::size_t count_;
  std::int64_t step_ = 0;
  std::vector<T> momentum_buffer_;  // empty when momentum is 0
};

}  // namespace advgan
