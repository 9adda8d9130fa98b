#pragma once
// minibatch_stddev<Group>: the minibatch standard deviation layer of
// ProGAN (Karras et al. 2018), with StyleGAN's grouping. It appends one
// channel holding how much the samples of a group differ, which lets a
// discriminator notice a generator that produces too little variety.
//
// The batch of N samples is split into G = min(Group, N) groups of
// M = N / G, where sample n is member n / M of column n mod M, as StyleGAN's
// reshape(G, M, ...) does. For each column, the biased standard deviation
// over its G members is taken at every value of (C, H, W), with eps = 1e-8
// inside the square root, and averaged over (C, H, W) into one number s_m.
// The output is the input with one more channel that is s_m everywhere for
// every sample of column m. N must be a multiple of G.

#include <algorithm>  // std::min
#include <cmath>      // std::sqrt
#include <cstddef>    // std::size_t
#include <vector>     // std::vector

#include "advgan/core/error.hpp"
#include "advgan/layers/layer.hpp"

namespace advgan {

template <std::size_t Group, class InputShape, class Backend>
class minibatch_stddev_layer {
 public:
  using backend = Backend;
  using scalar = typename Backend::scalar;
  using tensor = typename Backend::tensor;
  using input_shape = InputShape;
  using output_shape = shape<InputShape::channels + 1, InputShape::height, InputShape::width>;
  static constexpr auto parameters = no_parameters;
  static constexpr double epsilon = 1e-8;
  static constexpr std::size_t area = InputShape::height * InputShape::width;

  void bind(scalar*, scalar*) {}
  void reset_parameters(philox&, init_scheme) {}

  /// Throws argument_error when the batch is not a multiple of the group.
  void forward(const tensor& x, tensor& y, const forward_context&) {
    detail::expect_sample_shape<InputShape, Backend>("minibatch_stddev", x);
    batch_ = Backend::shape(x)[0];
    group_ = std::min(Group, batch_);
    if (batch_ % group_ != 0)
      throw argument_error(detail::concat("minibatch_stddev: batch size ", batch_,
                                          " is not a multiple of the group size ", group_,
                                          "; use a batch size divisible by ", group_));
    input_ = Backend::data(x);
    const std::size_t columns = batch_ / group_;
    Backend::resize(y, batch_, output_shape::channels, InputShape::height, InputShape::width);
    Backend::resize(stddev_, 1, 1, columns, InputShape::size);
    statistics_.assign(columns, 0.0);
    scalar* out = Backend::data(y);
    for (std::size_t m = 0; m < columns; ++m) {
      statistics_[m] = column_statistic(m);
      for (std::size_t g = 0; g < group_; ++g) {
        const std::size_t n = g * columns + m;
        scalar* sample = out + n * output_shape::size;
        Backend::copy(input_ + n * InputShape::size, InputShape::size, sample);
        Backend::fill(sample + InputShape::size, area, static_cast<scalar>(statistics_[m]));
      }
    }
  }

  /// dx = dy on the input channels, plus, for sample n = g M + m at value i,
  /// D_m * (x_ni - mean_mi) / (G * sd_mi * C H W), where D_m sums dy over
  /// the appended channel of every sample in column m.
  void backward(const tensor& dy, tensor* dx, const backward_context&) {
    if (dx == nullptr) return;
    const std::size_t columns = batch_ / group_;
    Backend::resize(*dx, batch_, InputShape::channels, InputShape::height, InputShape::width);
    const scalar* grad = Backend::data(dy);
    scalar* out = Backend::data(*dx);
    const scalar* sd = Backend::data(stddev_);
    const double weight = 1.0 / (static_cast<double>(group_) * InputShape::size);
    for (std::size_t m = 0; m < columns; ++m) {
      double upstream = 0;
      for (std::size_t g = 0; g < group_; ++g)
        upstream +=
            Backend::sum(grad + (g * columns + m) * output_shape::size + InputShape::size, area);
      const std::vector<double> mean = column_mean(m);
      for (std::size_t g = 0; g < group_; ++g) {
        const std::size_t n = g * columns + m;
        const scalar* x = input_ + n * InputShape::size;
        const scalar* g_in = grad + n * output_shape::size;
        scalar* d = out + n * InputShape::size;
        for (std::size_t i = 0; i < InputShape::size; ++i)
          d[i] = static_cast<scalar>(g_in[i] + upstream * weight * (x[i] - mean[i]) /
                                                   sd[m * InputShape::size + i]);
      }
    }
  }

  template <class Visitor>
  void visit_buffers(Visitor&&) {}

  /// The group size of the last forward pass, min(Group, N).
  std::size_t group() const { return group_; }

 private:
  /// The mean over the G members of column m, per value of a sample.
  std::vector<double> column_mean(std::size_t m) const {
    const std::size_t columns = batch_ / group_;
    std::vector<double> mean(InputShape::size, 0.0);
    for (std::size_t g = 0; g < group_; ++g) {
      const scalar* x = input_ + (g * columns + m) * InputShape::size;
      for (std::size_t i = 0; i < InputShape::size; ++i) mean[i] += x[i];
    }
    for (double& value : mean) value /= static_cast<double>(group_);
    return mean;
  }

  /// Stores sd_mi = sqrt(var_mi + eps) and returns their mean over i.
  double column_statistic(std::size_t m) {
    const std::size_t columns = batch_ / group_;
    const std::vector<double> mean = column_mean(m);
    std::vector<double> squares(InputShape::size, 0.0);
    for (std::size_t g = 0; g < group_; ++g) {
      const scalar* x = input_ + (g * columns + m) * InputShape::size;
      for (std::size_t i = 0; i < InputShape::size; ++i)
        squares[i] += (x[i] - mean[i]) * (x[i] - mean[i]);
    }
    scalar* sd = Backend::data(stddev_) + m * InputShape::size;
    double total = 0;
    for (std::size_t i = 0; i < InputShape::size; ++i) {
      const double value = std::sqrt(squares[i] / static_cast<double>(group_) + epsilon);
      sd[i] = static_cast<scalar>(value);
      total += value;
    }
    return total / static_cast<double>(InputShape::size);
  }

  const scalar* input_ = nullptr;
  std::size_t batch_ = 0;
  std::size_t group_ = 1;
  tensor stddev_;                   // (columns, C*H*W) standard deviations
  std::vector<double> statistics_;  // s_m per column
};

/// Appends the minibatch standard deviation over groups of Group samples as
/// one extra channel.
template <std::size_t Group = 4>
struct minibatch_stddev {
  static_assert(Group > 0, "advgan: minibatch_stddev needs a group of at least one sample");
  static constexpr const char* kind = "minibatch_stddev";

  template <class InputShape>
  using output_shape = shape<InputShape::channels + 1, InputShape::height, InputShape::width>;

  template <class InputShape, class Backend>
  using bind = minibatch_stddev_layer<Group, InputShape, Backend>;
};

}  // namespace advgan
