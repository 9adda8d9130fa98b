// Accepted twin of reshape_changes_element_count.cpp: 2x3x3 to 3x3x2 keeps
// all 18 values.

#include <type_traits>  // std::is_same_v

#include "advgan/compose/sequential.hpp"
#include "advgan/layers/activations.hpp"
#include "advgan/layers/reshape.hpp"

using network = advgan::sequential<advgan::input<2, 3, 3>, advgan::relu, advgan::reshape<3, 3, 2>>;
static_assert(std::is_same_v<network::output_shape, advgan::shape<3, 3, 2>>);
