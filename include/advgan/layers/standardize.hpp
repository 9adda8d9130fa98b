#pragma once
// The layer that layer_norm and instance_norm share: each group of M
// consecutive values in the NCHW layout is standardised on its own,
//   xhat = (x - mean) * s,  s = 1 / sqrt(var + eps),
// with the biased variance, then scaled and shifted by an optional affine
// transform y = gamma * xhat + beta. A group is one sample (layer_norm) or
// one channel of one sample (instance_norm). The policy type selects which,
// and how the affine parameters are indexed.
//
// Within a group the Jacobian of the standardisation is symmetric,
//   J v = s * (v - mean(v) - xhat * mean(xhat * v)),
// so one function serves backward (dx = J g) and the tangent pass
// (xhat' = J x'). The tangent pass's backward also needs the derivative of
// J x' with respect to x; with, per group, b = mean(xhat * x'),
// c = mean(g'), e = mean(g' * xhat) and h = mean(g' * xhat'), where g' is
// the gradient reaching xhat', it is
//   d<g', J x'>/dx = -s * (h * xhat + e * xhat') - s * b * J g'.
// (From d xhat = J dx, ds = -s^2 mean(xhat dx) and xhat' = s (x' - mean(x') - xhat b).)

#include <algorithm>  // std::max
#include <array>      // std::array
#include <cmath>      // std::sqrt
#include <cstddef>    // std::size_t

#include "advgan/layers/layer.hpp"

namespace advgan::detail {

/// Standardisation over groups with an optional affine transform. Policy
/// provides kind, group_size, affine_size, affine_index(i) for the i-th
/// value of a sample, and parameter_dims.
template <class Policy, bool Affine, class Epsilon, class InputShape, class Backend>
class standardize_layer {
 public:
  using backend = Backend;
  using scalar = typename Backend::scalar;
  using tensor = typename Backend::tensor;
  using input_shape = InputShape;
  using output_shape = InputShape;

  static constexpr std::size_t group_size = Policy::group_size;
  static constexpr std::size_t affine_size = Policy::affine_size;
  static constexpr double epsilon = static_cast<double>(Epsilon::num) / Epsilon::den;
  static constexpr std::array<parameter_spec, Affine ? 2 : 0> parameters = [] {
    std::array<parameter_spec, Affine ? 2 : 0> specs{};
    if constexpr (Affine) {
      specs[0] = {"weight", Policy::parameter_dims, Policy::parameter_rank};
      specs[1] = {"bias", Policy::parameter_dims, Policy::parameter_rank};
    }
    return specs;
  }();

  void bind(scalar* values, scalar* gradients) {
    if constexpr (Affine) {
      weight_ = values;
      bias_ = values + affine_size;
      weight_grad_ = gradients;
      bias_grad_ = gradients + affine_size;
    }
  }

  /// Scale one and shift zero, as PyTorch; the DCGAN scheme draws the scale
  /// from normal(1, 0.02) as it does for batch norm.
  void reset_parameters(philox& rng, init_scheme scheme) {
    if constexpr (Affine) {
      if (scheme == init_scheme::dcgan)
        Backend::fill_normal(weight_, affine_size, rng, 1.0, 0.02);
      else
        Backend::fill(weight_, affine_size, scalar(1));
      Backend::fill(bias_, affine_size, scalar(0));
    }
  }

  /// Computes the same in training and evaluation mode, because there are
  /// no running statistics.
  void forward(const tensor& x, tensor& y, const forward_context&) {
    detail::expect_sample_shape<InputShape, Backend>(Policy::kind, x);
    batch_ = Backend::shape(x)[0];
    Backend::resize(y, Backend::shape(x));
    Backend::resize(xhat_, Backend::shape(x));
    Backend::resize(inverse_std_, 1, 1, 1, groups());
    const scalar* in = Backend::data(x);
    scalar* xhat = Backend::data(xhat_);
    scalar* inverse_std = Backend::data(inverse_std_);
    Backend::parallel_for(
        groups(),
        [=](std::size_t g) {
          const scalar* v = in + g * group_size;
          double mean = 0;
          for (std::size_t i = 0; i < group_size; ++i) mean += v[i];
          mean /= static_cast<double>(group_size);
          // A second pass, so the variance does not lose digits to cancellation.
          double squares = 0;
          for (std::size_t i = 0; i < group_size; ++i) squares += (v[i] - mean) * (v[i] - mean);
          const double s = 1.0 / std::sqrt(squares / static_cast<double>(group_size) + epsilon);
          inverse_std[g] = static_cast<scalar>(s);
          for (std::size_t i = 0; i < group_size; ++i)
            xhat[g * group_size + i] = static_cast<scalar>((v[i] - mean) * s);
        },
        grain());
    apply_affine(xhat, Backend::data(y), true);
  }

