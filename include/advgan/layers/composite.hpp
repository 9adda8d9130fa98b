#pragma once
// Layers built from other layers, for networks that are not one plain stack:
//
//   named<"prefix", Spec>       Spec with "prefix." before every parameter and
//                               buffer name, as a named submodule of a
//                               torch.nn.Module.
//   chain<Specs...>             the layers one after another, as a sequential
//                               stack inside a layer.
//   concat_branches<Specs...>   every branch on the same input, outputs
//                               concatenated along channels (torch.cat(dim=1)).
//
// chain and concat_branches keep their layers' names unchanged, so that a
// network written as named<> blocks gets the flat state_dict names of a
// PyTorch module with named attributes, such as
// "Mixed_5b.branch5x5_2.conv.weight" in torchvision's InceptionV3. Two
// parameters with one name in one chain or concat_branches fail to compile;
// wrap the layers in named<> to tell them apart.

#include <algorithm>    // std::copy_n
#include <array>        // std::array
#include <cstddef>      // std::size_t
#include <string>       // std::string
#include <string_view>  // std::string_view
#include <tuple>        // std::tuple, std::get
#include <type_traits>  // std::remove_cvref_t
#include <utility>      // std::index_sequence

#include "advgan/compose/sequential.hpp"
#include "advgan/layers/layer.hpp"

namespace advgan {

/// A string literal as a template argument: named<"conv", ...>.
template <std::size_t N>
struct fixed_string {
  char chars[N]{};
  constexpr fixed_string(const char (&text)[N]) { std::copy_n(text, N, chars); }
  constexpr std::string_view view() const { return {chars, N - 1}; }
};

namespace detail {

/// Returns the parameters of every layer in order, names unchanged.
template <class... Layers>
constexpr auto joined_parameters() {
  std::array<parameter_spec, (std::size_t{0} + ... + Layers::parameters.size())> joined{};
  std::size_t at = 0;
  auto append = [&](const auto& specs) {
    for (const auto& spec : specs) joined[at++] = spec;
  };
  (append(Layers::parameters), ...);
  return joined;
}

template <std::size_t N>
constexpr bool unique_names(const std::array<parameter_spec, N>& specs) {
  for (std::size_t i = 0; i < N; ++i)
    for (std::size_t j = i + 1; j < N; ++j)
      if (specs[i].name == specs[j].name) return false;
  return true;
}

/// Calls f(layer, offset) for every layer of a tuple, where offset is the
/// position of the layer's first parameter among all of them.
template <class Tuple, class Function>
void for_each_bound(Tuple& layers, Function&& f) {
  std::size_t offset = 0;
  std::apply(
      [&](auto&... layer) {
        auto visit = [&](auto& one) {
          f(one, offset);
          for (const auto& spec : std::remove_cvref_t<decltype(one)>::parameters)
            offset += spec.size();
        };
        (visit(layer), ...);
      },
      layers);
}

}  // namespace detail

// -- named -------------------------------------------------------------------

template <fixed_string Name, class Inner>
class named_layer {
 public:
  using backend = typename Inner::backend;
  using scalar = typename Inner::scalar;
  using tensor = typename Inner::tensor;
  using input_shape = typename Inner::input_shape;
  using output_shape = typename Inner::output_shape;

 private:
  static constexpr std::string_view prefix = Name.view();

  static constexpr std::size_t name_chars = [] {
    std::size_t total = 0;
    for (const auto& spec : Inner::parameters) total += prefix.size() + 1 + spec.name.size();
    return total;
  }();

  /// The prefixed names, one after another, which `parameters` points into.
  static constexpr std::array<char, name_chars + 1> name_storage = [] {
    std::array<char, name_chars + 1> text{};
    std::size_t at = 0;
    for (const auto& spec : Inner::parameters) {
      for (const char c : prefix) text[at++] = c;
      text[at++] = '.';
      for (const char c : spec.name) text[at++] = c;
    }
    return text;
  }();

