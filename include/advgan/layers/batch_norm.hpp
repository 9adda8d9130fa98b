#pragma once
// batch_norm: batch normalization over N (and H, W), per channel, as
// torch.nn.BatchNorm1d on feature vectors and BatchNorm2d on images.
//
// Training mode normalises with the batch mean and biased variance and
// updates running_mean and running_var with momentum 0.1, running_var
// taking the unbiased batch variance, and counts num_batches_tracked, all as
// PyTorch does. Evaluation mode normalises with the running statistics.

#include <cmath>    // std::sqrt
#include <cstddef>  // std::size_t
#include <cstdint>  // std::int64_t
#include <ratio>    // std::ratio

#include "advgan/layers/layer.hpp"

namespace advgan {

template <class Momentum, class Epsilon, class InputShape, class Backend>
class batch_norm_layer {
 public:
  using backend = Backend;
  using scalar = typename Backend::scalar;
  using tensor = typename Backend::tensor;
  using input_shape = InputShape;
  using output_shape = InputShape;

  static constexpr std::size_t channels = InputShape::channels;
  static constexpr std::size_t area = InputShape::height * InputShape::width;
  static constexpr double momentum = static_cast<double>(Momentum::num) / Momentum::den;
  static constexpr double epsilon = static_cast<double>(Epsilon::num) / Epsilon::den;
  static constexpr std::array<parameter_spec, 2> parameters{
      {{"weight", {channels}, 1}, {"bias", {channels}, 1}}};

  batch_norm_layer() {
    Backend::resize(running_mean_, 1, 1, 1, channels);
    Backend::resize(running_var_, 1, 1, 1, channels);
    Backend::fill(Backend::data(running_mean_), channels, scalar(0));
    Backend::fill(Backend::data(running_var_), channels, scalar(1));
    Backend::resize(mean_, 1, 1, 1, channels);
    Backend::resize(inverse_std_, 1, 1, 1, channels);
  }

  void bind(scalar* values, scalar* gradients) {
    weight_ = values;
    bias_ = values + channels;
    weight_grad_ = gradients;
    bias_grad_ = gradients + channels;
  }

  void reset_parameters(philox& rng, init_scheme scheme) {
    if (scheme == init_scheme::dcgan)
      Backend::fill_normal(weight_, channels, rng, 1.0, 0.02);
    else
      Backend::fill(weight_, channels, scalar(1));
    Backend::fill(bias_, channels, scalar(0));
  }

  void forward(const tensor& x, tensor& y, const forward_context& context) {
    detail::expect_sample_shape<InputShape, Backend>("batch_norm", x);
    batch_ = Backend::shape(x)[0];
    training_ = context.training;
    input_ = Backend::data(x);
    Backend::resize(y, Backend::shape(x));
    output_ = Backend::data(y);
    const std::size_t count = batch_ * area;
    if (training_ && count < 2)
      throw argument_error(detail::concat("batch_norm: training needs more than one value per ",
                                          "channel, got batch ", batch_, " of shape ",
                                          InputShape::str()));
    Backend::parallel_for(
        channels, [this](std::size_t c) { normalize_channel(c); }, channel_grain(count));
    if (training_) ++num_batches_tracked_;
  }

  /// With xhat = (x - mean) * inverse_std over the M = N*H*W values of a
  /// channel: dgamma += sum(dy * xhat), dbeta += sum(dy), and in training
  /// dx = gamma * inverse_std / M * (M dy - sum(dy) - xhat sum(dy * xhat));
  /// in evaluation the statistics are constants and dx = gamma * inverse_std * dy.
  /// dx may be the same tensor as dy: each value of dx is written after the
  /// sums have been taken and depends only on dy at its own position.
  void backward(const tensor& dy, tensor* dx, const backward_context& context) {
    if (dx != nullptr) Backend::resize(*dx, Backend::shape(dy));
    const scalar* grad = Backend::data(dy);
    scalar* result = dx != nullptr ? Backend::data(*dx) : nullptr;
    const bool parameter_gradients = context.parameter_gradients;
    Backend::parallel_for(
        channels,
        [=, this](std::size_t c) { backward_channel(c, grad, result, parameter_gradients); },
        channel_grain(batch_ * area));
  }

  /// Declares that backward accepts dx pointing to the tensor that dy refers
  /// to, so a model can reuse the gradient buffer.
  static constexpr bool in_place_backward = true;

  template <class Visitor>
  void visit_buffers(Visitor&& visitor) {
    visitor("running_mean", Backend::data(running_mean_), parameter_spec{"", {channels}, 1});
    visitor("running_var", Backend::data(running_var_), parameter_spec{"", {channels}, 1});
    visitor("num_batches_tracked", num_batches_tracked_);
  }

 private:
  /// Returns the parallel_for grain for a loop over channels, which keeps
  /// all channels on one thread when they have fewer than 2^15 values in all.
  static std::size_t channel_grain(std::size_t values_per_channel) {
    return values_per_channel * channels >= (std::size_t{1} << 15) ? 1 : channels + 1;
  }

  /// Sums one row of values. The loop is vectorised, so a float sum runs
  /// in one partial sum per vector lane, and the caller adds the rows in
  /// double.
  static scalar row_sum(const scalar* v, std::size_t n) {
    scalar total = 0;
#pragma omp simd reduction(+ : total)
    for (std::size_t i = 0; i < n; ++i) total += v[i];
    return total;
  }

  static scalar row_squared_deviation(const scalar* v, std::size_t n, scalar mean) {
    scalar total = 0;
#pragma omp simd reduction(+ : total)
    for (std::size_t i = 0; i < n; ++i) total += (v[i] - mean) * (v[i] - mean);
    return total;
  }