  /// dgamma += sum(dy * xhat), dbeta += sum(dy) and dx = J (gamma * dy).
  void backward(const tensor& dy, tensor* dx, const backward_context& context) {
    if (context.parameter_gradients) accumulate_affine(Backend::data(dy), Backend::data(xhat_));
    if (dx == nullptr) return;
    Backend::resize(*dx, Backend::shape(dy));
    const scalar* g = scaled(Backend::data(dy), scaled_grad_);
    apply_jacobian(g, Backend::data(*dx));
  }

  /// xhat' = J x', cached with b = mean(xhat * x') per group; y' = gamma * xhat'.
  void tangent_forward(const tensor& x_tangent, tensor& y_tangent) {
    detail::expect_sample_shape<InputShape, Backend>(Policy::kind, x_tangent);
    Backend::resize(xhat_tangent_, Backend::shape(x_tangent));
    Backend::resize(tangent_projection_, 1, 1, 1, groups());
    const scalar* in = Backend::data(x_tangent);
    const scalar* xhat = Backend::data(xhat_);
    scalar* projection = Backend::data(tangent_projection_);
    Backend::parallel_for(
        groups(),
        [=](std::size_t g) {
          double total = 0;
          for (std::size_t i = 0; i < group_size; ++i)
            total += static_cast<double>(xhat[g * group_size + i]) * in[g * group_size + i];
          projection[g] = static_cast<scalar>(total / static_cast<double>(group_size));
        },
        grain());
    apply_jacobian(in, Backend::data(xhat_tangent_));
    Backend::resize(y_tangent, Backend::shape(x_tangent));
    apply_affine(Backend::data(xhat_tangent_), Backend::data(y_tangent), false);
  }

  /// dgamma += sum(dy * xhat + dy' * xhat'), dbeta += sum(dy); with
  /// g = gamma * dy and g' = gamma * dy': dx' = J g' and
  /// dx = J g - s * (h * xhat + e * xhat') - s * b * J g' (see the top of this file).
  void tangent_backward(const tensor& dy, const tensor& dy_tangent, tensor* dx, tensor* dx_tangent,
                        const backward_context& context) {
    if (context.parameter_gradients) {
      accumulate_affine(Backend::data(dy), Backend::data(xhat_));
      accumulate_affine_weight(Backend::data(dy_tangent), Backend::data(xhat_tangent_));
    }
    if (dx == nullptr && dx_tangent == nullptr) return;
    const scalar* g_tangent = scaled(Backend::data(dy_tangent), scaled_tangent_grad_);
    Backend::resize(jacobian_tangent_grad_, Backend::shape(dy));
    scalar* j_tangent = Backend::data(jacobian_tangent_grad_);
    apply_jacobian(g_tangent, j_tangent);
    if (dx_tangent != nullptr) {
      Backend::resize(*dx_tangent, Backend::shape(dy));
      Backend::copy(j_tangent, Backend::size(dy), Backend::data(*dx_tangent));
    }
    if (dx == nullptr) return;
    Backend::resize(*dx, Backend::shape(dy));
    apply_jacobian(scaled(Backend::data(dy), scaled_grad_), Backend::data(*dx));
    add_curvature(g_tangent, j_tangent, Backend::data(*dx));
  }

  template <class Visitor>
  void visit_buffers(Visitor&&) {}

 private:
  std::size_t groups() const { return batch_ * InputShape::size / group_size; }
  // Short groups share a thread, so a parallel chunk contains about 4096 values.
  static constexpr std::size_t grain() { return std::max<std::size_t>(1, 4096 / group_size); }

  /// out = gamma * in (+ beta when with_shift) over the whole batch.
  void apply_affine(const scalar* in, scalar* out, bool with_shift) const {
    const std::size_t count = batch_ * InputShape::size;
    if constexpr (!Affine) {
      if (in != out) Backend::copy(in, count, out);
      return;
    } else {
      const scalar* weight = weight_;
      const scalar* bias = bias_;
      Backend::parallel_for(count, [=](std::size_t k) {
        const std::size_t p = Policy::affine_index(k % InputShape::size);
        out[k] = with_shift ? in[k] * weight[p] + bias[p] : in[k] * weight[p];
      });
    }
  }

