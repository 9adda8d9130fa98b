#pragma once
// sequential<input<C, H, W>, Layers...>: layers applied one after another,
// with every intermediate shape computed and checked at compile time, and
// model<Spec, Backend>: such a stack bound to a backend, owning its
// parameters, gradients and activations.
//
// Parameter and buffer names are "<index>.<name>", the state_dict keys of the
// equivalent torch.nn.Sequential, so weights move between the two unchanged.

#include <algorithm>    // std::copy_n
#include <array>        // std::array
#include <cstddef>      // std::size_t
#include <cstdint>      // std::int64_t
#include <string>       // std::string
#include <tuple>        // std::tuple
#include <type_traits>  // std::conditional_t, std::remove_cvref_t
#include <utility>      // std::index_sequence
#include <vector>       // std::vector

#include "advgan/core/error.hpp"
#include "advgan/core/philox.hpp"
#include "advgan/core/shape.hpp"
#include "advgan/layers/activations.hpp"
#include "advgan/layers/layer.hpp"
#include "advgan/layers/reshape.hpp"
#include "advgan/layers/tangent.hpp"

namespace advgan {

namespace detail {

template <class Spec, class InputShape>
constexpr bool spec_accepts() {
  if constexpr (requires { Spec::template accepts<InputShape>; })
    return Spec::template accepts<InputShape>;
  else
    return true;
}

/// Fails to compile when the layer at LayerIndex is not a layer spec; the
/// template arguments name the index and the offending type.
template <std::size_t LayerIndex, class NotALayer, bool Valid>
struct check_is_layer {
  static_assert(Valid,
                "advgan: every element of sequential after input<...> must be a layer spec "
                "(a type with `kind` and `output_shape<Input>`); see LayerIndex and NotALayer");
  static constexpr bool value = Valid;
};

/// Fails to compile when the layer at LayerIndex cannot take InputShape,
/// for instance a kernel larger than the padded input or a reshape that
/// changes the element count.
template <std::size_t LayerIndex, class Layer, class InputShape, bool Valid>
struct check_layer_fits {
  static_assert(Valid,
                "advgan: layer does not fit its input shape; see LayerIndex, Layer and "
                "InputShape");
  static constexpr bool value = Valid;
};

template <class Spec, class InputShape, bool Valid>
struct output_of {
  using type = InputShape;  // a placeholder, so one error does not cascade
};
template <class Spec, class InputShape>
struct output_of<Spec, InputShape, true> {
  using type = typename Spec::template output_shape<InputShape>;
};

template <class... Types>
struct type_list {};

/// Walks the layer list, checking each layer and collecting the shapes.
template <std::size_t Index, class InputShape, class... Specs>
struct shape_chain {
  using output_shape = InputShape;
  using shapes = type_list<>;
  static constexpr bool valid = true;
};

template <std::size_t Index, class InputShape, class Spec, class... Rest>
struct shape_chain<Index, InputShape, Spec, Rest...> {
  static constexpr bool is_spec = layer_spec<Spec, InputShape>;
  static constexpr bool fits = check_is_layer<Index, Spec, is_spec>::value &&
                               check_layer_fits < Index,
                        Spec, InputShape, is_spec &&spec_accepts<Spec, InputShape>() > ::value;
  using layer_output = typename output_of<Spec, InputShape, fits>::type;
  using next = shape_chain<Index + 1, layer_output, Rest...>;
  using output_shape = typename next::output_shape;
  static constexpr bool valid = fits && next::valid;
};

template <class Input>
struct input_check {
  static_assert(is_shape_v<typename Input::shape_type>,
                "advgan: the first element of sequential must be input<C, H, W>");
};

/// The tuple of bound layers for a layer list.
template <class Backend, class InputShape, class Indices, class... Specs>
struct bind_all;
template <class Backend, class InputShape, std::size_t... I, class... Specs>
struct bind_all<Backend, InputShape, std::index_sequence<I...>, Specs...>;

/// The shape that enters the layer at Index.
template <std::size_t Index, class InputShape, class... Specs>
struct input_shape_at;
template <class InputShape, class Spec, class... Rest>
struct input_shape_at<0, InputShape, Spec, Rest...> {
  using type = InputShape;
};
template <std::size_t Index, class InputShape, class Spec, class... Rest>
struct input_shape_at<Index, InputShape, Spec, Rest...> {
  using type = typename input_shape_at<Index - 1, typename Spec::template output_shape<InputShape>,
                                       Rest...>::type;
};

template <class Backend, class InputShape, std::size_t... I, class... Specs>
struct bind_all<Backend, InputShape, std::index_sequence<I...>, Specs...> {
  using type = std::tuple<typename Specs::template bind<
      typename input_shape_at<I, InputShape, Specs...>::type, Backend>...>;
};

/// A visitor made of several lambdas, one overload each.
template <class... Functions>
struct overloaded : Functions... {
  using Functions::operator()...;
};
template <class... Functions>
overloaded(Functions...) -> overloaded<Functions...>;

/// Whether a layer spec maps every finite input to a finite output, so that
/// the scan in model::forward() can skip its output: a NaN or infinity there
/// comes from its input, which the scan has already read. Relu, tanh,
/// sigmoid, leaky_relu with a slope in [-1, 1], flatten and reshape qualify.
template <class Spec>
inline constexpr bool keeps_values_finite = false;
template <>
inline constexpr bool keeps_values_finite<relu> = true;
template <>
inline constexpr bool keeps_values_finite<tanh_activation> = true;
template <>
inline constexpr bool keeps_values_finite<sigmoid> = true;
template <class Slope>
inline constexpr bool keeps_values_finite<leaky_relu<Slope>> =
    Slope::num <= Slope::den && -Slope::num <= Slope::den;
template <>
inline constexpr bool keeps_values_finite<flatten> = true;
template <std::size_t Channels, std::size_t Height, std::size_t Width>
inline constexpr bool keeps_values_finite<reshape<Channels, Height, Width>> = true;

/// Whether a bound layer's backward may write dx over dy.
template <class Layer>
constexpr bool in_place_backward = [] {
  if constexpr (requires { Layer::in_place_backward; })
    return static_cast<bool>(Layer::in_place_backward);
  else
    return false;
}();

/// Sums the parameter counts of a tuple of bound layers.
template <class LayerTuple>
struct parameter_total;
template <class... Layers>
struct parameter_total<std::tuple<Layers...>> {
  static constexpr std::size_t value = [] {
    std::size_t total = 0;
    auto add = [&](const auto& specs) {
      for (const auto& p : specs) total += p.size();
    };
    (add(Layers::parameters), ...);
    return total;
  }();
};

}  // namespace detail

/// A stack of layers after an input<C, H, W>, as torch.nn.Sequential.
template <class Input, class... Specs>
struct sequential {
  static_assert(sizeof...(Specs) > 0, "advgan: sequential needs at least one layer");
  static constexpr detail::input_check<Input> input_checked{};

