#pragma once
// The optimizer concept and what every optimizer shares: option checks and
// the element loop.
//
// An optimizer updates one flat parameter array from a gradient array of the
// same length, which is how model<Spec, Backend> stores a whole model
// (parameters() and gradients(), parameter_count values each). It allocates
// its state in the constructor, given the parameter count, and step() never
// allocates.

#include <concepts>  // std::floating_point, std::convertible_to
#include <cstddef>   // std::size_t, std::ptrdiff_t
#include <cstdint>   // std::int64_t
#include <span>      // std::span

#include "advgan/core/error.hpp"

namespace advgan {

namespace detail {

/// A visitor that accepts exactly what visit_state passes, so that the
/// optimizer concept can check visit_state.
template <class T>
struct state_visitor_archetype {
  void operator()(const char* name, std::span<T> values) const;
  void operator()(const char* name, std::int64_t& counter) const;
};

/// Throws argument_error naming the optimizer, the option, its value and
/// the valid range when `valid` is false.
inline void check_option(bool valid, const char* optimizer, const char* option, double value,
                         const char* valid_range) {
  if (!valid)
    throw argument_error(
        concat(optimizer, ": invalid ", option, " ", value, ", expected ", valid_range));
}

inline void check_learning_rate(const char* optimizer, double lr) {
  check_option(lr >= 0, optimizer, "lr", lr, "a value >= 0");
}

/// Throws argument_error unless params and grads both contain `count` values.
template <class T>
void check_step_sizes(const char* optimizer, std::size_t count, std::span<T> params,
                      std::span<const T> grads) {
  if (params.size() != count || grads.size() != count)
    throw argument_error(concat(optimizer, ": step() got ", params.size(), " parameters and ",
                                grads.size(), " gradients, expected ", count,
                                " of each (the count the optimizer was built for)"));
}

/// Element count above which an update loop is split across OpenMP threads,
/// because below it starting the threads costs more than the loop.
/// NOTE: an estimate, not measured.
inline constexpr std::ptrdiff_t parallel_update_threshold = 1 << 15;

/// Calls body(i) for every i in [0, count). Iterations must be independent.
/// Each element is computed by the same arithmetic whichever thread runs it,
/// so results do not depend on the thread count.
template <class Body>
void for_each_element(std::size_t count, Body&& body) {
  const auto n = static_cast<std::ptrdiff_t>(count);
#pragma omp parallel for schedule(static) if (n >= parallel_update_threshold)
  for (std::ptrdiff_t i = 0; i < n; ++i) body(static_cast<std::size_t>(i));
}

}  // namespace detail

/// An optimizer for parameters of type `Optimizer::scalar`:
/// - `step(params, grads)` updates params (=) from grads, both spans of
///   `parameter_count()` values;
/// - `visit_state(visitor)` calls visitor(name, std::span<scalar>) for each
///   state array and visitor(name, std::int64_t&) for each counter, under
///   PyTorch's state_dict names, so a checkpoint can save and restore them;
/// - `learning_rate()` and `set_learning_rate(lr)` serve schedules and TTUR.
template <class Optimizer>
concept optimizer = std::floating_point<typename Optimizer::scalar> &&
    requires(Optimizer& o, std::span<typename Optimizer::scalar> params,
             std::span<const typename Optimizer::scalar> grads,
             detail::state_visitor_archetype<typename Optimizer::scalar> visitor, double lr) {
  o.step(params, grads);
  o.visit_state(visitor);
  { o.learning_rate() } -> std::convertible_to<double>;
  o.set_learning_rate(lr);
  { o.step_count() } -> std::same_as<std::int64_t>;
  { o.parameter_count() } -> std::same_as<std::size_t>;
};

}  // namespace advgan