 public:
  static constexpr std::array<parameter_spec, Inner::parameters.size()> parameters = [] {
    std::array<parameter_spec, Inner::parameters.size()> specs{};
    std::size_t at = 0;
    for (std::size_t i = 0; i < specs.size(); ++i) {
      specs[i] = Inner::parameters[i];
      const std::size_t length = prefix.size() + 1 + Inner::parameters[i].name.size();
      specs[i].name = std::string_view(name_storage.data() + at, length);
      at += length;
    }
    return specs;
  }();

  static constexpr bool in_place_backward = detail::in_place_backward<Inner>;

  void bind(scalar* values, scalar* gradients) { inner_.bind(values, gradients); }
  void reset_parameters(philox& rng, init_scheme scheme) { inner_.reset_parameters(rng, scheme); }
  void forward(const tensor& x, tensor& y, const forward_context& context) {
    inner_.forward(x, y, context);
  }
  void backward(const tensor& dy, tensor* dx, const backward_context& context) {
    inner_.backward(dy, dx, context);
  }

  /// Calls visitor("<prefix>.<name>", ...) for each of the inner layer's buffers.
  template <class Visitor>
  void visit_buffers(Visitor&& visitor) {
    inner_.visit_buffers([&](const char* name, auto&&... buffer) {
      const std::string full = std::string(prefix) + "." + name;
      visitor(full.c_str(), buffer...);
    });
  }

  Inner& inner() { return inner_; }

 private:
  Inner inner_;
};

/// Spec with "Name." before the names of its parameters and buffers.
template <fixed_string Name, class Spec>
struct named {
  static_assert(Name.view().size() > 0, "advgan: named<> needs a non-empty name");
  static constexpr const char* kind = Spec::kind;

  template <class InputShape>
  static constexpr bool accepts = detail::spec_accepts<Spec, InputShape>();

  template <class InputShape>
  using output_shape = typename Spec::template output_shape<InputShape>;

  template <class InputShape, class Backend>
  using bind = named_layer<Name, typename Spec::template bind<InputShape, Backend>>;
};

// -- chain -------------------------------------------------------------------

template <class InputShape, class Backend, class... Specs>
class chain_layer {
 public:
  using backend = Backend;
  using scalar = typename Backend::scalar;
  using tensor = typename Backend::tensor;
  using input_shape = InputShape;
  using output_shape = typename detail::shape_chain<0, InputShape, Specs...>::output_shape;
  using layer_tuple = typename detail::bind_all<Backend, InputShape,
                                                std::index_sequence_for<Specs...>, Specs...>::type;
  static constexpr std::size_t layer_count = sizeof...(Specs);

 private:
  template <class Tuple>
  struct parameters_of;
  template <class... Layers>
  struct parameters_of<std::tuple<Layers...>> {
    static constexpr auto value = detail::joined_parameters<Layers...>();
  };

 public:
  static constexpr auto parameters = parameters_of<layer_tuple>::value;
  static_assert(detail::unique_names(parameters),
                "advgan: two parameters of a chain have one name; wrap its layers in named<>");

  void bind(scalar* values, scalar* gradients) {
    detail::for_each_bound(layers_, [&](auto& layer, std::size_t offset) {
      layer.bind(values + offset, gradients + offset);
    });
  }

  void reset_parameters(philox& rng, init_scheme scheme) {
    std::apply([&](auto&... layer) { (layer.reset_parameters(rng, scheme), ...); }, layers_);
  }

  /// Runs the layers in order. The last one writes y, and layers may keep
  /// pointers to their outputs (as activations do), so y must stay alive and
  /// unchanged until backward.
  void forward(const tensor& x, tensor& y, const forward_context& context) {
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      (forward_one<I>(x, y, context), ...);
    }
    (std::make_index_sequence<layer_count>{});
  }

