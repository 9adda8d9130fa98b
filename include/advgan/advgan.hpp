#pragma once
// advgan: GANs assembled from types. Including this header brings in the
// whole public API.

#include "advgan/backend/cpu.hpp"
#include "advgan/compose/sequential.hpp"
#include "advgan/core/error.hpp"
#include "advgan/core/philox.hpp"
#include "advgan/core/shape.hpp"
#include "advgan/layers.hpp"
