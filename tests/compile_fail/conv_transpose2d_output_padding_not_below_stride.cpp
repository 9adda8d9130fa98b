// Rejected: output_padding 2 with stride 2; PyTorch requires output_padding
// to be smaller than the stride.
// Twin: conv_transpose2d_output_padding_below_stride.cpp.

#include "advgan/compose/sequential.hpp"
#include "advgan/layers/conv_transpose2d.hpp"

using network = advgan::sequential<advgan::input<8, 4, 4>, advgan::conv_transpose2d<4, 4, 2, 1, 2>>;
using output = network::output_shape;
