#pragma once
// minibatch_discrimination<Kernels, KernelDim>: the minibatch
// discrimination layer of Salimans et al., "Improved Techniques for
// Training GANs" (2016, section 3.2). It appends to each sample's features
// how close that sample lies to the others of the batch, which lets a
// discriminator notice a generator that collapses to few outputs.
//
// With the input x_i of A = InputShape::channels features (input shape
// (A, 1, 1), as after flatten or dense), B = Kernels and C = KernelDim:
//   M_i = x_i T, a B x C matrix per sample, with T of shape (A, B, C);
//   c_b(i, j) = exp(-||M_i,b - M_j,b||_1), the L1 norm over the C columns;
//   o_b(i) = sum over j != i of c_b(i, j);
// and the output is (x_i, o_1(i), ..., o_B(i)), of shape (A + B, 1, 1).
//
// Choices, which follow the PyTorch module most GAN code copies
// (MinibatchDiscrimination(in_features, out_features, kernel_dims) with
// parameter T of shape (A, B, C), initialised normal(0, 1), and
// `mean=False`), so its state_dict loads unchanged:
//   - the parameter is named "T", with PyTorch shape (A, B, C); its memory
//     layout is the (A, B*C) matrix of the formula;
//   - the sum leaves out j = i. The paper's sum includes it, which only adds
//     the constant exp(0) = 1 to every o_b(i). A batch of one sample gets
//     o = 0;
//   - init_scheme::pytorch draws T from normal(0, 1), and init_scheme::dcgan
//     from normal(0, 0.02).
// The backward pass takes the derivative of |t| at t = 0 as sign(0) = 0, as
// PyTorch's abs does.
//
// The layer has no tangent pass: |t| has no second derivative at 0, and
// each sample's output depends on the whole batch. Naming a gradient
// penalty for a critic that contains it fails to compile.

#include <cmath>    // std::exp, std::abs
#include <cstddef>  // std::size_t
#include <vector>   // std::vector

#include "advgan/core/error.hpp"
#include "advgan/layers/layer.hpp"

namespace advgan {

template <std::size_t Kernels, std::size_t KernelDim, class InputShape, class Backend>
class minibatch_discrimination_layer {
 public:
  using backend = Backend;
  using scalar = typename Backend::scalar;
  using tensor = typename Backend::tensor;
  using input_shape = InputShape;
  using output_shape = shape<InputShape::channels + Kernels>;

  static constexpr std::size_t features = InputShape::channels;
  static constexpr std::size_t columns = Kernels * KernelDim;
  static constexpr std::array<parameter_spec, 1> parameters{
      {{"T", {features, Kernels, KernelDim}, 3}}};

  void bind(scalar* values, scalar* gradients) {
    weight_ = values;
    weight_grad_ = gradients;
  }

  void reset_parameters(philox& rng, init_scheme scheme) {
    const double stddev = scheme == init_scheme::pytorch ? 1.0 : 0.02;
    Backend::fill_normal(weight_, features * columns, rng, 0.0, stddev);
  }

  /// x: (N, A, 1, 1); y: (N, A + B, 1, 1).
  void forward(const tensor& x, tensor& y, const forward_context&) {
    detail::expect_sample_shape<InputShape, Backend>("minibatch_discrimination", x);
    batch_ = Backend::shape(x)[0];
    input_ = Backend::data(x);
    Backend::resize(projected_, batch_, columns, 1, 1);
    scalar* m = Backend::data(projected_);
    Backend::gemm(false, false, batch_, columns, features, 1, input_, features, weight_, columns, 0,
                  m, columns);

    // closeness_[(i * N + j) * B + b] = c_b(i, j), symmetric in i and j.
    closeness_.assign(batch_ * batch_ * Kernels, 0.0);
    for (std::size_t i = 0; i < batch_; ++i)
      for (std::size_t j = i + 1; j < batch_; ++j)
        for (std::size_t b = 0; b < Kernels; ++b) {
          const scalar* mi = m + i * columns + b * KernelDim;
          const scalar* mj = m + j * columns + b * KernelDim;
          double distance = 0;
          for (std::size_t c = 0; c < KernelDim; ++c)
            distance += std::abs(static_cast<double>(mi[c]) - static_cast<double>(mj[c]));
          const double value = std::exp(-distance);
          closeness_[(i * batch_ + j) * Kernels + b] = value;
          closeness_[(j * batch_ + i) * Kernels + b] = value;
        }

    Backend::resize(y, batch_, output_shape::channels, 1, 1);
    scalar* out = Backend::data(y);
    for (std::size_t i = 0; i < batch_; ++i) {
      scalar* row = out + i * output_shape::channels;
      Backend::copy(input_ + i * features, features, row);
      for (std::size_t b = 0; b < Kernels; ++b) {
        double total = 0;
        for (std::size_t j = 0; j < batch_; ++j)
          total += closeness_[(i * batch_ + j) * Kernels + b];
        row[features + b] = static_cast<scalar>(total);
      }
    }
  }

