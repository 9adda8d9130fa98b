// Accepted twin of conv_transpose2d_output_padding_not_below_stride.cpp:
// output_padding 1 with stride 2 gives (4 - 1) * 2 - 2 + 4 + 1 = 9.

#include <type_traits>  // std::is_same_v

#include "advgan/compose/sequential.hpp"
#include "advgan/layers/conv_transpose2d.hpp"

using network = advgan::sequential<advgan::input<8, 4, 4>, advgan::conv_transpose2d<4, 4, 2, 1, 1>>;
static_assert(std::is_same_v<network::output_shape, advgan::shape<4, 9, 9>>);
