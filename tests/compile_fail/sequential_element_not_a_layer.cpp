// Rejected: int is not a layer spec.
// Twin: sequential_element_is_a_layer.cpp.

#include "advgan/compose/sequential.hpp"

using network = advgan::sequential<advgan::input<1, 4, 4>, int>;
using output = network::output_shape;