  using input_shape = typename Input::shape_type;
  using chain = detail::shape_chain<0, input_shape, Specs...>;
  using output_shape = typename chain::output_shape;
  static constexpr std::size_t layer_count = sizeof...(Specs);
  static constexpr const char* kind = "sequential";
  static constexpr std::array<const char*, layer_count> kinds{Specs::kind...};

  template <std::size_t Index>
  using layer_input_shape = typename detail::input_shape_at<Index, input_shape, Specs...>::type;

  /// The spec of the layer at Index.
  template <std::size_t Index>
  using layer_spec = std::tuple_element_t<Index, std::tuple<Specs...>>;

  template <class Backend>
  using layers = typename detail::bind_all<Backend, input_shape, std::index_sequence_for<Specs...>,
                                           Specs...>::type;
};

/// Where a non-finite value sits: the layer index, the flat index in that
/// layer's output, and the value.
struct non_finite_location {
  std::size_t layer;
  std::size_t index;
  double value;
};

template <class T>
inline constexpr bool is_sequential_v = false;
template <class Input, class... Specs>
inline constexpr bool is_sequential_v<sequential<Input, Specs...>> = true;

/// A sequential spec bound to a backend: parameters, gradients, buffers and
/// the activations of the last forward pass.
///
/// Parameters of all layers live in one contiguous array (and gradients in
/// another), so an optimizer updates the whole model in one pass.
template <class Spec, class Backend>
class model {
  static_assert(is_sequential_v<Spec>,
                "advgan: model<Spec, Backend> needs Spec = sequential<input<...>, layers...>");
  static_assert(Spec::chain::valid, "advgan: the layer stack does not fit together");

