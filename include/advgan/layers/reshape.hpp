#pragma once
// flatten and reshape<C, H, W>: views that change the per-sample shape and
// keep the data, as torch.nn.Flatten and torch.nn.Unflatten.

#include <cstddef>  // std::size_t

#include "advgan/layers/layer.hpp"

namespace advgan {

template <class OutputShape, class InputShape, class Backend>
class reshape_layer {
 public:
  using backend = Backend;
  using scalar = typename Backend::scalar;
  using tensor = typename Backend::tensor;
  using input_shape = InputShape;
  using output_shape = OutputShape;
  static constexpr auto parameters = no_parameters;

  void bind(scalar*, scalar*) {}
  void reset_parameters(philox&, init_scheme) {}

  void forward(const tensor& x, tensor& y, const forward_context&) {
    detail::expect_sample_shape<InputShape, Backend>("reshape", x);
    batch_ = Backend::shape(x)[0];
    Backend::resize(y, batch_, OutputShape::channels, OutputShape::height, OutputShape::width);
    Backend::copy(Backend::data(x), Backend::size(x), Backend::data(y));
  }

  void backward(const tensor& dy, tensor* dx, const backward_context&) {
    if (dx == nullptr) return;
    Backend::resize(*dx, batch_, InputShape::channels, InputShape::height, InputShape::width);
    Backend::copy(Backend::data(dy), Backend::size(dy), Backend::data(*dx));
  }

  /// Copies the tangent into the new shape, as forward copies the value.
  void tangent_forward(const tensor& x_tangent, tensor& y_tangent) {
    detail::expect_sample_shape<InputShape, Backend>("reshape tangent", x_tangent);
    Backend::resize(y_tangent, Backend::shape(x_tangent)[0], OutputShape::channels,
                    OutputShape::height, OutputShape::width);
    Backend::copy(Backend::data(x_tangent), Backend::size(x_tangent), Backend::data(y_tangent));
  }

  void tangent_backward(const tensor& dy, const tensor& dy_tangent, tensor* dx, tensor* dx_tangent,
                        const backward_context& context) {
    backward(dy, dx, context);
    if (dx_tangent == nullptr) return;
    Backend::resize(*dx_tangent, Backend::shape(dy_tangent)[0], InputShape::channels,
                    InputShape::height, InputShape::width);
    Backend::copy(Backend::data(dy_tangent), Backend::size(dy_tangent), Backend::data(*dx_tangent));
  }

  template <class Visitor>
  void visit_buffers(Visitor&&) {}

 private:
  std::size_t batch_ = 0;
};

/// Flattens each sample to a feature vector of C*H*W values.
struct flatten {
  static constexpr const char* kind = "flatten";

  template <class InputShape>
  using output_shape = shape<InputShape::size>;

  template <class InputShape, class Backend>
  using bind = reshape_layer<shape<InputShape::size>, InputShape, Backend>;
};

/// Reshapes each sample to (Channels, Height, Width); the element count must
/// not change.
template <std::size_t Channels, std::size_t Height = 1, std::size_t Width = 1>
struct reshape {
  static constexpr const char* kind = "reshape";

  template <class InputShape>
  static constexpr bool accepts = InputShape::size == Channels* Height* Width;

  template <class InputShape>
  using output_shape = shape<Channels, Height, Width>;

  template <class InputShape, class Backend>
  using bind = reshape_layer<shape<Channels, Height, Width>, InputShape, Backend>;
};

}  // namespace advgan
