#pragma once
// adam<T> and adamw<T>: Adam with L2 weight decay added to the gradient, as
// torch.optim.Adam, and Adam with decoupled weight decay, as
// torch.optim.AdamW. Both optionally use AMSGrad.
//
// Each step follows PyTorch 1.13's single-tensor implementation, operation by
// operation in the parameter type, with the scalar factors (step size and
// bias corrections) computed in double as Python computes them:
//   t += 1
//   adamw only: p *= 1 - lr * weight_decay
//   adam only:  g += weight_decay * p
//   m = beta1 * m + (1 - beta1) * g
//   v = beta2 * v + (1 - beta2) * g * g
//   amsgrad:    v_max = max(v_max, v), and v_max replaces v below
//   p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

#include <algorithm>    // std::min
#include <cmath>        // std::pow, std::sqrt
#include <concepts>     // std::floating_point
#include <cstddef>      // std::size_t, std::ptrdiff_t
#include <cstdint>      // std::int64_t
#include <span>         // std::span
#include <type_traits>  // std::is_same_v
#include <vector>       // std::vector

#if defined(__SSE2__)
#include <emmintrin.h>  // _mm_sqrt_ps, _mm_sqrt_pd
#endif

#include "advgan/optim/optimizer.hpp"

namespace advgan {

/// Options of adam<T>, with torch.optim.Adam's defaults. Weight decay is
/// L2 regularization: weight_decay * p is added to the gradient.
struct adam_options {
  static constexpr const char* optimizer_name = "adam";
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0;
  bool amsgrad = false;
};

/// Options of adamw<T>, with torch.optim.AdamW's defaults. Weight decay is
/// decoupled: p is scaled by 1 - lr * weight_decay before the Adam update.
struct adamw_options {
  static constexpr const char* optimizer_name = "adamw";
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;
  bool amsgrad = false;
};

namespace detail {

/// Calls body(b) for b in [0, blocks), split across the OpenMP threads when
/// `parallel` is true.
template <class Body>
void for_each_block(std::ptrdiff_t blocks, bool parallel, Body&& body) {
#pragma omp parallel for schedule(static) if (parallel)
  for (std::ptrdiff_t b = 0; b < blocks; ++b) body(b);
}

/// The algorithm shared by adam and adamw. Options selects the kind of
/// weight decay.
template <std::floating_point T, class Options>
class adam_algorithm {
 public:
  using scalar = T;
  using options_type = Options;
  static constexpr bool decoupled_weight_decay = std::is_same_v<Options, adamw_options>;

  /// Allocates zeroed moments for `count` parameters. Throws argument_error
  /// for an option out of range.
  adam_algorithm(std::size_t count, const Options& options)
      : options_(options),
        exp_avg_(count, T(0)),
        exp_avg_sq_(count, T(0)),
        max_exp_avg_sq_(options.amsgrad ? count : 0, T(0)) {
    const char* name = Options::optimizer_name;
    check_learning_rate(name, options.lr);
    check_option(options.beta1 >= 0 && options.beta1 < 1, name, "beta1", options.beta1,
                 "a value in [0, 1)");
    check_option(options.beta2 >= 0 && options.beta2 < 1, name, "beta2", options.beta2,
                 "a value in [0, 1)");
    check_option(options.eps >= 0, name, "eps", options.eps, "a value >= 0");
    check_option(options.weight_decay >= 0, name, "weight_decay", options.weight_decay,
                 "a value >= 0");
  }

  /// Applies one update to params from grads. Both contain parameter_count()
  /// values.
  void step(std::span<T> params, std::span<const T> grads) {
    check_step_sizes(Options::optimizer_name, exp_avg_.size(), params, grads);
    ++step_;
    const auto t = static_cast<double>(step_);
    const double bias_correction1 = 1 - std::pow(options_.beta1, t);
    const double bias_correction2 = 1 - std::pow(options_.beta2, t);

    const update_constants k{
        .beta1 = static_cast<T>(options_.beta1),
        .beta2 = static_cast<T>(options_.beta2),
        .one_minus_beta1 = static_cast<T>(1 - options_.beta1),
        .one_minus_beta2 = static_cast<T>(1 - options_.beta2),
        .weight_decay = static_cast<T>(options_.weight_decay),
        .decay_factor = static_cast<T>(1 - options_.lr * options_.weight_decay),
        .eps = static_cast<T>(options_.eps),
        .negative_step_size = static_cast<T>(-(options_.lr / bias_correction1)),
        .bias_correction2_sqrt = static_cast<T>(std::sqrt(bias_correction2)),
    };
    const update_arrays a{params.data(), grads.data(), exp_avg_.data(), exp_avg_sq_.data(),
                          max_exp_avg_sq_.data()};
    const bool decay = options_.weight_decay != 0;
    const bool amsgrad = options_.amsgrad;

    // Fixed blocks, so each element goes through the same (vectorised or
    // scalar) code whatever the thread count, and the result never depends
    // on it.
    const std::size_t count = params.size();
    auto update_block_at = [&](std::ptrdiff_t b) {
      const std::size_t begin = static_cast<std::size_t>(b) * update_block;
      const std::size_t end = std::min(count, begin + update_block);
      if (decay && amsgrad)
        update_range<true, true>(a, k, begin, end);
      else if (decay)
        update_range<true, false>(a, k, begin, end);
      else if (amsgrad)
        update_range<false, true>(a, k, begin, end);
      else
        update_range<false, false>(a, k, begin, end);
    };
    const auto blocks = static_cast<std::ptrdiff_t>((count + update_block - 1) / update_block);
    for_each_block(blocks, static_cast<std::ptrdiff_t>(count) >= parallel_update_threshold,
                   update_block_at);
  }

