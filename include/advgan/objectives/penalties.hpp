#pragma once
// Gradient penalties on a critic's input gradient, with exact parameter
// gradients:
//   gradient_penalty<Lambda, Target>  WGAN-GP (Gulrajani et al. 2017):
//       lambda * mean_n (||g_n|| - target)^2 at x̂_n = e_n real_n + (1 - e_n) fake_n,
//       one mix factor e_n ~ U[0, 1) per sample;
//   r1_penalty<Gamma, Interval>  gamma / 2 * mean_n ||g_n||^2 at the real batch
//       (Mescheder et al. 2018), optionally lazy (StyleGAN2);
//   r2_penalty<Gamma, Interval>  the same at the fake batch.
// Here g_n = dD(x_n)/dx_n is the input gradient of sample n and ||g_n|| its
// L2 norm over all of (C, H, W), not per channel or per pixel.
//
// The parameter gradient of a penalty is a second derivative. It is computed
// by reverse-over-forward differentiation, in four passes:
//   1. forward at the penalty points and backward with dy = 1 per sample,
//      which gives g (the critic's parameter gradients are left alone);
//   2. u_n = dP/dg_n, held constant;
//   3. a tangent pass along u, whose output tangent is y'_n = g_n . u_n;
//   4. the tangent pass's backward with dy = 0 and dy' = 1, which adds
//      d(sum_n g_n . u_n)/dtheta = dP/dtheta to the parameter gradients.
// The derivative of ||g|| is g / ||g||, taken as 0 where g = 0, so a critic
// whose input gradient vanishes gets a finite penalty gradient, never NaN.
//
// Every layer of the critic must be a twice_differentiable_layer, and none
// may mix samples: naming a penalty for a critic with batch norm or with a
// layer without a tangent pass fails to compile, and the message names the
// layer.

#include <cmath>        // std::sqrt
#include <concepts>     // std::convertible_to
#include <cstddef>      // std::size_t
#include <ratio>        // std::ratio
#include <span>         // std::span
#include <type_traits>  // std::tuple_element_t
#include <utility>      // std::index_sequence
#include <vector>       // std::vector

#include "advgan/core/error.hpp"
#include "advgan/core/philox.hpp"
#include "advgan/layers/batch_norm.hpp"
#include "advgan/layers/minibatch_discrimination.hpp"
#include "advgan/layers/tangent.hpp"

