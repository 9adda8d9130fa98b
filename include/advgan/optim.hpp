#pragma once
// Every optimizer of advgan, and the parameter EMA.

#include "advgan/optim/adam.hpp"
#include "advgan/optim/ema.hpp"
#include "advgan/optim/optimizer.hpp"
#include "advgan/optim/rmsprop.hpp"
#include "advgan/optim/sgd.hpp"
