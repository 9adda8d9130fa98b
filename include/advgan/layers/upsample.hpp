#pragma once
// upsample_nearest<Factor>: nearest-neighbour upsampling by an integer
// factor, as torch.nn.Upsample(scale_factor=Factor, mode="nearest").

#include <cstddef>  // std::size_t

#include "advgan/layers/layer.hpp"

namespace advgan {

template <std::size_t Factor, class InputShape, class Backend>
class upsample_nearest_layer {
 public:
  using backend = Backend;
  using scalar = typename Backend::scalar;
  using tensor = typename Backend::tensor;
  using input_shape = InputShape;
  using output_shape =
      shape<InputShape::channels, InputShape::height * Factor, InputShape::width * Factor>;
  static constexpr auto parameters = no_parameters;

  void bind(scalar*, scalar*) {}
  void reset_parameters(philox&, init_scheme) {}

  /// y[n][c][i][j] = x[n][c][i / Factor][j / Factor].
  void forward(const tensor& x, tensor& y, const forward_context&) {
    detail::expect_sample_shape<InputShape, Backend>("upsample_nearest", x);
    batch_ = Backend::shape(x)[0];
    Backend::resize(y, batch_, output_shape::channels, output_shape::height, output_shape::width);
    const scalar* in = Backend::data(x);
    scalar* out = Backend::data(y);
    const std::size_t planes = batch_ * InputShape::channels;
    for (std::size_t p = 0; p < planes; ++p)
      for (std::size_t i = 0; i < output_shape::height; ++i)
        for (std::size_t j = 0; j < output_shape::width; ++j)
          out[(p * output_shape::height + i) * output_shape::width + j] =
              in[(p * InputShape::height + i / Factor) * InputShape::width + j / Factor];
  }

  /// dx[n][c][i][j] = sum of dy over the Factor x Factor block it fed.
  void backward(const tensor& dy, tensor* dx, const backward_context&) {
    if (dx == nullptr) return;
    Backend::resize(*dx, batch_, InputShape::channels, InputShape::height, InputShape::width);
    Backend::fill(Backend::data(*dx), Backend::size(*dx), scalar(0));
    const scalar* grad = Backend::data(dy);
    scalar* out = Backend::data(*dx);
    const std::size_t planes = batch_ * InputShape::channels;
    for (std::size_t p = 0; p < planes; ++p)
      for (std::size_t i = 0; i < output_shape::height; ++i)
        for (std::size_t j = 0; j < output_shape::width; ++j)
          out[(p * InputShape::height + i / Factor) * InputShape::width + j / Factor] +=
              grad[(p * output_shape::height + i) * output_shape::width + j];
  }

  template <class Visitor>
  void visit_buffers(Visitor&&) {}

 private:
  std::size_t batch_ = 0;
};

template <std::size_t Factor>
struct upsample_nearest {
  static_assert(Factor > 0, "advgan: upsample_nearest factor must be positive");
  static constexpr const char* kind = "upsample_nearest";

  template <class InputShape>
  using output_shape =
      shape<InputShape::channels, InputShape::height * Factor, InputShape::width * Factor>;

  template <class InputShape, class Backend>
  using bind = upsample_nearest_layer<Factor, InputShape, Backend>;
};

}  // namespace advgan
