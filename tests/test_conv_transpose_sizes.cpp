// Output-size rules of the shape-changing layers (conv2d, conv_transpose2d,
// upsample_nearest, flatten and reshape) against PyTorch's rules, at compile
// time and at run time, and a transposed convolution small enough to check by
// hand.

#include <doctest/doctest.h>

#include <array>        // std::array
#include <cstddef>      // std::size_t
#include <cstdint>      // std::int64_t
#include <string>       // std::string
#include <type_traits>  // std::is_same_v
#include <utility>      // std::index_sequence

#include "advgan/advgan.hpp"

using namespace advgan;

namespace {

// PyTorch's size rules for dilation 1, written with signed integers:
//   Conv2d:          out = (in + 2p - k) / s + 1, rejected when in + 2p < k.
//   ConvTranspose2d: out = (in - 1) * s - 2p + (k - 1) + output_padding + 1,
//                    rejected when output_padding >= s or out <= 0.
// Both reject a stride or kernel size of 0. torch 1.13's F.conv2d and
// F.conv_transpose2d give exactly these sizes and errors on the grid below
// (checked by running them on every grid point).
constexpr bool torch_conv_valid(std::int64_t in, std::int64_t k, std::int64_t s, std::int64_t p) {
  return s > 0 && k > 0 && in + 2 * p >= k;
}
constexpr std::int64_t torch_conv_size(std::int64_t in, std::int64_t k, std::int64_t s,
                                       std::int64_t p) {
  return (in + 2 * p - k) / s + 1;
}
constexpr std::int64_t torch_conv_transpose_size(std::int64_t in, std::int64_t k, std::int64_t s,
                                                 std::int64_t p, std::int64_t output_padding) {
  return (in - 1) * s - 2 * p + (k - 1) + output_padding + 1;
}
constexpr bool torch_conv_transpose_valid(std::int64_t in, std::int64_t k, std::int64_t s,
                                          std::int64_t p, std::int64_t output_padding) {
  return s > 0 && k > 0 && output_padding < s &&
         torch_conv_transpose_size(in, k, s, p, output_padding) > 0;
}

/// Returns the message of the argument_error that f throws, or "" when it
/// throws nothing.
template <class Function>
std::string argument_error_message(Function&& f) {
  try {
    f();
  } catch (const argument_error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// The grid every size rule is checked on: input sizes 1..9, kernels 1..5,
// strides 1..3, paddings 0..2 and, for transposed convolutions, output
// paddings 0..3 (3 is never valid on this grid, so it exercises rejection).
constexpr std::size_t grid_inputs = 9;
constexpr std::size_t grid_kernels = 5;
constexpr std::size_t grid_strides = 3;
constexpr std::size_t grid_paddings = 3;
constexpr std::size_t grid_output_paddings = 4;

/// One grid point, decoded from a flat index so a compile-time fold can
/// enumerate the grid. Height is in, width is 10 - in, so both dimensions
/// take every size and differ from each other.
struct grid_point {
  std::size_t in;
  std::size_t kernel;
  std::size_t stride;
  std::size_t padding;
  std::size_t output_padding;

  static constexpr grid_point at(std::size_t index) {
    grid_point point{};
    point.in = index % grid_inputs + 1;
    index /= grid_inputs;
    point.kernel = index % grid_kernels + 1;
    index /= grid_kernels;
    point.stride = index % grid_strides + 1;
    index /= grid_strides;
    point.padding = index % grid_paddings;
    index /= grid_paddings;
    point.output_padding = index;
    return point;
  }
  constexpr std::size_t width() const { return 10 - in; }
};

constexpr std::size_t conv_grid_size = grid_inputs * grid_kernels * grid_strides * grid_paddings;

/// Returns whether conv2d's compile-time accepts<> and output_shape<> agree
/// with PyTorch at grid point Index.
template <std::size_t Index>
constexpr bool conv2d_spec_matches() {
  constexpr grid_point point = grid_point::at(Index);
  using spec = conv2d<2, point.kernel, point.stride, point.padding>;
  using in_shape = shape<3, point.in, point.width()>;
  constexpr bool valid = torch_conv_valid(point.in, point.kernel, point.stride, point.padding) &&
                         torch_conv_valid(point.width(), point.kernel, point.stride, point.padding);
  if constexpr (spec::template accepts<in_shape> != valid) {
    return false;
  } else if constexpr (valid) {
    using out = typename spec::template output_shape<in_shape>;
    return out::channels == 2 &&
           out::height == torch_conv_size(point.in, point.kernel, point.stride, point.padding) &&
           out::width == torch_conv_size(point.width(), point.kernel, point.stride, point.padding);
  } else {
    return true;
  }
}

/// Returns the same for conv_transpose2d. Output paddings >= stride are
/// skipped, because the spec rejects them with a static_assert.
template <std::size_t Index>
constexpr bool conv_transpose2d_spec_matches() {
  constexpr grid_point point = grid_point::at(Index);
  if constexpr (point.output_padding >= point.stride) {
    return true;
  } else {
    using spec =
        conv_transpose2d<2, point.kernel, point.stride, point.padding, point.output_padding>;
    using in_shape = shape<3, point.in, point.width()>;
    constexpr bool valid = torch_conv_transpose_valid(point.in, point.kernel, point.stride,
                                                      point.padding, point.output_padding) &&
                           torch_conv_transpose_valid(point.width(), point.kernel, point.stride,
                                                      point.padding, point.output_padding);
    if constexpr (spec::template accepts<in_shape> != valid) {
      return false;
    } else if constexpr (valid) {
      using out = typename spec::template output_shape<in_shape>;
      return out::channels == 2 &&
             out::height == torch_conv_transpose_size(point.in, point.kernel, point.stride,
                                                      point.padding, point.output_padding) &&
             out::width == torch_conv_transpose_size(point.width(), point.kernel, point.stride,
                                                     point.padding, point.output_padding);
    } else {
      return true;
    }
  }
}

template <std::size_t... Index>
constexpr std::array<bool, sizeof...(Index)> conv2d_spec_results(std::index_sequence<Index...>) {
  return {conv2d_spec_matches<Index>()...};
}
template <std::size_t... Index>
constexpr std::array<bool, sizeof...(Index)> conv_transpose2d_spec_results(
    std::index_sequence<Index...>) {
  return {conv_transpose2d_spec_matches<Index>()...};
}

/// Upsampling by Factor: PyTorch's nearest mode gives floor(in * Factor).
template <std::size_t Index>
constexpr bool upsample_spec_matches() {
  constexpr std::size_t in = Index % grid_inputs + 1;
  constexpr std::size_t factor = Index / grid_inputs + 1;
  using out = typename upsample_nearest<factor>::template output_shape<shape<2, in, 10 - in>>;
  return out::channels == 2 && out::height == in * factor && out::width == (10 - in) * factor;
}
template <std::size_t... Index>
constexpr std::array<bool, sizeof...(Index)> upsample_spec_results(std::index_sequence<Index...>) {
  return {upsample_spec_matches<Index>()...};
}

/// reshape<C, H, W> on a feature vector of Size values: accepted exactly when
/// C * H * W == Size, as torch.nn.Unflatten requires.
template <std::size_t Index>
constexpr bool reshape_spec_matches() {
  constexpr std::size_t size = Index / 27 + 1;
  constexpr std::size_t c = Index % 3 + 1;
  constexpr std::size_t h = Index / 3 % 3 + 1;
  constexpr std::size_t w = Index / 9 % 3 + 1;
  using spec = reshape<c, h, w>;
  if constexpr (spec::template accepts<shape<size>> != (c * h * w == size)) {
    return false;
  } else {
    using out = typename spec::template output_shape<shape<size>>;
    return out::channels == c && out::height == h && out::width == w;
  }
}
template <std::size_t... Index>
constexpr std::array<bool, sizeof...(Index)> reshape_spec_results(std::index_sequence<Index...>) {
  return {reshape_spec_matches<Index>()...};
}

/// Runs a model on a batch of 2 and checks that every activation has the
/// shape the compile-time chain gives it, and the output `expected`.
template <class Spec>
void check_run_time_shapes(const extents& expected_output) {
  using in = typename Spec::input_shape;
  using out = typename Spec::output_shape;
  model<Spec, cpu<double>> m(3);
  cpu<double>::tensor x;
  cpu<double>::resize(x, 2, in::channels, in::height, in::width);
  philox rng(5);
  cpu<double>::fill_normal(x.data(), x.size(), rng, 0.0, 1.0);

  const auto& y = m.forward(x);
  CHECK(cpu<double>::shape(y) == expected_output);
  CHECK(extents{2, out::channels, out::height, out::width} == expected_output);

  [&]<std::size_t... I>(std::index_sequence<I...>) {
    auto check_layer = [&]<std::size_t Layer>(std::integral_constant<std::size_t, Layer>) {
      using layer_out = std::conditional_t<Layer + 1 == Spec::layer_count, out,
                                           typename Spec::template layer_input_shape<(
                                               Layer + 1 < Spec::layer_count ? Layer + 1 : 0)>>;
      INFO("layer " << Layer << " (" << Spec::kinds[Layer] << ")");
      CHECK(cpu<double>::shape(m.activation(Layer)) ==
            extents{2, layer_out::channels, layer_out::height, layer_out::width});
    };
    (check_layer(std::integral_constant<std::size_t, I>{}), ...);
  }
  (std::make_index_sequence<Spec::layer_count>{});

  cpu<double>::tensor dy;
  cpu<double>::resize(dy, cpu<double>::shape(y));
  cpu<double>::fill(dy.data(), dy.size(), 1.0);
  cpu<double>::tensor dx;
  m.backward(dy, &dx);
  CHECK(cpu<double>::shape(dx) == extents{2, in::channels, in::height, in::width});
}

}  // namespace

TEST_CASE("conv_transpose2d 14x14 output sizes") {
  using padding0 = sequential<input<1, 14, 14>, conv_transpose2d<1, 3, 2, 1, 0>>;
  using padding1 = sequential<input<1, 14, 14>, conv_transpose2d<1, 3, 2, 1, 1>>;
  CHECK(std::is_same_v<padding0::output_shape, shape<1, 27, 27>>);
  CHECK(std::is_same_v<padding1::output_shape, shape<1, 28, 28>>);
  check_run_time_shapes<padding0>({2, 1, 27, 27});
  check_run_time_shapes<padding1>({2, 1, 28, 28});

  CHECK(size_rule::conv_transpose_size(14, 3, 2, 1, 0) == 27);
  CHECK(size_rule::conv_transpose_size(14, 3, 2, 1, 1) == 28);
  CHECK(size_rule::conv_transpose_valid(14, 3, 2, 1, 1));
  CHECK_FALSE(size_rule::conv_transpose_valid(14, 3, 2, 1, 2));
}

TEST_CASE("conv_transpose2d output_padding 2 stride 2 rejected") {
  CHECK_THROWS_AS(size_rule::check_conv_transpose("conv_transpose2d", 14, 3, 2, 1, 2),
                  argument_error);
  const std::string message = argument_error_message(
      [] { size_rule::check_conv_transpose("conv_transpose2d", 14, 3, 2, 1, 2); });
  INFO("message: " << message);
  CHECK(contains(message, "conv_transpose2d"));
  CHECK(contains(message, "output_padding = 2"));
  CHECK(contains(message, "stride = 2"));
}

TEST_CASE("conv_transpose2d single pixel by hand") {
  // x = [[1]], a 3x3 kernel 1..9, stride 2, padding 1, output_padding 1. The
  // uncropped output is the kernel itself plus a zero row and column (4x4).
  // Cropping the padding row and column at the top and left leaves kernel
  // rows 1..2 and columns 1..2, so the output is [[5, 6], [8, 9]].
  using spec = sequential<input<1, 1, 1>, conv_transpose2d<1, 3, 2, 1, 1>>;
  static_assert(std::is_same_v<spec::output_shape, shape<1, 2, 2>>);
  model<spec, cpu<double>> m;
  m.visit_parameters([](const std::string& name, double* value, double*, const parameter_spec& p) {
    if (name == "0.weight") {
      REQUIRE(p.shape() == std::vector<std::size_t>{1, 1, 3, 3});
      for (std::size_t i = 0; i < 9; ++i) value[i] = static_cast<double>(i + 1);
    } else {
      REQUIRE(name == "0.bias");
      value[0] = 0;
    }
  });

  cpu<double>::tensor x;
  cpu<double>::resize(x, 1, 1, 1, 1);
  x(0, 0, 0, 0) = 1;
  const auto& y = m.forward(x);
  REQUIRE(cpu<double>::shape(y) == extents{1, 1, 2, 2});
  CHECK(y(0, 0, 0, 0) == 5);
  CHECK(y(0, 0, 0, 1) == 6);
  CHECK(y(0, 0, 1, 0) == 8);
  CHECK(y(0, 0, 1, 1) == 9);

  // With dy = ones, dx is the sum of the kernel taps that reached the output
  // (5 + 6 + 8 + 9) and dW is 1 exactly at those taps.
  cpu<double>::tensor dy;
  cpu<double>::resize(dy, 1, 1, 2, 2);
  cpu<double>::fill(dy.data(), dy.size(), 1.0);
  cpu<double>::tensor dx;
  m.zero_grad();
  m.backward(dy, &dx);
  REQUIRE(cpu<double>::shape(dx) == extents{1, 1, 1, 1});
  CHECK(dx(0, 0, 0, 0) == 28);

  const std::array<double, 9> expected_weight_grad = {0, 0, 0, 0, 1, 1, 0, 1, 1};
  m.visit_parameters([&](const std::string& name, double*, double* grad, const parameter_spec&) {
    if (name == "0.weight") {
      for (std::size_t i = 0; i < 9; ++i) {
        INFO("kernel position (" << i / 3 << ", " << i % 3 << ")");
        CHECK(grad[i] == expected_weight_grad[i]);
      }
    } else {
      CHECK(grad[0] == 4);  // the bias gradient sums dy
    }
  });
}

TEST_CASE("conv size rule grid against pytorch") {
  for (std::size_t index = 0; index < conv_grid_size; ++index) {
    const grid_point point = grid_point::at(index);
    INFO("in " << point.in << ", kernel " << point.kernel << ", stride " << point.stride
               << ", padding " << point.padding);
    const bool valid = torch_conv_valid(point.in, point.kernel, point.stride, point.padding);
    CHECK(size_rule::conv_valid(point.in, point.kernel, point.stride, point.padding) == valid);
    if (valid) {
      CHECK(static_cast<std::int64_t>(
                size_rule::conv_size(point.in, point.kernel, point.stride, point.padding)) ==
            torch_conv_size(point.in, point.kernel, point.stride, point.padding));
      CHECK_NOTHROW(
          size_rule::check_conv("conv2d", point.in, point.kernel, point.stride, point.padding));
      continue;
    }
    const std::string message = argument_error_message([&] {
      size_rule::check_conv("conv2d", point.in, point.kernel, point.stride, point.padding);
    });
    INFO("message: " << message);
    CHECK(contains(message, "conv2d"));
    CHECK(contains(message, "kernel " + std::to_string(point.kernel)));
    CHECK(contains(message, "stride " + std::to_string(point.stride)));
    CHECK(contains(message, "padding " + std::to_string(point.padding)));
    CHECK(contains(message, "input size " + std::to_string(point.in)));
  }
}

TEST_CASE("conv size rule zero stride or kernel") {
  CHECK_FALSE(size_rule::conv_valid(5, 3, 0, 0));
  CHECK_FALSE(size_rule::conv_valid(5, 0, 1, 0));
  CHECK_THROWS_AS(size_rule::check_conv("conv2d", 5, 3, 0, 0), argument_error);
  CHECK_THROWS_AS(size_rule::check_conv("conv2d", 5, 0, 1, 0), argument_error);
  CHECK_FALSE(size_rule::conv_transpose_valid(5, 3, 0, 0, 0));
  CHECK_FALSE(size_rule::conv_transpose_valid(5, 0, 1, 0, 0));
  CHECK_FALSE(size_rule::conv_transpose_valid(0, 3, 1, 0, 0));
  CHECK_THROWS_AS(size_rule::check_conv_transpose("conv_transpose2d", 5, 0, 1, 0, 0),
                  argument_error);
}

TEST_CASE("conv_transpose size rule grid against pytorch") {
  for (std::size_t index = 0; index < conv_grid_size * grid_output_paddings; ++index) {
    const grid_point point = grid_point::at(index);
    INFO("in " << point.in << ", kernel " << point.kernel << ", stride " << point.stride
               << ", padding " << point.padding << ", output_padding " << point.output_padding);
    const bool valid = torch_conv_transpose_valid(point.in, point.kernel, point.stride,
                                                  point.padding, point.output_padding);
    CHECK(size_rule::conv_transpose_valid(point.in, point.kernel, point.stride, point.padding,
                                          point.output_padding) == valid);
    auto check = [&] {
      size_rule::check_conv_transpose("conv_transpose2d", point.in, point.kernel, point.stride,
                                      point.padding, point.output_padding);
    };
    if (valid) {
      CHECK(static_cast<std::int64_t>(size_rule::conv_transpose_size(
                point.in, point.kernel, point.stride, point.padding, point.output_padding)) ==
            torch_conv_transpose_size(point.in, point.kernel, point.stride, point.padding,
                                      point.output_padding));
      CHECK_NOTHROW(check());
      continue;
    }
    const std::string message = argument_error_message(check);
    INFO("message: " << message);
    CHECK(contains(message, "conv_transpose2d"));
    if (point.output_padding >= point.stride) {
      CHECK(contains(message, "output_padding = " + std::to_string(point.output_padding)));
      CHECK(contains(message, "stride = " + std::to_string(point.stride)));
    } else {
      CHECK(contains(message, "kernel " + std::to_string(point.kernel)));
      CHECK(contains(message, "stride " + std::to_string(point.stride)));
      CHECK(contains(message, "padding " + std::to_string(point.padding)));
      CHECK(contains(message, "output_padding " + std::to_string(point.output_padding)));
      CHECK(contains(message, "input size " + std::to_string(point.in)));
    }
  }
}

TEST_CASE("layer specs shape grid against pytorch") {
  constexpr auto conv = conv2d_spec_results(std::make_index_sequence<conv_grid_size>{});
  constexpr auto transpose = conv_transpose2d_spec_results(
      std::make_index_sequence<conv_grid_size*(grid_output_paddings - 1)>{});
  for (std::size_t index = 0; index < conv.size(); ++index) {
    const grid_point point = grid_point::at(index);
    INFO("conv2d<2, " << point.kernel << ", " << point.stride << ", " << point.padding
                      << "> on (3, " << point.in << ", " << point.width() << ")");
    CHECK(conv[index]);
  }
  for (std::size_t index = 0; index < transpose.size(); ++index) {
    const grid_point point = grid_point::at(index);
    INFO("conv_transpose2d<2, " << point.kernel << ", " << point.stride << ", " << point.padding
                                << ", " << point.output_padding << "> on (3, " << point.in << ", "
                                << point.width() << ")");
    CHECK(transpose[index]);
  }

  constexpr auto upsample = upsample_spec_results(std::make_index_sequence<grid_inputs * 3>{});
  for (std::size_t index = 0; index < upsample.size(); ++index) {
    INFO("upsample_nearest<" << index / grid_inputs + 1 << "> on height "
                             << index % grid_inputs + 1);
    CHECK(upsample[index]);
  }

  constexpr auto reshapes = reshape_spec_results(std::make_index_sequence<12 * 27>{});
  for (std::size_t index = 0; index < reshapes.size(); ++index) {
    INFO("reshape<" << index % 3 + 1 << ", " << index / 3 % 3 + 1 << ", " << index / 9 % 3 + 1
                    << "> on " << index / 27 + 1 << " features");
    CHECK(reshapes[index]);
  }

  using flattened = flatten::output_shape<shape<3, 5, 7>>;
  CHECK(std::is_same_v<flattened, shape<105, 1, 1>>);
}

TEST_CASE("odd-size models run at compile-time shapes") {
  check_run_time_shapes<sequential<input<3, 5, 4>, conv_transpose2d<2, 3, 2, 1, 1>>>({2, 2, 10, 8});
  check_run_time_shapes<sequential<input<2, 3, 1>, conv_transpose2d<1, 5, 3, 2, 2>>>({2, 1, 9, 3});
  check_run_time_shapes<sequential<input<2, 7, 5>, conv2d<3, 4, 3, 2>>>({2, 3, 3, 2});
  check_run_time_shapes<sequential<input<1, 9, 6>, conv2d<2, 5, 2, 0>>>({2, 2, 3, 1});
  check_run_time_shapes<sequential<input<2, 3, 1>, upsample_nearest<3>>>({2, 2, 9, 3});
  check_run_time_shapes<sequential<input<2, 3, 5>, flatten>>({2, 30, 1, 1});
  check_run_time_shapes<sequential<input<30>, reshape<5, 3, 2>>>({2, 5, 3, 2});
  check_run_time_shapes<
      sequential<input<3, 5, 4>, conv_transpose2d<2, 3, 2, 1, 1>, conv2d<3, 4, 3, 2>,
                 upsample_nearest<3>, flatten, reshape<4, 9, 9>, conv2d<1, 3, 1, 1>>>({2, 1, 9, 9});
}