  /// Calls visitor("step", int64&), then visitor(name, span) for "exp_avg",
  /// "exp_avg_sq" and, with amsgrad, "max_exp_avg_sq".
  template <class Visitor>
  void visit_state(Visitor&& visitor) {
    visitor("step", step_);
    visitor("exp_avg", std::span<T>(exp_avg_));
    visitor("exp_avg_sq", std::span<T>(exp_avg_sq_));
    if (options_.amsgrad) visitor("max_exp_avg_sq", std::span<T>(max_exp_avg_sq_));
  }

  double learning_rate() const { return options_.lr; }
  void set_learning_rate(double lr) {
    check_learning_rate(Options::optimizer_name, lr);
    options_.lr = lr;
  }

  const Options& options() const { return options_; }
  std::int64_t step_count() const { return step_; }
  std::size_t parameter_count() const { return exp_avg_.size(); }

 private:
  static constexpr std::size_t update_block = 4096;

  struct update_constants {
    T beta1;
    T beta2;
    T one_minus_beta1;
    T one_minus_beta2;
    T weight_decay;
    T decay_factor;
    T eps;
    T negative_step_size;
    T bias_correction2_sqrt;
  };
  struct update_arrays {
    T* p;
    const T* g;
    T* m;
    T* v;
    T* v_max;
  };

  /// Updates elements [begin, end), operation by operation as in the file
  /// header, in three loops over the block: the moments, the square roots
  /// and the parameter update. Decay and Amsgrad are template arguments, so
  /// the first and last loops have no branches and vectorise.
  template <bool Decay, bool Amsgrad>
  static void update_range(const update_arrays& a, const update_constants& k, std::size_t begin,
                           std::size_t end) {
    T root[update_block];  // second moment, then its square root
    T* p = a.p + begin;
    const T* g = a.g + begin;
    T* m = a.m + begin;
    T* v = a.v + begin;
    T* v_max = a.v_max + (Amsgrad ? begin : 0);
    const std::size_t count = end - begin;
#pragma omp simd
    for (std::size_t i = 0; i < count; ++i) {
      T grad = g[i];
      if constexpr (decoupled_weight_decay) {
        p[i] = p[i] * k.decay_factor;
      } else if constexpr (Decay) {
        grad = grad + k.weight_decay * p[i];
      }
      m[i] = m[i] * k.beta1 + k.one_minus_beta1 * grad;
      v[i] = v[i] * k.beta2 + k.one_minus_beta2 * grad * grad;
      T second_moment = v[i];
      if constexpr (Amsgrad) {
        v_max[i] = v_max[i] < v[i] ? v[i] : v_max[i];  // std::max(v_max[i], v[i])
        second_moment = v_max[i];
      }
      root[i] = second_moment;
    }
    square_roots(root, count);
#pragma omp simd
    for (std::size_t i = 0; i < count; ++i) {
      const T denom = root[i] / k.bias_correction2_sqrt + k.eps;
      p[i] = p[i] + k.negative_step_size * m[i] / denom;
    }
  }

  /// Replaces each of `count` values by its square root. Compilers keep
  /// std::sqrt scalar in a loop while it may set errno, so on x86 the SSE2
  /// square-root instructions do the work: they round exactly as std::sqrt
  /// does and differ only in leaving errno alone.
  static void square_roots(T* values, std::size_t count) {
    std::size_t i = 0;
#if defined(__SSE2__)
    if constexpr (std::is_same_v<T, float>) {
      for (; i + 4 <= count; i += 4)
        _mm_storeu_ps(values + i, _mm_sqrt_ps(_mm_loadu_ps(values + i)));
    } else if constexpr (std::is_same_v<T, double>) {
      for (; i + 2 <= count; i += 2)
        _mm_storeu_pd(values + i, _mm_sqrt_pd(_mm_loadu_pd(values + i)));
    }
#endif
    for (; i < count; ++i) values[i] = std::sqrt(values[i]);
  }

  Options options_;
  std::int64_t step_ = 0;
  std::vector<T> exp_avg_;
  std::vector<T> exp_avg_sq_;
  std::vector<T> max_exp_avg_sq_;  // empty unless amsgrad
};

}  // namespace detail

/// Adam with L2 weight decay, as torch.optim.Adam.
/// @tparam T  float or double, the parameter type
template <std::floating_point T>
class adam : public detail::adam_algorithm<T, adam_options> {
 public:
  explicit adam(std::size_t count, const adam_options& options = {})
      : detail::adam_algorithm<T, adam_options>(count, options) {}
};

/// Adam with decoupled weight decay, as torch.optim.AdamW.
/// @tparam T  float or double, the parameter type
template <std::floating_point T>
class adamw : public detail::adam_algorithm<T, adamw_options> {
 public:
  explicit adamw(std::size_t count, const adamw_options& options = {})
      : detail::adam_algorithm<T, adamw_options>(count, options) {}
};

}  // namespace advgan