 public:
  using spec = Spec;
  using backend = Backend;
  using scalar = typename Backend::scalar;
  using tensor = typename Backend::tensor;
  using input_shape = typename Spec::input_shape;
  using output_shape = typename Spec::output_shape;
  using layer_tuple = typename Spec::template layers<Backend>;
  static constexpr std::size_t layer_count = Spec::layer_count;

  /// Total parameter count, known at compile time.
  static constexpr std::size_t parameter_count = detail::parameter_total<layer_tuple>::value;

  /// Allocates every parameter and initialises it with `scheme` from a
  /// generator seeded with `seed`.
  explicit model(std::uint64_t seed = 0, init_scheme scheme = init_scheme::pytorch) {
    Backend::resize(values_, parameter_count, 1, 1, 1);
    Backend::resize(gradients_, parameter_count, 1, 1, 1);
    Backend::fill(Backend::data(gradients_), parameter_count, scalar(0));
    std::size_t offset = 0;
    for_each_layer([&](auto& layer, auto) {
      using layer_type = std::remove_cvref_t<decltype(layer)>;
      layer.bind(Backend::data(values_) + offset, Backend::data(gradients_) + offset);
      for (const auto& p : layer_type::parameters) offset += p.size();
    });
    philox rng(seed);
    reset_parameters(rng, scheme);
  }

  model(const model&) = delete;
  model& operator=(const model&) = delete;

  void reset_parameters(philox& rng, init_scheme scheme) {
    for_each_layer([&](auto& layer, auto) { layer.reset_parameters(rng, scheme); });
  }

  /// Switches between training mode (batch statistics, dropout, state
  /// updates) and evaluation mode.
  void train(bool training = true) { training_ = training; }
  void eval() { training_ = false; }
  bool training() const { return training_; }

  /// Runs every layer on x, shape (N, C, H, W) with (C, H, W) = input_shape,
  /// and returns the output. x must stay alive and unchanged until backward.
  /// With check_non_finite(true), also finds the first NaN or infinity in
  /// the layer outputs, for first_non_finite_activation().
  const tensor& forward(const tensor& x, philox* rng = nullptr) {
    detail::expect_sample_shape<input_shape, Backend>("sequential input", x);
    const forward_context context{training_, rng};
    scanned_ = false;
    first_non_finite_ = {layer_count, 0, 0.0};
    for_each_layer([&](auto& layer, auto index) {
      constexpr std::size_t i = decltype(index)::value;
      const tensor& in = i == 0 ? x : activations_[i - 1];
      layer.forward(in, activations_[i], context);
      // The scan reads the output that the layer has just written, while it
      // is still in cache, and stops at the first layer with a bad value.
      // Layer 0 is always read, because nothing has checked the input x.
      constexpr bool skip =
          i > 0 && detail::keeps_values_finite<typename Spec::template layer_spec<i>>;
      if (!skip && check_non_finite_ && first_non_finite_.layer == layer_count)
        first_non_finite_ = find_non_finite(i);
    });
    scanned_ = check_non_finite_;
    return activations_[layer_count - 1];
  }

  /// Turns the scan for NaN and infinity in forward() on or off (off by
  /// default). While on, forward() checks each layer's output right after
  /// the layer writes it, and first_non_finite_activation() returns the
  /// result of that scan instead of reading every output again.
  void check_non_finite(bool enabled) {
    check_non_finite_ = enabled;
    scanned_ = false;
  }

  /// Backpropagates dy (the gradient of the output of the last forward
  /// pass). Parameter gradients accumulate (+=) unless turned off in
  /// `context`; the input gradient is assigned to *dx when dx is not null.
  void backward(const tensor& dy, tensor* dx, const backward_context& context = {}) {
    backward_from<layer_count - 1>(dy, nullptr, dx, context);
  }