namespace advgan {

/// The result of one penalty evaluation.
struct penalty_record {
  /// The penalty, before any lazy-regularization scale.
  double value = 0;
  /// The mean over samples of ||g_n||, the critic's input-gradient norm.
  double mean_gradient_norm = 0;
};

/// Layer specs whose output for one sample depends on the other samples of
/// the batch. A per-sample gradient penalty is not defined through them.
template <class Spec>
inline constexpr bool mixes_samples = false;
template <class Momentum, class Epsilon>
inline constexpr bool mixes_samples<batch_norm_with<Momentum, Epsilon>> = true;

namespace detail {

/// Fails to compile for a critic layer that mixes samples; the template
/// arguments name the layer's index and its spec.
template <std::size_t LayerIndex, class Layer, bool Valid>
struct check_penalty_without_batch_norm {
  static_assert(Valid,
                "advgan: a gradient penalty needs each sample's own input gradient, but batch "
                "norm makes each sample's gradient depend on the batch; use layer_norm or "
                "instance_norm in the critic; see LayerIndex and Layer");
  static constexpr bool value = Valid;
};

/// Fails to compile for minibatch_discrimination in the critic; the
/// template arguments name the layer's index and its spec.
template <std::size_t LayerIndex, class Layer, bool Valid>
struct check_penalty_without_minibatch_discrimination {
  static_assert(Valid,
                "advgan: a gradient penalty differentiates the critic twice, but "
                "minibatch_discrimination is not twice differentiable (its L1 distances |t| have "
                "no second derivative at t = 0) and makes each sample's gradient depend on the "
                "batch; remove it from a critic that carries a gradient penalty, or keep it and "
                "bound the critic with spectral_norm instead of a penalty; see LayerIndex and "
                "Layer");
  static constexpr bool value = Valid;
};

/// Fails to compile when the critic does not output one value per sample.
template <class CriticOutput, bool Valid>
struct check_penalty_critic_output {
  static_assert(Valid,
                "advgan: a gradient penalty differentiates one critic value per sample; end the "
                "critic with dense<1> or a convolution to 1x1x1; see CriticOutput");
  static constexpr bool value = Valid;
};

/// Checks one critic layer: batch norm and minibatch_discrimination get
/// their own messages, and any other layer without a tangent pass gets the
/// generic one.
template <class Model, std::size_t Index>
constexpr bool check_penalty_layer() {
  using spec = typename Model::spec::template layer_spec<Index>;
  using bound = std::tuple_element_t<Index, typename Model::layer_tuple>;
  constexpr bool mixes = mixes_samples<spec>;
  constexpr bool discriminates = is_minibatch_discrimination<spec>;
  // A layer with its own message above skips the generic one.
  constexpr bool has_tangent_or_own_message =
      mixes || discriminates || twice_differentiable_layer<bound>;
  constexpr bool without_batch_norm = check_penalty_without_batch_norm<Index, spec, !mixes>::value;
  constexpr bool without_discrimination =
      check_penalty_without_minibatch_discrimination<Index, spec, !discriminates>::value;
  return without_batch_norm && without_discrimination &&
         check_twice_differentiable<Index, spec, has_tangent_or_own_message>::value;
}

/// True when the critic model can carry a gradient penalty; otherwise the
/// checks above fail to compile, naming the first offending layer.
template <class Model>
constexpr bool check_penalisable_critic() {
  constexpr bool one_output = Model::output_shape::size == 1;
  return check_penalty_critic_output<typename Model::output_shape, one_output>::value&&[]<
      std::size_t... I>(std::index_sequence<I...>) {
    return (check_penalty_layer<Model, I>() && ...);
  }
  (std::make_index_sequence<Model::layer_count>{});
}

template <class Ratio>
constexpr double ratio_value() {
  return static_cast<double>(Ratio::num) / static_cast<double>(Ratio::den);
}

/// Runs the four passes described at the top of this file at `points` and
/// returns the penalty. `term(g, u, norm_squared)` gets sample n's input
/// gradient g (as double) and ||g||^2, returns that sample's share of the
/// penalty and writes d(share)/dg into u. `scale` multiplies the parameter
/// gradient only.
template <class Model, class Term>
penalty_record input_gradient_penalty(Model& critic, const typename Model::tensor& points,
                                      double scale, Term term) {
  static_assert(check_penalisable_critic<Model>());
  using backend = typename Model::backend;
  using scalar = typename Model::scalar;
  using tensor = typename Model::tensor;
  using in = typename Model::input_shape;

  // 1. g = dD/dx per sample, without touching the parameter gradients.
  critic.forward(points);
  const std::size_t batch = backend::shape(points)[0];
  tensor ones;
  backend::resize(ones, batch, 1, 1, 1);
  backend::fill(backend::data(ones), batch, scalar(1));
  tensor gradient;
  critic.backward(ones, &gradient, backward_context{false});

  // 2. u = dP/dg, and the penalty itself.
  tensor direction;
  backend::resize(direction, backend::shape(points));
  std::vector<double> g(in::size);
  std::vector<double> u(in::size);
  penalty_record record;
  for (std::size_t n = 0; n < batch; ++n) {
    const scalar* gn = backend::data(gradient) + n * in::size;
    for (std::size_t i = 0; i < in::size; ++i) g[i] = gn[i];
    double norm_squared = 0;
    for (double v : g) norm_squared += v * v;
    record.mean_gradient_norm += std::sqrt(norm_squared) / static_cast<double>(batch);
    record.value += term(std::span<const double>(g), std::span<double>(u), norm_squared);
    scalar* un = backend::data(direction) + n * in::size;
    for (std::size_t i = 0; i < in::size; ++i) un[i] = static_cast<scalar>(u[i]);
  }

  // 3-4. The tangent pass along u and its backward with dy = 0, dy' = scale.
  critic.tangent_forward(direction);
  tensor zeros;
  backend::resize(zeros, batch, 1, 1, 1);
  backend::fill(backend::data(zeros), batch, scalar(0));
  backend::fill(backend::data(ones), batch, static_cast<scalar>(scale));
  critic.tangent_backward(zeros, ones, nullptr, nullptr, backward_context{true});
  return record;
}

/// Throws unless `real` and `fake` are batches of the same shape.
template <class Backend>
void check_same_batch(const char* penalty, const typename Backend::tensor& real,
                      const typename Backend::tensor& fake) {
  if (Backend::shape(real) != Backend::shape(fake))
    throw shape_error(concat(penalty, ": fake batch"), to_string(Backend::shape(real)),
                      to_string(Backend::shape(fake)));
}

}  // namespace detail

/// Writes x̂_n = mix[n] * real_n + (1 - mix[n]) * fake_n into `out`: one mix
/// factor per sample, applied to all of its (C, H, W) values.
template <class Backend>
void interpolate_samples(const typename Backend::tensor& real, const typename Backend::tensor& fake,
                         std::span<const double> mix, typename Backend::tensor& out) {
  detail::check_same_batch<Backend>("interpolate_samples", real, fake);
  const extents e = Backend::shape(real);
  if (mix.size() != e[0])
    throw argument_error(detail::concat("interpolate_samples: ", mix.size(),
                                        " mix factors for a batch of ", e[0],
                                        "; expected one per sample"));
  Backend::resize(out, e);
  const std::size_t size = e[1] * e[2] * e[3];
  const auto* a = Backend::data(real);
  const auto* b = Backend::data(fake);
  auto* x = Backend::data(out);
  for (std::size_t n = 0; n < e[0]; ++n)
    for (std::size_t i = n * size; i < (n + 1) * size; ++i)
      x[i] = static_cast<typename Backend::scalar>(mix[n] * a[i] + (1 - mix[n]) * b[i]);
}

/// The WGAN-GP penalty lambda * mean_n (||g_n|| - target)^2 at random
/// interpolates of real and fake samples. Lambda and Target are std::ratio;
/// the defaults are the paper's 10 and 1.
template <class Lambda = std::ratio<10>, class Target = std::ratio<1>>
struct gradient_penalty {
  static_assert(Lambda::num >= 0, "advgan: gradient_penalty weight Lambda must not be negative");
  static_assert(Target::num >= 0, "advgan: gradient_penalty Target norm must not be negative");
  static constexpr const char* kind = "gradient_penalty";
  static constexpr double lambda = detail::ratio_value<Lambda>();
  static constexpr double target = detail::ratio_value<Target>();
  /// Applied at every critic step.
  static constexpr std::size_t interval = 1;

