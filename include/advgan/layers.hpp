#pragma once
// Every layer spec of advgan.

#include "advgan/layers/activations.hpp"
#include "advgan/layers/batch_norm.hpp"
#include "advgan/layers/conv2d.hpp"
#include "advgan/layers/conv_transpose2d.hpp"
#include "advgan/layers/dense.hpp"
#include "advgan/layers/dropout.hpp"
#include "advgan/layers/instance_norm.hpp"
#include "advgan/layers/layer.hpp"
#include "advgan/layers/layer_norm.hpp"
#include "advgan/layers/minibatch_discrimination.hpp"
#include "advgan/layers/minibatch_stddev.hpp"
#include "advgan/layers/reshape.hpp"
#include "advgan/layers/spectral_norm.hpp"
#include "advgan/layers/standardize.hpp"
#include "advgan/layers/tangent.hpp"
#include "advgan/layers/upsample.hpp"