  /// With g_ib = dy for o_b(i):
  ///   dL/dM_ibc = -sum over j != i of (g_ib + g_jb) c_b(i, j) sign(M_ibc - M_jbc),
  ///   dx = dy on the copied features + dM T^T, and dT += x^T dM.
  void backward(const tensor& dy, tensor* dx, const backward_context& context) {
    const scalar* grad = Backend::data(dy);
    const scalar* m = Backend::data(projected_);
    std::vector<double> projected_grad(batch_ * columns, 0.0);
    for (std::size_t i = 0; i < batch_; ++i)
      for (std::size_t j = i + 1; j < batch_; ++j)
        for (std::size_t b = 0; b < Kernels; ++b) {
          const double upstream =
              static_cast<double>(grad[i * output_shape::channels + features + b]) +
              static_cast<double>(grad[j * output_shape::channels + features + b]);
          const double weight = upstream * closeness_[(i * batch_ + j) * Kernels + b];
          if (weight == 0) continue;
          for (std::size_t c = 0; c < KernelDim; ++c) {
            const std::size_t k = b * KernelDim + c;
            const double difference =
                static_cast<double>(m[i * columns + k]) - static_cast<double>(m[j * columns + k]);
            const double sign = (difference > 0) - (difference < 0);
            projected_grad[i * columns + k] -= weight * sign;
            projected_grad[j * columns + k] += weight * sign;
          }
        }
    Backend::resize(projected_grad_, batch_, columns, 1, 1);
    scalar* dm = Backend::data(projected_grad_);
    for (std::size_t k = 0; k < batch_ * columns; ++k)
      dm[k] = static_cast<scalar>(projected_grad[k]);

    if (context.parameter_gradients)
      Backend::gemm(true, false, features, columns, batch_, 1, input_, features, dm, columns, 1,
                    weight_grad_, columns);
    if (dx == nullptr) return;
    Backend::resize(*dx, batch_, features, 1, 1);
    scalar* out = Backend::data(*dx);
    for (std::size_t i = 0; i < batch_; ++i)
      Backend::copy(grad + i * output_shape::channels, features, out + i * features);
    Backend::gemm(false, true, batch_, features, columns, 1, dm, columns, weight_, columns, 1, out,
                  features);
  }

  template <class Visitor>
  void visit_buffers(Visitor&&) {}

  const scalar* weight() const { return weight_; }

 private:
  scalar* weight_ = nullptr;
  scalar* weight_grad_ = nullptr;
  const scalar* input_ = nullptr;
  std::size_t batch_ = 0;
  tensor projected_;               // M, (N, B*C)
  tensor projected_grad_;          // dL/dM, (N, B*C)
  std::vector<double> closeness_;  // c_b(i, j), (N, N, B)
};

/// Appends Kernels minibatch-discrimination features, each from a kernel of
/// KernelDim columns, to a feature vector of shape (A, 1, 1).
template <std::size_t Kernels, std::size_t KernelDim>
struct minibatch_discrimination {
  static_assert(Kernels > 0, "advgan: minibatch_discrimination needs at least one kernel");
  static_assert(KernelDim > 0, "advgan: minibatch_discrimination needs a kernel dimension >= 1");
  static constexpr const char* kind = "minibatch_discrimination";

  /// The input must be a feature vector (A, 1, 1); put flatten before it.
  template <class InputShape>
  static constexpr bool accepts = InputShape::height == 1 && InputShape::width == 1;

  template <class InputShape>
  using output_shape = shape<InputShape::channels + Kernels>;

  template <class InputShape, class Backend>
  using bind = minibatch_discrimination_layer<Kernels, KernelDim, InputShape, Backend>;
};

/// Whether a layer spec is a minibatch_discrimination, which a critic with a
/// gradient penalty must not contain.
template <class Spec>
inline constexpr bool is_minibatch_discrimination = false;
template <std::size_t Kernels, std::size_t KernelDim>
inline constexpr bool is_minibatch_discrimination<minibatch_discrimination<Kernels, KernelDim>> =
    true;

}  // namespace advgan