  /// Runs the tangent pass after forward(x): returns y' = J(x) x', the
  /// directional derivative of the output along x_tangent, which has the
  /// shape of x. Every layer must be a twice_differentiable_layer.
  /// x_tangent must stay alive and unchanged until tangent_backward.
  const tensor& tangent_forward(const tensor& x_tangent) {
    static_assert(all_twice_differentiable());
    detail::expect_sample_shape<input_shape, Backend>("sequential input tangent", x_tangent);
    const extents forward_input = {Backend::shape(activations_[0])[0], input_shape::channels,
                                   input_shape::height, input_shape::width};
    if (Backend::shape(x_tangent) != forward_input)
      throw shape_error("sequential input tangent", to_string(forward_input),
                        to_string(Backend::shape(x_tangent)));
    for_each_layer([&](auto& layer, auto index) {
      constexpr std::size_t i = decltype(index)::value;
      const tensor& in = i == 0 ? x_tangent : tangents_[i - 1];
      layer.tangent_forward(in, tangents_[i]);
    });
    return tangents_[layer_count - 1];
  }

  /// Backpropagates a loss L(y, y') of the output y and the output tangent
  /// y' of the last forward and tangent_forward passes, given dy = dL/dy and
  /// dy_tangent = dL/dy'. Parameter gradients accumulate (+=) unless turned
  /// off in `context`; dL/dx and dL/dx' are assigned to *dx and *dx_tangent
  /// when those are not null.
  void tangent_backward(const tensor& dy, const tensor& dy_tangent, tensor* dx, tensor* dx_tangent,
                        const backward_context& context = {}) {
    static_assert(all_twice_differentiable());
    tangent_backward_from<layer_count - 1>(dy, dy_tangent, dx, dx_tangent, context);
  }

  /// Sets every parameter gradient to zero.
  void zero_grad() { Backend::fill(Backend::data(gradients_), parameter_count, scalar(0)); }

  scalar* parameters() { return Backend::data(values_); }
  const scalar* parameters() const { return Backend::data(values_); }
  scalar* gradients() { return Backend::data(gradients_); }
  const scalar* gradients() const { return Backend::data(gradients_); }

  const tensor& output() const { return activations_[layer_count - 1]; }
  const tensor& activation(std::size_t index) const { return activations_[index]; }

  /// Calls visitor(name, value, gradient, spec) for every parameter in
  /// state_dict order; value and gradient point to spec.size() scalars.
  template <class Visitor>
  void visit_parameters(Visitor&& visitor) {
    std::size_t offset = 0;
    for_each_layer([&](auto& layer, auto index) {
      using layer_type = std::remove_cvref_t<decltype(layer)>;
      for (const auto& p : layer_type::parameters) {
        visitor(detail::concat(decltype(index)::value, ".", p.name),
                Backend::data(values_) + offset, Backend::data(gradients_) + offset, p);
        offset += p.size();
      }
    });
  }

  /// Calls visitor(name, data, spec) for every floating-point buffer and
  /// visitor(name, int64&) for every counter, in state_dict order.
  template <class Visitor>
  void visit_buffers(Visitor&& visitor) {
    for_each_layer([&](auto& layer, auto index) {
      const std::string prefix = detail::concat(decltype(index)::value, ".");
      layer.visit_buffers(
          [&](const char* name, auto&&... rest) { visitor(prefix + name, rest...); });
    });
  }

  /// Appends every floating-point buffer's values to `values` and every
  /// counter to `counters`, in visit_buffers order, for restore_buffers().
  /// Allocates nothing once the vectors have the capacity.
  void save_buffers(std::vector<scalar>& values, std::vector<std::int64_t>& counters) {
    for_each_layer([&](auto& layer, auto) {
      layer.visit_buffers(detail::overloaded{
          [&](const char*, scalar* data, const parameter_spec& spec) {
            values.insert(values.end(), data, data + spec.size());
          },
          [&](const char*, std::int64_t& counter) { counters.push_back(counter); }});
    });
  }

  /// Writes back what save_buffers() appended, starting at the given
  /// positions of the two vectors, and advances the positions past it.
  void restore_buffers(const std::vector<scalar>& values, std::size_t& value_position,
                       const std::vector<std::int64_t>& counters, std::size_t& counter_position) {
    for_each_layer([&](auto& layer, auto) {
      layer.visit_buffers(detail::overloaded{
          [&](const char*, scalar* data, const parameter_spec& spec) {
            std::copy_n(values.begin() + static_cast<std::ptrdiff_t>(value_position), spec.size(),
                        data);
            value_position += spec.size();
          },
          [&](const char*, std::int64_t& counter) { counter = counters[counter_position++]; }});
    });
  }

