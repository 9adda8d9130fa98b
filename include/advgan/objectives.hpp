#pragma once
// Every adversarial objective of advgan, the element-wise functions they
// are built from, and the regularizers of a critic: gradient penalties and
// weight clipping.

#include "advgan/objectives/hinge.hpp"
#include "advgan/objectives/least_squares.hpp"
#include "advgan/objectives/minimax.hpp"
#include "advgan/objectives/non_saturating.hpp"
#include "advgan/objectives/objective.hpp"
#include "advgan/objectives/penalties.hpp"
#include "advgan/objectives/relativistic.hpp"
#include "advgan/objectives/softplus.hpp"
#include "advgan/objectives/wasserstein.hpp"
#include "advgan/objectives/weight_clipping.hpp"