  void backward(const tensor& dy, tensor* dx, const backward_context& context) {
    backward_from<layer_count - 1>(dy, nullptr, dx, context);
  }

  template <class Visitor>
  void visit_buffers(Visitor&& visitor) {
    std::apply([&](auto&... layer) { (layer.visit_buffers(visitor), ...); }, layers_);
  }

  template <std::size_t Index>
  auto& layer() {
    return std::get<Index>(layers_);
  }

 private:
  template <std::size_t Index>
  void forward_one(const tensor& x, tensor& y, const forward_context& context) {
    tensor& out = Index + 1 == layer_count ? y : activations_[Index];
    if constexpr (Index == 0)
      std::get<Index>(layers_).forward(x, out, context);
    else
      std::get<Index>(layers_).forward(activations_[Index - 1], out, context);
  }

  /// Backpropagates dy through layers Index, ..., 0, reusing the gradient
  /// buffer for layers that declare in_place_backward, as model does.
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

  layer_tuple layers_;
  std::array<tensor, layer_count> activations_;      // [i] = output of layer i < last
  std::array<tensor, layer_count> input_gradients_;  // [i] = dL/d(input of layer i)
};

/// Layers applied one after another, as one layer.
template <class... Specs>
struct chain {
  static_assert(sizeof...(Specs) > 0, "advgan: chain needs at least one layer");
  static constexpr const char* kind = "chain";

  template <class InputShape>
  static constexpr bool accepts = detail::shape_chain<0, InputShape, Specs...>::valid;

  template <class InputShape>
  using output_shape = typename detail::shape_chain<0, InputShape, Specs...>::output_shape;

  template <class InputShape, class Backend>
  using bind = chain_layer<InputShape, Backend, Specs...>;
};

// -- concat_branches ---------------------------------------------------------

template <class InputShape, class Backend, class... Specs>
class concat_branches_layer {
 public:
  using backend = Backend;
  using scalar = typename Backend::scalar;
  using tensor = typename Backend::tensor;
  using input_shape = InputShape;
  using branch_tuple = std::tuple<typename Specs::template bind<InputShape, Backend>...>;
  static constexpr std::size_t branch_count = sizeof...(Specs);
  static constexpr std::array<std::size_t, branch_count> branch_channels{
      Specs::template output_shape<InputShape>::channels...};
  using first_output =
      typename std::tuple_element_t<0, std::tuple<Specs...>>::template output_shape<InputShape>;
  using output_shape =
      shape<(std::size_t{0} + ... + Specs::template output_shape<InputShape>::channels),
            first_output::height, first_output::width>;
  static constexpr auto parameters =
      detail::joined_parameters<typename Specs::template bind<InputShape, Backend>...>();
  static_assert(detail::unique_names(parameters),
                "advgan: two parameters of concat_branches have one name; wrap its layers in "
                "named<>");

  void bind(scalar* values, scalar* gradients) {
    detail::for_each_bound(branches_, [&](auto& branch, std::size_t offset) {
      branch.bind(values + offset, gradients + offset);
    });
  }

  void reset_parameters(philox& rng, init_scheme scheme) {
    std::apply([&](auto&... branch) { (branch.reset_parameters(rng, scheme), ...); }, branches_);
  }

  /// Runs every branch on x and copies branch b's channels to channels
  /// [offset_b, offset_b + C_b) of y, in branch order.
  void forward(const tensor& x, tensor& y, const forward_context& context) {
    detail::expect_sample_shape<InputShape, Backend>("concat_branches", x);
    batch_ = Backend::shape(x)[0];
    Backend::resize(y, batch_, output_shape::channels, output_shape::height, output_shape::width);
    for_each_branch([&](auto& branch, std::size_t b, std::size_t channel_offset) {
      branch.forward(x, outputs_[b], context);
      const std::size_t block = branch_channels[b] * area;
      const scalar* from = Backend::data(outputs_[b]);
      scalar* to = Backend::data(y) + channel_offset * area;
      for (std::size_t n = 0; n < batch_; ++n)
        Backend::copy(from + n * block, block, to + n * output_shape::size);
    });
  }

