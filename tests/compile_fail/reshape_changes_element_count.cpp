// Rejected: the second layer reshapes 2x3x3 = 18 values to 4x2x2 = 16.
// Twin: reshape_keeps_element_count.cpp.

#include "advgan/compose/sequential.hpp"
#include "advgan/layers/activations.hpp"
#include "advgan/layers/reshape.hpp"

using network = advgan::sequential<advgan::input<2, 3, 3>, advgan::relu, advgan::reshape<4, 2, 2>>;
using output = network::output_shape;
