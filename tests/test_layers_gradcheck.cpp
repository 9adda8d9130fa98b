// Every layer in double precision against central finite differences, on
// random inputs, batch sizes 1 and 3 and odd spatial sizes.

#include <doctest/doctest.h>

#include <ratio>

#include "advgan/advgan.hpp"
#include "gradient_check.hpp"

using namespace advgan;
using advgan::testing::check_gradients;
using advgan::testing::random_tensor;

namespace {

template <class Spec>
void check_spec(std::size_t batch, bool training = true) {
  model<Spec, cpu<double>> m(11);
  using in = typename Spec::input_shape;
  check_gradients(m, random_tensor(batch, in::channels, in::height, in::width, 3 + batch),
                  training);
}

}  // namespace

TEST_CASE("dense gradients") {
  check_spec<sequential<input<3, 2, 1>, dense<4>>>(1);
  check_spec<sequential<input<5>, dense<3, false>>>(3);
}

TEST_CASE("conv2d gradients") {
  check_spec<sequential<input<2, 7, 5>, conv2d<3, 3, 2, 1>>>(1);
  check_spec<sequential<input<2, 5, 6>, conv2d<2, 4, 1, 2, false>>>(3);
  check_spec<sequential<input<1, 5, 5>, conv2d<2, 1, 1, 0>>>(3);
}

TEST_CASE("conv_transpose2d gradients") {
  check_spec<sequential<input<3, 3, 2>, conv_transpose2d<2, 4, 2, 1>>>(1);
  check_spec<sequential<input<2, 3, 3>, conv_transpose2d<2, 3, 2, 1, 1, false>>>(3);
  check_spec<sequential<input<4, 1, 1>, conv_transpose2d<3, 4, 1, 0>>>(3);
}

TEST_CASE("batch_norm gradients in both modes") {
  check_spec<sequential<input<3, 3, 5>, batch_norm>>(3, true);
  check_spec<sequential<input<3, 3, 5>, batch_norm>>(1, false);
  check_spec<sequential<input<4>, batch_norm>>(3, true);
}

TEST_CASE("activation gradients") {
  check_spec<sequential<input<2, 3, 3>, relu>>(3);
  check_spec<sequential<input<2, 3, 3>, leaky_relu<>>>(3);
  check_spec<sequential<input<2, 3, 3>, leaky_relu<std::ratio<1, 100>>>>(1);
  check_spec<sequential<input<2, 3, 3>, tanh_activation>>(3);
  check_spec<sequential<input<2, 3, 3>, sigmoid>>(3);
}

TEST_CASE("shape layer gradients") {
  check_spec<sequential<input<2, 3, 3>, flatten, dense<2>>>(3);
  check_spec<sequential<input<12>, reshape<3, 2, 2>, conv2d<1, 2>>>(3);
  check_spec<sequential<input<2, 3, 1>, upsample_nearest<2>>>(3);
  check_spec<sequential<input<2, 3, 3>, dropout<>>>(3);
  check_spec<sequential<input<2, 3, 3>, dropout<>>>(3, false);
}

TEST_CASE("small dcgan pair gradients") {
  using generator = sequential<input<4, 1, 1>, conv_transpose2d<6, 4, 1, 0, 0, false>, batch_norm,
                               relu, conv_transpose2d<1, 4, 2, 1, 0, false>, tanh_activation>;
  using discriminator =
      sequential<input<1, 8, 8>, conv2d<4, 4, 2, 1, false>, leaky_relu<>, conv2d<8, 4, 2, 1, false>,
                 batch_norm, leaky_relu<>, conv2d<1, 2, 1, 0, false>, flatten>;
  check_spec<generator>(3);
  check_spec<discriminator>(3);
  check_spec<discriminator>(1, false);
}
