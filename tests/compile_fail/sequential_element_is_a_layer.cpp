// Accepted twin of sequential_element_not_a_layer.cpp: relu in place of int.

#include <type_traits>  // std::is_same_v

#include "advgan/compose/sequential.hpp"
#include "advgan/layers/activations.hpp"

using network = advgan::sequential<advgan::input<1, 4, 4>, advgan::relu>;
static_assert(std::is_same_v<network::output_shape, advgan::shape<1, 4, 4>>);
