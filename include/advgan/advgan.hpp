#pragma once
// advgan: GANs assembled from types. Including this header brings in the
// whole public API.

#include "advgan/backend/cpu.hpp"
#include "advgan/compose/gan.hpp"
#include "advgan/compose/sequential.hpp"
#include "advgan/core/error.hpp"
#include "advgan/core/philox.hpp"
#include "advgan/core/shape.hpp"
#include "advgan/data/batcher.hpp"
#include "advgan/data/idx.hpp"
#include "advgan/io/png.hpp"
#include "advgan/io/safetensors.hpp"
#include "advgan/layers.hpp"
#include "advgan/layers/composite.hpp"
#include "advgan/layers/conv2d_rect.hpp"
#include "advgan/layers/pooling.hpp"
#include "advgan/layers/resize_bilinear.hpp"
#include "advgan/objectives.hpp"
#include "advgan/optim.hpp"
#include "advgan/train/model_state.hpp"
#include "advgan/train/progress.hpp"
#include "advgan/train/trainer.hpp"
