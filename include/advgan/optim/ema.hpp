#pragma once
// ema<T>: an exponential moving average of a model's parameters, the
// "generator EMA" that GANs sample from:
//   shadow = decay * shadow + (1 - decay) * params
// starting from a copy of the parameters.
//
// To sample with the average, swap it into the model and swap it back
// afterwards, which allocates nothing:
//   {
//     auto applied = g_ema.apply(params);  // params now hold the average
//     generate(...);
//   }                                      // params contain the trained values again
//
// NOTE: only parameters are averaged. Buffers such as batch-norm running
// statistics stay those of the trained model.

#include <algorithm>  // std::copy, std::swap_ranges
#include <concepts>   // std::floating_point
#include <cstddef>    // std::size_t
#include <cstdint>    // std::int64_t
#include <span>       // std::span
#include <vector>     // std::vector

#include "advgan/optim/optimizer.hpp"

namespace advgan {

/// Exponential moving average of a flat parameter array.
/// @tparam T  float or double, the parameter type
template <std::floating_point T>
class ema {
 public:
  using scalar = T;

  class applied_average;

  /// Copies params as the initial average. Throws argument_error unless
  /// decay is in [0, 1].
  ema(std::span<const T> params, double decay) : shadow_(params.begin(), params.end()) {
    check_decay(decay);
    decay_ = decay;
  }

  /// Updates the average with the current parameters (parameter_count()
  /// values).
  void update(std::span<const T> params) {
    check_size("update", params.size());
    ++step_;
    const T decay = static_cast<T>(decay_);
    const T one_minus_decay = static_cast<T>(1 - decay_);
    T* shadow = shadow_.data();
    const T* p = params.data();
    detail::for_each_element(shadow_.size(), [=](std::size_t i) {
      shadow[i] = shadow[i] * decay + one_minus_decay * p[i];
    });
  }

  /// Restarts the average from a copy of params, with the update count 0.
  void reset(std::span<const T> params) {
    check_size("reset", params.size());
    std::copy(params.begin(), params.end(), shadow_.begin());
    step_ = 0;
  }

  /// Exchanges the average and params, element by element. Calling it twice
  /// restores both. update() must not run in between, because the average
  /// then contains the trained parameters.
  void exchange(std::span<T> params) {
    check_size("exchange", params.size());
    exchange_unchecked(params);
  }

  /// Swaps the average into params until the returned guard is destroyed,
  /// which swaps it back, also when an exception leaves the scope.
  [[nodiscard]] applied_average apply(std::span<T> params) {
    return applied_average(*this, params);
  }

  /// Copies the average into params, for exporting the averaged model.
  void copy_to(std::span<T> params) const {
    check_size("copy_to", params.size());
    std::copy(shadow_.begin(), shadow_.end(), params.begin());
  }

  /// Calls visitor("step", int64&) with the update count and
  /// visitor("shadow", span) with the average.
  template <class Visitor>
  void visit_state(Visitor&& visitor) {
    visitor("step", step_);
    visitor("shadow", std::span<T>(shadow_));
  }

  std::span<const T> average() const { return shadow_; }
  double decay() const { return decay_; }
  void set_decay(double decay) {
    check_decay(decay);
    decay_ = decay;
  }
  std::int64_t update_count() const { return step_; }
  std::size_t parameter_count() const { return shadow_.size(); }

 private:
  friend class applied_average;

  void exchange_unchecked(std::span<T> params) noexcept {
    std::swap_ranges(shadow_.begin(), shadow_.end(), params.begin());
  }

  static void check_decay(double decay) {
    detail::check_option(decay >= 0 && decay <= 1, "ema", "decay", decay, "a value in [0, 1]");
  }

  void check_size(const char* function, std::size_t size) const {
    if (size != shadow_.size())
      throw argument_error(detail::concat("ema: ", function, "() got ", size,
                                          " parameters, expected ", shadow_.size()));
  }

  std::vector<T> shadow_;
  double decay_ = 0;
  std::int64_t step_ = 0;
};

/// A guard that keeps the average swapped into a parameter array and swaps
/// it back on destruction. Neither copyable nor movable, so exactly one swap back runs.
template <std::floating_point T>
class ema<T>::applied_average {
 public:
  applied_average(ema& average, std::span<T> params) : average_(average), params_(params) {
    average_.exchange(params_);
  }
  // The constructor checked the size, so swapping back cannot throw.
  ~applied_average() { average_.exchange_unchecked(params_); }

  applied_average(const applied_average&) = delete;
  applied_average& operator=(const applied_average&) = delete;

 private:
  ema& average_;
  std::span<T> params_;
};

}  // namespace advgan