  /// Returns the penalty at the given points and adds scale * its parameter
  /// gradient to critic.gradients().
  template <class Model>
  static penalty_record at(Model& critic, const typename Model::tensor& points,
                           double scale = 1.0) {
    const double batch = static_cast<double>(Model::backend::shape(points)[0]);
    return detail::input_gradient_penalty(
        critic, points, scale,
        [batch](std::span<const double> g, std::span<double> u, double norm_squared) {
          const double norm = std::sqrt(norm_squared);
          // d(norm)/dg = g / norm, taken as 0 at g = 0.
          const double factor = norm > 0 ? 2 * lambda * (norm - target) / (norm * batch) : 0.0;
          for (std::size_t i = 0; i < g.size(); ++i) u[i] = factor * g[i];
          return lambda * (norm - target) * (norm - target) / batch;
        });
  }

  /// Draws one mix factor per sample from `rng`, in sample order, and
  /// returns at(critic, interpolates, scale).
  template <class Model>
  static penalty_record apply(Model& critic, const typename Model::tensor& real,
                              const typename Model::tensor& fake, philox& rng, double scale = 1.0) {
    using backend = typename Model::backend;
    detail::check_same_batch<backend>(kind, real, fake);
    std::vector<double> mix(backend::shape(real)[0]);
    for (double& e : mix) e = rng.uniform();
    typename Model::tensor points;
    interpolate_samples<backend>(real, fake, mix, points);
    return at(critic, points, scale);
  }
};

namespace detail {

/// gamma / 2 * mean_n ||g_n||^2 at the given points.
template <class Gamma, class Model>
penalty_record squared_gradient_penalty(Model& critic, const typename Model::tensor& points,
                                        double scale) {
  constexpr double gamma = ratio_value<Gamma>();
  const double batch = static_cast<double>(Model::backend::shape(points)[0]);
  return input_gradient_penalty(
      critic, points, scale,
      [batch](std::span<const double> g, std::span<double> u, double norm_squared) {
        for (std::size_t i = 0; i < g.size(); ++i) u[i] = gamma * g[i] / batch;
        return gamma / 2 * norm_squared / batch;
      });
}

}  // namespace detail

/// The R1 penalty gamma / 2 * mean_n ||g_n||^2 on real samples. With
/// Interval = k > 1 it is lazy: a trainer applies it every k critic steps
/// with its gradient scaled by k, as StyleGAN2 does.
template <class Gamma = std::ratio<10>, std::size_t Interval = 1>
struct r1_penalty {
  static_assert(Gamma::num >= 0, "advgan: r1_penalty weight Gamma must not be negative");
  static_assert(Interval > 0, "advgan: r1_penalty Interval must be at least 1");
  static constexpr const char* kind = "r1_penalty";
  static constexpr double gamma = detail::ratio_value<Gamma>();
  static constexpr std::size_t interval = Interval;

