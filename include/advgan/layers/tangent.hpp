#pragma once
// What a layer provides to be differentiated twice, as exact gradient
// penalties need.
//
// A gradient penalty is a function of the critic's input gradient, so its
// parameter gradient is a second derivative. advgan computes it by
// reverse-over-forward differentiation: a tangent (forward-mode) pass maps
// (x, x') to (y, y') with y' = J_f(x) x', and its backward pass carries the
// gradients of a loss L(y, y') back to x, x' and the parameters.
//
// The `twice_differentiable_layer` contract of a bound layer L, on top of
// the `layer` contract:
//   tangent_forward(x_tangent, y_tangent)
//       after forward(x, y, context): *y_tangent = J_f(x) x' (assigned), resized
//       to (N, output_shape). Caches what tangent_backward needs, which may
//       include a pointer to x': x' must stay alive and unchanged until then.
//   tangent_backward(dy, dy_tangent, dx, dx_tangent, context)
//       after tangent_forward, with dy = dL/dy and dy' = dL/dy':
//       *dx = dL/dx (assigned) when dx is not null, which includes the term
//       (d(J_f(x) x')/dx)^T dy' from the curvature of f;
//       *dx_tangent = J_f(x)^T dy' (assigned) when dx_tangent is not null;
//       parameter gradients += dL/dtheta when context.parameter_gradients,
//       through both y and y'.
// A layer whose output for one sample depends on other samples (batch
// normalization) does not claim this contract, because a per-sample
// gradient penalty assumes that the critic treats samples independently.

#include <cstddef>  // std::size_t

#include "advgan/layers/layer.hpp"

namespace advgan {

/// A bound layer with the tangent pass described at the top of this file.
template <class Layer>
concept twice_differentiable_layer = layer<Layer> &&
    requires(Layer& l, const typename Layer::tensor& x, typename Layer::tensor& y,
             typename Layer::tensor* dx, const backward_context& bc) {
  l.tangent_forward(x, y);
  l.tangent_backward(x, x, dx, dx, bc);
};

namespace detail {

/// Fails to compile when a model runs a tangent pass through a layer without
/// one. The template arguments name the layer's index and its spec.
template <std::size_t LayerIndex, class Layer, bool Valid>
struct check_twice_differentiable {
  static_assert(Valid,
                "advgan: a gradient penalty differentiates the critic twice, but this layer "
                "has no tangent pass (tangent_forward and tangent_backward); build the critic "
                "from dense, conv2d, spectral_norm, layer_norm, instance_norm, point-wise "
                "activations, flatten and reshape; see LayerIndex and Layer");
  static constexpr bool value = Valid;
};

}  // namespace detail

}  // namespace advgan
