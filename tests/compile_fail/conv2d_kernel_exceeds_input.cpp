// Rejected: a 5x5 kernel without padding does not fit a 3x3 input.
// Twin: conv2d_kernel_fits_input.cpp.

#include "advgan/compose/sequential.hpp"
#include "advgan/layers/conv2d.hpp"

using network = advgan::sequential<advgan::input<1, 3, 3>, advgan::conv2d<4, 5, 1, 0>>;
using output = network::output_shape;
