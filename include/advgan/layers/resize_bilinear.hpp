#pragma once
// resize_bilinear<Height, Width>: bilinear resizing of every channel to
// Height x Width, as torch.nn.functional.interpolate(x, size=(Height,
// Width), mode="bilinear", align_corners=False) without antialiasing, both
// up and down.
//
// Output pixel d of an axis of n_in inputs and n_out outputs reads the
// source coordinate s = max(0, (d + 0.5) * n_in / n_out - 0.5), which lies
// between inputs floor(s) and floor(s) + 1 (clamped to the last input).
// detail::resize_bilinear_planes does the same for sizes known only at run
// time, as the Inception feature extractor needs.

#include <algorithm>  // std::fill_n, std::min
#include <cstddef>    // std::size_t
#include <vector>     // std::vector

#include "advgan/layers/layer.hpp"

namespace advgan {

namespace detail {

/// For each output index of one axis: the two input indices it reads and
/// the weight of the second.
struct bilinear_axis {
  std::vector<std::size_t> low;
  std::vector<std::size_t> high;
  std::vector<double> high_weight;

  bilinear_axis(std::size_t in, std::size_t out) : low(out), high(out), high_weight(out) {
    const double scale = static_cast<double>(in) / static_cast<double>(out);
    for (std::size_t d = 0; d < out; ++d) {
      double source = (static_cast<double>(d) + 0.5) * scale - 0.5;
      if (source < 0) source = 0;
      const auto first = static_cast<std::size_t>(source);
      low[d] = std::min(first, in - 1);
      high[d] = std::min(first + 1, in - 1);
      high_weight[d] = source - static_cast<double>(first);
    }
  }
};

/// Resizes `planes` planes of in_h x in_w values to out_h x out_w values
/// each (y is assigned). All sizes must be positive.
template <class Scalar>
void resize_bilinear_planes(const Scalar* x, std::size_t planes, std::size_t in_h, std::size_t in_w,
                            std::size_t out_h, std::size_t out_w, Scalar* y) {
  const bilinear_axis rows(in_h, out_h);
  const bilinear_axis cols(in_w, out_w);
  for (std::size_t p = 0; p < planes; ++p) {
    const Scalar* in = x + p * in_h * in_w;
    Scalar* out = y + p * out_h * out_w;
    for (std::size_t i = 0; i < out_h; ++i) {
      const Scalar* top = in + rows.low[i] * in_w;
      const Scalar* bottom = in + rows.high[i] * in_w;
      const double down = rows.high_weight[i];
      for (std::size_t j = 0; j < out_w; ++j) {
        const double right = cols.high_weight[j];
        const double upper = (1 - right) * top[cols.low[j]] + right * top[cols.high[j]];
        const double lower = (1 - right) * bottom[cols.low[j]] + right * bottom[cols.high[j]];
        out[i * out_w + j] = static_cast<Scalar>((1 - down) * upper + down * lower);
      }
    }
  }
}

/// The adjoint of resize_bilinear_planes, assigned: dx = the sum of each
/// output gradient times the weight with which its input entered it.
template <class Scalar>
void resize_bilinear_planes_adjoint(const Scalar* dy, std::size_t planes, std::size_t in_h,
                                    std::size_t in_w, std::size_t out_h, std::size_t out_w,
                                    Scalar* dx) {
  const bilinear_axis rows(in_h, out_h);
  const bilinear_axis cols(in_w, out_w);
  std::vector<double> sums(in_h * in_w);
  for (std::size_t p = 0; p < planes; ++p) {
    std::fill(sums.begin(), sums.end(), 0.0);
    const Scalar* grad = dy + p * out_h * out_w;
    for (std::size_t i = 0; i < out_h; ++i) {
      const double down = rows.high_weight[i];
      double* top = sums.data() + rows.low[i] * in_w;
      double* bottom = sums.data() + rows.high[i] * in_w;
      for (std::size_t j = 0; j < out_w; ++j) {
        const double g = grad[i * out_w + j];
        const double right = cols.high_weight[j];
        top[cols.low[j]] += (1 - down) * (1 - right) * g;
        top[cols.high[j]] += (1 - down) * right * g;
        bottom[cols.low[j]] += down * (1 - right) * g;
        bottom[cols.high[j]] += down * right * g;
      }
    }
    Scalar* out = dx + p * in_h * in_w;
    for (std::size_t k = 0; k < in_h * in_w; ++k) out[k] = static_cast<Scalar>(sums[k]);
  }
}

}  // namespace detail

template <std::size_t Height, std::size_t Width, class InputShape, class Backend>
class resize_bilinear_layer {
 public:
  using backend = Backend;
  using scalar = typename Backend::scalar;
  using tensor = typename Backend::tensor;
  using input_shape = InputShape;
  using output_shape = shape<InputShape::channels, Height, Width>;
  static constexpr auto parameters = no_parameters;

  void bind(scalar*, scalar*) {}
  void reset_parameters(philox&, init_scheme) {}

  void forward(const tensor& x, tensor& y, const forward_context&) {
    detail::expect_sample_shape<InputShape, Backend>("resize_bilinear", x);
    batch_ = Backend::shape(x)[0];
    Backend::resize(y, batch_, InputShape::channels, Height, Width);
    detail::resize_bilinear_planes(Backend::data(x), batch_ * InputShape::channels,
                                   InputShape::height, InputShape::width, Height, Width,
                                   Backend::data(y));
  }

  void backward(const tensor& dy, tensor* dx, const backward_context&) {
    if (dx == nullptr) return;
    Backend::resize(*dx, batch_, InputShape::channels, InputShape::height, InputShape::width);
    detail::resize_bilinear_planes_adjoint(Backend::data(dy), batch_ * InputShape::channels,
                                           InputShape::height, InputShape::width, Height, Width,
                                           Backend::data(*dx));
  }

  template <class Visitor>
  void visit_buffers(Visitor&&) {}

 private:
  std::size_t batch_ = 0;
};

/// Bilinear resizing of each channel to Height x Width (align_corners=False).
template <std::size_t Height, std::size_t Width>
struct resize_bilinear {
  static_assert(Height > 0 && Width > 0, "advgan: resize_bilinear output sizes must be positive");
  static constexpr const char* kind = "resize_bilinear";

  template <class InputShape>
  using output_shape = shape<InputShape::channels, Height, Width>;

  template <class InputShape, class Backend>
  using bind = resize_bilinear_layer<Height, Width, InputShape, Backend>;
};

}  // namespace advgan
