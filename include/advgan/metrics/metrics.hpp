#pragma once
// All evaluation metrics on feature matrices: Frechet distance (FID), kernel
// Inception distance (KID), Inception Score, precision/recall,
// density/coverage and mode coverage.

#include "advgan/metrics/features.hpp"
#include "advgan/metrics/frechet.hpp"
#include "advgan/metrics/inception_score.hpp"
#include "advgan/metrics/kid.hpp"
#include "advgan/metrics/mode_coverage.hpp"
#include "advgan/metrics/precision_recall.hpp"
