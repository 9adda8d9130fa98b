#pragma once
// spectral_norm<Layer>: a dense or conv2d layer whose weight is divided by
// an estimate of its largest singular value, as
// torch.nn.utils.spectral_norm(module) with one power iteration (Miyato et
// al. 2018).
//
// The weight is viewed as a matrix W of shape (Out, rest) and the state is
// two unit vectors, u (Out) and v (rest). Each training-mode forward runs one
// power iteration, v = normalize(W^T u) then u = normalize(W v), and uses
// W_sn = W / sigma with sigma = u . W v. Evaluation mode reuses the stored u
// and v unchanged, so repeated evaluation gives bitwise-equal outputs. As in
// PyTorch, u and v are constants for differentiation, so
//   dL/dW = (G - <G, W_sn> u v^T) / sigma,  G = dL/dW_sn,
// and the tangent pass uses W_sn as the weight.
//
// Names follow PyTorch's state_dict: the parameters "weight_orig" (W) and
// "bias", and the buffers "weight_u" and "weight_v". PyTorch lists bias
// before weight_orig, but here weight_orig comes first, as the wrapped layer
// stores it. A new layer draws u from a normal distribution and normalises
// it, and leaves v unset (all zeros). The first forward pass or
// save that finds v unset runs 15 power iterations from that u on the
// current weights, as torch.nn.utils.parametrizations.spectral_norm does
// when it is registered, so even a first forward in evaluation mode is
// normalised by a converged sigma. A v loaded from a file is used as it is.

#include <algorithm>  // std::max, std::all_of
#include <array>      // std::array
#include <cmath>      // std::sqrt
#include <cstddef>    // std::size_t
#include <vector>     // std::vector

#include "advgan/layers/conv2d.hpp"
#include "advgan/layers/dense.hpp"
#include "advgan/layers/layer.hpp"
#include "advgan/layers/tangent.hpp"

namespace advgan {

template <class Inner, class InputShape, class Backend>
class spectral_norm_layer {
  using inner_layer = typename Inner::template bind<InputShape, Backend>;

 public:
  using backend = Backend;
  using scalar = typename Backend::scalar;
  using tensor = typename Backend::tensor;
  using input_shape = InputShape;
  using output_shape = typename inner_layer::output_shape;

  static constexpr std::size_t weight_size = inner_layer::parameters[0].size();
  static constexpr std::size_t rows = inner_layer::parameters[0].dims[0];
  static constexpr std::size_t columns = weight_size / rows;
  static constexpr std::size_t inner_size = [] {
    std::size_t total = 0;
    for (const auto& p : inner_layer::parameters) total += p.size();
    return total;
  }();
  static constexpr auto parameters = [] {
    auto specs = inner_layer::parameters;
    specs[0].name = "weight_orig";
    return specs;
  }();
  /// The epsilon of PyTorch's normalize(), which keeps a zero vector zero.
  static constexpr double epsilon = 1e-12;
  /// Power iterations that set up an unset v.
  static constexpr int warm_up_iterations = 15;

  spectral_norm_layer() {
    Backend::resize(inner_values_, 1, 1, 1, inner_size);
    Backend::resize(inner_gradients_, 1, 1, 1, inner_size);
    Backend::resize(u_, 1, 1, 1, rows);
    Backend::resize(v_, 1, 1, 1, columns);
    Backend::fill(Backend::data(inner_values_), inner_size, scalar(0));
    Backend::fill(Backend::data(u_), rows, scalar(0));
    Backend::fill(Backend::data(v_), columns, scalar(0));
    inner_.bind(Backend::data(inner_values_), Backend::data(inner_gradients_));
  }

  // The wrapped layer points into this object's own storage.
  spectral_norm_layer(const spectral_norm_layer&) = delete;
  spectral_norm_layer& operator=(const spectral_norm_layer&) = delete;

  void bind(scalar* values, scalar* gradients) {
    values_ = values;
    gradients_ = gradients;
  }

  /// Initialises the wrapped layer's weight and bias, then draws u. v stays
  /// unset until the first forward pass or save (see the top of this file).
  void reset_parameters(philox& rng, init_scheme scheme) {
    inner_.reset_parameters(rng, scheme);
    Backend::copy(Backend::data(inner_values_), inner_size, values_);
    Backend::fill_normal(Backend::data(u_), rows, rng, 0.0, 1.0);
    normalize(Backend::data(u_), rows);
    Backend::fill(Backend::data(v_), columns, scalar(0));
  }

  /// Runs one power iteration in training mode, then the wrapped layer's
  /// forward pass with W_sn = W / sigma.
  void forward(const tensor& x, tensor& y, const forward_context& context) {
    derive_v_if_unset();
    if (context.training) power_iteration();
    update_normalized_weight();
    inner_.forward(x, y, context);
  }

  void backward(const tensor& dy, tensor* dx, const backward_context& context) {
    if (!context.parameter_gradients) {
      inner_.backward(dy, dx, context);
      return;
    }
    Backend::fill(Backend::data(inner_gradients_), inner_size, scalar(0));
    inner_.backward(dy, dx, context);
    accumulate_gradients();
  }

  /// Runs the wrapped layer's tangent pass with W_sn as its weight.
  void tangent_forward(const tensor& x_tangent,
                       tensor& y_tangent) requires twice_differentiable_layer<inner_layer> {
    inner_.tangent_forward(x_tangent, y_tangent);
  }

  void tangent_backward(const tensor& dy, const tensor& dy_tangent, tensor* dx, tensor* dx_tangent,
                        const backward_context& context) requires
      twice_differentiable_layer<inner_layer> {
    if (!context.parameter_gradients) {
      inner_.tangent_backward(dy, dy_tangent, dx, dx_tangent, context);
      return;
    }
    Backend::fill(Backend::data(inner_gradients_), inner_size, scalar(0));
    inner_.tangent_backward(dy, dy_tangent, dx, dx_tangent, context);
    accumulate_gradients();
  }