  /// The layer at Index, for tests and for layer-specific settings.
  template <std::size_t Index>
  auto& layer() {
    return std::get<Index>(layers_);
  }

  /// Finds the first layer whose last output holds a NaN or infinity, so an
  /// error can name where a non-finite value first appeared, also when a
  /// later layer (tanh, sigmoid) maps it back to a finite value. Returns
  /// layer_count as the layer when every output is finite.
  non_finite_location first_non_finite_activation() const {
    if (scanned_) return first_non_finite_;
    for (std::size_t i = 0; i < layer_count; ++i) {
      const non_finite_location found = find_non_finite(i);
      if (found.layer < layer_count) return found;
    }
    return {layer_count, 0, 0.0};
  }

  /// Returns the kind of the layer at index, as "conv2d".
  static const char* layer_kind(std::size_t index) { return Spec::kinds[index]; }

 private:
  template <class Function>
  void for_each_layer(Function&& f) {
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (f(std::get<I>(layers_), std::integral_constant<std::size_t, I>{}), ...);
    }
    (std::make_index_sequence<layer_count>{});
  }

  /// Backpropagates dy through layers Index, ..., 0. dy_buffer is the
  /// model's own tensor that holds dy, or null when dy is the caller's. A
  /// layer that declares in_place_backward writes its input gradient over
  /// dy_buffer, so point-wise layers and batch norm need no gradient tensor
  /// of their own.
  template <std::size_t Index>
  void backward_from(const tensor& dy, tensor* dy_buffer, tensor* dx,
                     const backward_context& context) {
    auto& layer = std::get<Index>(layers_);
    if constexpr (Index == 0) {
      layer.backward(dy, dx, context);
    } else {
      tensor* target = &input_gradients_[Index];
      if constexpr (detail::in_place_backward<std::remove_cvref_t<decltype(layer)>>)
        if (dy_buffer != nullptr) target = dy_buffer;
      layer.backward(dy, target, context);
      backward_from<Index - 1>(*target, target, dx, context);
    }
  }

  template <std::size_t Index>
  void tangent_backward_from(const tensor& dy, const tensor& dy_tangent, tensor* dx,
                             tensor* dx_tangent, const backward_context& context) {
    auto& layer = std::get<Index>(layers_);
    if constexpr (Index == 0) {
      layer.tangent_backward(dy, dy_tangent, dx, dx_tangent, context);
    } else {
      layer.tangent_backward(dy, dy_tangent, &input_gradients_[Index],
                             &tangent_input_gradients_[Index], context);
      tangent_backward_from<Index - 1>(input_gradients_[Index], tangent_input_gradients_[Index], dx,
                                       dx_tangent, context);
    }
  }

  /// Returns the first NaN or infinity in the output of layer i, or a
  /// location with layer == layer_count when it has none.
  non_finite_location find_non_finite(std::size_t i) const {
    const std::size_t n = Backend::size(activations_[i]);
    const std::size_t at = Backend::first_non_finite(Backend::data(activations_[i]), n);
    if (at == n) return {layer_count, 0, 0.0};
    return {i, at, static_cast<double>(Backend::data(activations_[i])[at])};
  }

  /// Checks every layer for a tangent pass; the failing check names the
  /// first layer without one.
  static constexpr bool all_twice_differentiable() {
    return []<std::size_t... I>(std::index_sequence<I...>) {
      return (detail::check_twice_differentiable<
                  I, typename Spec::template layer_spec<I>,
                  twice_differentiable_layer<std::tuple_element_t<I, layer_tuple>>>::value &&
              ...);
    }
    (std::make_index_sequence<layer_count>{});
  }

  layer_tuple layers_;
  tensor values_;
  tensor gradients_;
  std::array<tensor, layer_count> activations_;
  std::array<tensor, layer_count> input_gradients_;          // [i] = dL/d(input of layer i)
  std::array<tensor, layer_count> tangents_;                 // [i] = output tangent of layer i
  std::array<tensor, layer_count> tangent_input_gradients_;  // [i] = dL/d(input tangent of i)
  bool training_ = true;
  bool check_non_finite_ = false;
  bool scanned_ = false;  // whether first_non_finite_ belongs to the last forward()
  non_finite_location first_non_finite_{layer_count, 0, 0.0};
};

}  // namespace advgan