  /// Returns gamma * grad, in `storage`, or grad itself without affine.
  const scalar* scaled(const scalar* grad, tensor& storage) const {
    if constexpr (!Affine) {
      return grad;
    } else {
      const std::size_t count = batch_ * InputShape::size;
      Backend::resize(storage, batch_, InputShape::channels, InputShape::height, InputShape::width);
      scalar* out = Backend::data(storage);
      const scalar* weight = weight_;
      Backend::parallel_for(count, [=](std::size_t k) {
        out[k] = grad[k] * weight[Policy::affine_index(k % InputShape::size)];
      });
      return out;
    }
  }

  /// dgamma += sum(grad * normalized), dbeta += sum(grad).
  void accumulate_affine(const scalar* grad, const scalar* normalized) {
    if constexpr (Affine) {
      accumulate_affine_weight(grad, normalized);
      for (std::size_t n = 0; n < batch_; ++n)
        for (std::size_t i = 0; i < InputShape::size; ++i)
          bias_grad_[Policy::affine_index(i)] += grad[n * InputShape::size + i];
    }
  }

  void accumulate_affine_weight(const scalar* grad, const scalar* normalized) {
    if constexpr (Affine) {
      for (std::size_t n = 0; n < batch_; ++n)
        for (std::size_t i = 0; i < InputShape::size; ++i) {
          const std::size_t k = n * InputShape::size + i;
          weight_grad_[Policy::affine_index(i)] += grad[k] * normalized[k];
        }
    }
  }

  /// out = J v per group: s * (v - mean(v) - xhat * mean(xhat * v)).
  void apply_jacobian(const scalar* v, scalar* out) const {
    const scalar* xhat = Backend::data(xhat_);
    const scalar* inverse_std = Backend::data(inverse_std_);
    Backend::parallel_for(
        groups(),
        [=](std::size_t g) {
          const std::size_t first = g * group_size;
          double mean = 0;
          double projection = 0;
          for (std::size_t i = first; i < first + group_size; ++i) {
            mean += v[i];
            projection += static_cast<double>(xhat[i]) * v[i];
          }
          mean /= static_cast<double>(group_size);
          projection /= static_cast<double>(group_size);
          const double s = inverse_std[g];
          for (std::size_t i = first; i < first + group_size; ++i)
            out[i] = static_cast<scalar>(s * (v[i] - mean - xhat[i] * projection));
        },
        grain());
  }

  /// dx -= s * (h * xhat + e * xhat') + s * b * J g' per group.
  void add_curvature(const scalar* g_tangent, const scalar* j_tangent, scalar* dx) const {
    const scalar* xhat = Backend::data(xhat_);
    const scalar* xhat_tangent = Backend::data(xhat_tangent_);
    const scalar* inverse_std = Backend::data(inverse_std_);
    const scalar* projection = Backend::data(tangent_projection_);
    Backend::parallel_for(
        groups(),
        [=](std::size_t g) {
          const std::size_t first = g * group_size;
          double e = 0;
          double h = 0;
          for (std::size_t i = first; i < first + group_size; ++i) {
            e += static_cast<double>(g_tangent[i]) * xhat[i];
            h += static_cast<double>(g_tangent[i]) * xhat_tangent[i];
          }
          e /= static_cast<double>(group_size);
          h /= static_cast<double>(group_size);
          const double s = inverse_std[g];
          const double b = projection[g];
          for (std::size_t i = first; i < first + group_size; ++i)
            dx[i] = static_cast<scalar>(dx[i] - s * (h * xhat[i] + e * xhat_tangent[i]) -
                                        s * b * j_tangent[i]);
        },
        grain());
  }

  scalar* weight_ = nullptr;
  scalar* bias_ = nullptr;
  scalar* weight_grad_ = nullptr;
  scalar* bias_grad_ = nullptr;
  std::size_t batch_ = 0;
  tensor xhat_;                   // (N, C, H, W)
  tensor inverse_std_;            // one per group
  tensor xhat_tangent_;           // (N, C, H, W), from tangent_forward
  tensor tangent_projection_;     // b = mean(xhat * x'), one per group
  tensor scaled_grad_;            // gamma * dy
  tensor scaled_tangent_grad_;    // gamma * dy'
  tensor jacobian_tangent_grad_;  // J (gamma * dy')
};

}  // namespace advgan::detail
