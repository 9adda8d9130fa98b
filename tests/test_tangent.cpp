// The tangent pass of every twice-differentiable layer, and of models built
// from them, against central finite differences in double precision.

#include <doctest/doctest.h>

#include <ratio>  // std::ratio

#include "advgan/advgan.hpp"
#include "tangent_check.hpp"

using namespace advgan;
using advgan::testing::check_tangent;
using advgan::testing::random_tensor;

namespace {

template <class Spec>
void check_spec(std::size_t batch, double input_scale = 1.0) {
  model<Spec, cpu<double>> m(13);
  using in = typename Spec::input_shape;
  check_tangent(m,
                random_tensor(batch, in::channels, in::height, in::width, 5 + batch, input_scale),
                20 + batch);
}

}  // namespace

TEST_CASE("dense tangent") {
  check_spec<sequential<input<3, 2, 1>, dense<4>>>(1);
  check_spec<sequential<input<5>, dense<3, false>>>(3);
}

TEST_CASE("conv2d tangent") {
  check_spec<sequential<input<2, 7, 5>, conv2d<3, 3, 2, 1>>>(1);
  check_spec<sequential<input<2, 5, 6>, conv2d<2, 4, 1, 2, false>>>(3);
}

TEST_CASE("activation tangents") {
  check_spec<sequential<input<2, 3, 3>, relu>>(3);
  check_spec<sequential<input<2, 3, 3>, leaky_relu<>>>(3);
  check_spec<sequential<input<2, 3, 3>, tanh_activation>>(3, 2.0);
  check_spec<sequential<input<2, 3, 3>, sigmoid>>(3, 3.0);
}

TEST_CASE("shape layer tangents") {
  check_spec<sequential<input<2, 3, 3>, flatten, dense<2>>>(3);
  check_spec<sequential<input<12>, reshape<3, 2, 2>, conv2d<1, 2>>>(3);
}

TEST_CASE("curvature reaches earlier layers") {
  // Two tanh layers between weights: the input gradient of the tangent loss
  // depends on both second derivatives and on every weight.
  check_spec<sequential<input<2, 4, 4>, conv2d<3, 3, 1, 1>, tanh_activation, conv2d<2, 3, 2, 1>,
                        sigmoid, flatten, dense<3>, tanh_activation, dense<1>>>(3);
  check_spec<sequential<input<1, 6, 6>, conv2d<4, 4, 2, 1>, leaky_relu<std::ratio<1, 10>>,
                        conv2d<4, 3, 1, 0>, relu, flatten, dense<1>>>(2);
}

TEST_CASE("tangent input batch must match forward") {
  model<sequential<input<2>, dense<1>>, cpu<double>> m;
  m.forward(random_tensor(3, 2, 1, 1, 1));
  CHECK_THROWS_AS(m.tangent_forward(random_tensor(2, 2, 1, 1, 1)), shape_error);
}