  /// Normalises channel c of the cached input into the output, with batch
  /// statistics in training (updating the running ones) and the running
  /// statistics in evaluation.
  void normalize_channel(std::size_t c) {
    double m = Backend::data(running_mean_)[c];
    double var = Backend::data(running_var_)[c];
    if (training_) {
      const std::size_t count = batch_ * area;
      // Two passes, so the variance does not lose digits to cancellation.
      double total = 0;
      for (std::size_t n = 0; n < batch_; ++n) total += row_sum(channel(input_, n, c), area);
      m = total / static_cast<double>(count);
      double squares = 0;
      for (std::size_t n = 0; n < batch_; ++n)
        squares += row_squared_deviation(channel(input_, n, c), area, static_cast<scalar>(m));
      var = squares / static_cast<double>(count);
      update_running(c, m, squares / static_cast<double>(count - 1));
    }
    Backend::data(mean_)[c] = static_cast<scalar>(m);
    Backend::data(inverse_std_)[c] = static_cast<scalar>(1.0 / std::sqrt(var + epsilon));
    const double scale_value = weight_[c] / std::sqrt(var + epsilon);
    const auto scale = static_cast<scalar>(scale_value);
    const auto shift = static_cast<scalar>(bias_[c] - m * scale_value);
    for (std::size_t n = 0; n < batch_; ++n) {
      const scalar* v = channel(input_, n, c);
      scalar* out = channel(output_, n, c);
#pragma omp simd
      for (std::size_t i = 0; i < area; ++i) out[i] = v[i] * scale + shift;
    }
  }

  /// Runs the backward pass of channel c. result may be grad itself, or null
  /// when no input gradient is requested.
  void backward_channel(std::size_t c, const scalar* grad, scalar* result,
                        bool parameter_gradients) {
    const auto m = static_cast<scalar>(Backend::data(mean_)[c]);
    const double inverse_std = Backend::data(inverse_std_)[c];
    double grad_sum = 0;
    double grad_dot_centered = 0;  // sum(dy * (x - mean))
    for (std::size_t n = 0; n < batch_; ++n) {
      const scalar* g = channel(grad, n, c);
      const scalar* v = channel(input_, n, c);
      scalar row_grad = 0;
      scalar row_dot = 0;
#pragma omp simd reduction(+ : row_grad, row_dot)
      for (std::size_t i = 0; i < area; ++i) {
        row_grad += g[i];
        row_dot += g[i] * (v[i] - m);
      }
      grad_sum += row_grad;
      grad_dot_centered += row_dot;
    }
    const double grad_dot_xhat = grad_dot_centered * inverse_std;
    if (parameter_gradients) {
      weight_grad_[c] += static_cast<scalar>(grad_dot_xhat);
      bias_grad_[c] += static_cast<scalar>(grad_sum);
    }
    if (result == nullptr) return;
    // dx = a dy + b (x - mean) + offset, the formula above expanded.
    const double count = static_cast<double>(batch_ * area);
    const double scale = weight_[c] * inverse_std;
    const auto a = static_cast<scalar>(scale);
    if (!training_) {
      for (std::size_t n = 0; n < batch_; ++n) {
        const scalar* g = channel(grad, n, c);
        scalar* out = channel(result, n, c);
#pragma omp simd
        for (std::size_t i = 0; i < area; ++i) out[i] = a * g[i];
      }
      return;
    }
    const auto b = static_cast<scalar>(-scale * inverse_std * grad_dot_xhat / count);
    const auto offset = static_cast<scalar>(-scale * grad_sum / count);
    for (std::size_t n = 0; n < batch_; ++n) {
      const scalar* g = channel(grad, n, c);
      const scalar* v = channel(input_, n, c);
      scalar* out = channel(result, n, c);
#pragma omp simd
      for (std::size_t i = 0; i < area; ++i) out[i] = a * g[i] + b * (v[i] - m) + offset;
    }
  }

  static const scalar* channel(const scalar* base, std::size_t n, std::size_t c) {
    return base + (n * channels + c) * area;
  }
  static scalar* channel(scalar* base, std::size_t n, std::size_t c) {
    return base + (n * channels + c) * area;
  }

  void update_running(std::size_t c, double mean, double unbiased_var) {
    scalar& running_mean = Backend::data(running_mean_)[c];
    scalar& running_var = Backend::data(running_var_)[c];
    running_mean = static_cast<scalar>((1 - momentum) * running_mean + momentum * mean);
    running_var = static_cast<scalar>((1 - momentum) * running_var + momentum * unbiased_var);
  }

  scalar* weight_ = nullptr;
  scalar* bias_ = nullptr;
  scalar* weight_grad_ = nullptr;
  scalar* bias_grad_ = nullptr;
  const scalar* input_ = nullptr;
  scalar* output_ = nullptr;
  std::size_t batch_ = 0;
  bool training_ = true;
  tensor running_mean_;
  tensor running_var_;
  tensor mean_;  // statistics used by the last forward pass
  tensor inverse_std_;
  std::int64_t num_batches_tracked_ = 0;
};

/// Batch normalization with PyTorch's defaults: momentum 0.1, eps 1e-5.
template <class Momentum = std::ratio<1, 10>, class Epsilon = std::ratio<1, 100000>>
struct batch_norm_with {
  static constexpr const char* kind = "batch_norm";

  template <class InputShape>
  using output_shape = InputShape;

  template <class InputShape, class Backend>
  using bind = batch_norm_layer<Momentum, Epsilon, InputShape, Backend>;
};

using batch_norm = batch_norm_with<>;

}  // namespace advgan