  /// Visits "weight_u" and "weight_v", setting up v first if it is unset,
  /// so a saved layer always contains a usable pair.
  template <class Visitor>
  void visit_buffers(Visitor&& visitor) {
    derive_v_if_unset();
    visitor("weight_u", Backend::data(u_), parameter_spec{"", {rows}, 1});
    visitor("weight_v", Backend::data(v_), parameter_spec{"", {columns}, 1});
    inner_.visit_buffers(visitor);
  }

  /// The sigma of the last forward pass.
  double sigma() const { return sigma_; }

 private:
  /// x /= max(||x||, epsilon), in double.
  static void normalize(scalar* x, std::size_t n) {
    double squares = 0;
    for (std::size_t i = 0; i < n; ++i) squares += static_cast<double>(x[i]) * x[i];
    const double norm = std::max(std::sqrt(squares), epsilon);
    for (std::size_t i = 0; i < n; ++i) x[i] = static_cast<scalar>(x[i] / norm);
  }

  /// v = normalize(W^T u).
  void update_v() {
    std::vector<double> product(columns, 0.0);
    const scalar* u = Backend::data(u_);
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t c = 0; c < columns; ++c)
        product[c] += values_[r * columns + c] * double(u[r]);
    scalar* v = Backend::data(v_);
    for (std::size_t c = 0; c < columns; ++c) v[c] = static_cast<scalar>(product[c]);
    normalize(v, columns);
  }

  /// Returns W v, in double.
  std::vector<double> weight_times_v() const {
    std::vector<double> product(rows, 0.0);
    const scalar* v = Backend::data(v_);
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t c = 0; c < columns; ++c)
        product[r] += values_[r * columns + c] * double(v[c]);
    return product;
  }

  void power_iteration() {
    update_v();
    const std::vector<double> product = weight_times_v();
    scalar* u = Backend::data(u_);
    for (std::size_t r = 0; r < rows; ++r) u[r] = static_cast<scalar>(product[r]);
    normalize(u, rows);
  }

  void derive_v_if_unset() {
    const scalar* v = Backend::data(v_);
    if (!std::all_of(v, v + columns, [](scalar value) { return value == scalar(0); })) return;
    for (int i = 0; i < warm_up_iterations; ++i) power_iteration();
  }

  /// sigma = u . W v, then the wrapped layer's weight W / sigma and bias.
  void update_normalized_weight() {
    const std::vector<double> product = weight_times_v();
    const scalar* u = Backend::data(u_);
    double sigma = 0;
    for (std::size_t r = 0; r < rows; ++r) sigma += u[r] * product[r];
    sigma_ = sigma;
    scalar* inner = Backend::data(inner_values_);
    for (std::size_t i = 0; i < weight_size; ++i)
      inner[i] = static_cast<scalar>(values_[i] / sigma);
    Backend::copy(values_ + weight_size, inner_size - weight_size, inner + weight_size);
  }

  /// dW += (G - <G, W_sn> u v^T) / sigma and the other parameters' gradients
  /// unchanged, where G is the wrapped layer's weight gradient.
  void accumulate_gradients() {
    const scalar* inner_grad = Backend::data(inner_gradients_);
    const scalar* normalized = Backend::data(inner_values_);
    double projection = 0;
    for (std::size_t i = 0; i < weight_size; ++i)
      projection += double(inner_grad[i]) * normalized[i];
    const scalar* u = Backend::data(u_);
    const scalar* v = Backend::data(v_);
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t c = 0; c < columns; ++c) {
        const std::size_t i = r * columns + c;
        gradients_[i] += static_cast<scalar>(
            (inner_grad[i] - projection * double(u[r]) * double(v[c])) / sigma_);
      }
    for (std::size_t i = weight_size; i < inner_size; ++i) gradients_[i] += inner_grad[i];
  }

  inner_layer inner_;
  scalar* values_ = nullptr;     // W, then the wrapped layer's other parameters
  scalar* gradients_ = nullptr;  // their gradients
  tensor inner_values_;          // W_sn, then copies of the other parameters
  tensor inner_gradients_;       // the wrapped layer's gradients of one pass
  tensor u_;                     // (rows)
  tensor v_;                     // (columns); all zeros means unset
  double sigma_ = 1;
};

namespace detail {

/// Layer specs whose weight spectral_norm can normalise.
template <class Spec>
inline constexpr bool spectral_normalizable = false;
template <std::size_t Out, bool Bias>
inline constexpr bool spectral_normalizable<dense<Out, Bias>> = true;
template <std::size_t Out, std::size_t Kernel, std::size_t Stride, std::size_t Padding, bool Bias>
inline constexpr bool spectral_normalizable<conv2d<Out, Kernel, Stride, Padding, Bias>> = true;

}  // namespace detail

/// Spectral normalization of a dense or conv2d layer's weight.
template <class Layer>
struct spectral_norm {
  static_assert(detail::spectral_normalizable<Layer>,
                "advgan: spectral_norm wraps a dense<...> or conv2d<...> layer spec");
  static constexpr const char* kind = "spectral_norm";
  using wrapped = Layer;

  template <class InputShape>
  static constexpr bool accepts = [] {
    if constexpr (requires { Layer::template accepts<InputShape>; })
      return Layer::template accepts<InputShape>;
    else
      return true;
  }();

  template <class InputShape>
  using output_shape = typename Layer::template output_shape<InputShape>;

  template <class InputShape, class Backend>
  using bind = spectral_norm_layer<Layer, InputShape, Backend>;
};

}  // namespace advgan
