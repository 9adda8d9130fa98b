#pragma once
// dropout<P>: inverted dropout as torch.nn.Dropout. In training each value
// is zeroed with probability P and the rest are scaled by 1 / (1 - P); in
// evaluation the layer is the identity. P is a std::ratio.

#include <cstddef>  // std::size_t
#include <ratio>    // std::ratio

#include "advgan/layers/layer.hpp"

namespace advgan {

template <class Probability, class InputShape, class Backend>
class dropout_layer {
 public:
  using backend = Backend;
  using scalar = typename Backend::scalar;
  using tensor = typename Backend::tensor;
  using input_shape = InputShape;
  using output_shape = InputShape;
  static constexpr auto parameters = no_parameters;
  static constexpr double probability = static_cast<double>(Probability::num) / Probability::den;

  void bind(scalar*, scalar*) {}
  void reset_parameters(philox&, init_scheme) {}

  /// The mask is drawn from context.rng, so a seeded model drops the same
  /// values on every run.
  void forward(const tensor& x, tensor& y, const forward_context& context) {
    detail::expect_sample_shape<InputShape, Backend>("dropout", x);
    Backend::resize(y, Backend::shape(x));
    Backend::resize(mask_, Backend::shape(x));
    const std::size_t count = Backend::size(x);
    scalar* mask = Backend::data(mask_);
    if (!context.training || probability == 0) {
      Backend::fill(mask, count, scalar(1));
    } else {
      if (context.rng == nullptr)
        throw argument_error("dropout: training mode needs a random generator in the context");
      const auto keep_scale = static_cast<scalar>(1.0 / (1.0 - probability));
      for (std::size_t i = 0; i < count; ++i)
        mask[i] = context.rng->uniform() < probability ? scalar(0) : keep_scale;
    }
    const scalar* in = Backend::data(x);
    scalar* out = Backend::data(y);
    Backend::parallel_for(count, [=](std::size_t i) { out[i] = in[i] * mask[i]; });
  }

  void backward(const tensor& dy, tensor* dx, const backward_context&) {
    if (dx == nullptr) return;
    Backend::resize(*dx, Backend::shape(dy));
    const scalar* grad = Backend::data(dy);
    const scalar* mask = Backend::data(mask_);
    scalar* out = Backend::data(*dx);
    Backend::parallel_for(Backend::size(dy), [=](std::size_t i) { out[i] = grad[i] * mask[i]; });
  }

  template <class Visitor>
  void visit_buffers(Visitor&&) {}

 private:
  tensor mask_;
};

template <class Probability = std::ratio<1, 2>>
struct dropout {
  static_assert(Probability::num >= 0 && Probability::num < Probability::den,
                "advgan: dropout probability must be in [0, 1)");
  static constexpr const char* kind = "dropout";

  template <class InputShape>
  using output_shape = InputShape;

  template <class InputShape, class Backend>
  using bind = dropout_layer<Probability, InputShape, Backend>;
};

}  // namespace advgan
