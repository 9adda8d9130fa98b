// Accepted twin of conv2d_kernel_exceeds_input.cpp: a 3x3 kernel fits a 3x3
// input and gives a 4x1x1 output.

#include <type_traits>  // std::is_same_v

#include "advgan/compose/sequential.hpp"
#include "advgan/layers/conv2d.hpp"

using network = advgan::sequential<advgan::input<1, 3, 3>, advgan::conv2d<4, 3, 1, 0>>;
static_assert(std::is_same_v<network::output_shape, advgan::shape<4, 1, 1>>);