  /// Returns the penalty at the given points and adds scale * its parameter
  /// gradient to critic.gradients().
  template <class Model>
  static penalty_record at(Model& critic, const typename Model::tensor& points,
                           double scale = 1.0) {
    return detail::squared_gradient_penalty<Gamma>(critic, points, scale);
  }

  /// Returns at(critic, real, scale); `fake` and `rng` are unused.
  template <class Model>
  static penalty_record apply(Model& critic, const typename Model::tensor& real,
                              const typename Model::tensor& fake, philox&, double scale = 1.0) {
    detail::check_same_batch<typename Model::backend>(kind, real, fake);
    return at(critic, real, scale);
  }
};

/// The R2 penalty: R1's form on fake samples.
template <class Gamma = std::ratio<10>, std::size_t Interval = 1>
struct r2_penalty {
  static_assert(Gamma::num >= 0, "advgan: r2_penalty weight Gamma must not be negative");
  static_assert(Interval > 0, "advgan: r2_penalty Interval must be at least 1");
  static constexpr const char* kind = "r2_penalty";
  static constexpr double gamma = detail::ratio_value<Gamma>();
  static constexpr std::size_t interval = Interval;

  template <class Model>
  static penalty_record at(Model& critic, const typename Model::tensor& points,
                           double scale = 1.0) {
    return detail::squared_gradient_penalty<Gamma>(critic, points, scale);
  }

  /// Returns at(critic, fake, scale); `real` and `rng` are unused.
  template <class Model>
  static penalty_record apply(Model& critic, const typename Model::tensor& real,
                              const typename Model::tensor& fake, philox&, double scale = 1.0) {
    detail::check_same_batch<typename Model::backend>(kind, real, fake);
    return at(critic, fake, scale);
  }
};

/// A penalty type usable by gan_trainer: a kind, an interval in critic
/// steps, and static apply(critic, real, fake, rng, scale) returning a
/// penalty_record, as the penalties above provide.
template <class Penalty>
concept penalty = requires {
  { Penalty::kind } -> std::convertible_to<const char*>;
  { Penalty::interval } -> std::convertible_to<std::size_t>;
  requires Penalty::interval >
  0;
};

}  // namespace advgan