  /// Hands each branch its channels of dy; dx is the sum of the branches'
  /// input gradients.
  void backward(const tensor& dy, tensor* dx, const backward_context& context) {
    if (dx != nullptr) {
      Backend::resize(*dx, batch_, InputShape::channels, InputShape::height, InputShape::width);
      Backend::fill(Backend::data(*dx), Backend::size(*dx), scalar(0));
    }
    for_each_branch([&](auto& branch, std::size_t b, std::size_t channel_offset) {
      const std::size_t block = branch_channels[b] * area;
      Backend::resize(branch_gradient_, batch_, branch_channels[b], output_shape::height,
                      output_shape::width);
      const scalar* from = Backend::data(dy) + channel_offset * area;
      for (std::size_t n = 0; n < batch_; ++n)
        Backend::copy(from + n * output_shape::size, block,
                      Backend::data(branch_gradient_) + n * block);
      branch.backward(branch_gradient_, dx != nullptr ? &input_gradient_ : nullptr, context);
      if (dx == nullptr) return;
      scalar* total = Backend::data(*dx);
      const scalar* part = Backend::data(input_gradient_);
      Backend::parallel_blocks(Backend::size(*dx), [=](std::size_t begin, std::size_t end) {
        for (std::size_t i = begin; i < end; ++i) total[i] += part[i];
      });
    });
  }

  template <class Visitor>
  void visit_buffers(Visitor&& visitor) {
    std::apply([&](auto&... branch) { (branch.visit_buffers(visitor), ...); }, branches_);
  }

  template <std::size_t Index>
  auto& branch() {
    return std::get<Index>(branches_);
  }

 private:
  static constexpr std::size_t area = output_shape::height * output_shape::width;

  /// Calls f(branch, index, first output channel) for every branch in order.
  template <class Function>
  void for_each_branch(Function&& f) {
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      std::size_t channel_offset = 0;
      auto visit = [&](auto& branch, std::size_t b) {
        f(branch, b, channel_offset);
        channel_offset += branch_channels[b];
      };
      (visit(std::get<I>(branches_), I), ...);
    }
    (std::make_index_sequence<branch_count>{});
  }

  branch_tuple branches_;
  std::array<tensor, branch_count> outputs_;
  tensor branch_gradient_;  // one branch's channels of dy
  tensor input_gradient_;   // one branch's input gradient
  std::size_t batch_ = 0;
};

namespace detail {

template <class InputShape, class... Specs>
constexpr bool branches_fit() {
  if (!(spec_accepts<Specs, InputShape>() && ...)) return false;
  using first =
      typename std::tuple_element_t<0, std::tuple<Specs...>>::template output_shape<InputShape>;
  return ((Specs::template output_shape<InputShape>::height == first::height &&
           Specs::template output_shape<InputShape>::width == first::width) &&
          ...);
}

}  // namespace detail

/// Runs every branch on the same input and concatenates their outputs along
/// channels, in order. All branches must give outputs of one height and width.
template <class... Specs>
struct concat_branches {
  static_assert(sizeof...(Specs) > 0, "advgan: concat_branches needs at least one branch");
  static constexpr const char* kind = "concat_branches";

  template <class InputShape>
  static constexpr bool accepts = detail::branches_fit<InputShape, Specs...>();

  template <class InputShape>
  using output_shape = shape<
      (std::size_t{0} + ... + Specs::template output_shape<InputShape>::channels),
      std::tuple_element_t<0, std::tuple<Specs...>>::template output_shape<InputShape>::height,
      std::tuple_element_t<0, std::tuple<Specs...>>::template output_shape<InputShape>::width>;

  template <class InputShape, class Backend>
  using bind = concat_branches_layer<InputShape, Backend, Specs...>;
};

}  // namespace advgan
