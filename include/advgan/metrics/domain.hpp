#pragma once
// Domain metrics for Fashion-MNIST: a small CNN classifier trained on the
// Fashion-MNIST training set, its softmax cross-entropy loss, and
// domain_features, which turns images into the classifier's penultimate
// features and class probabilities, the inputs of the metrics in this folder.
//
// FID, KID and precision/recall computed on these features are domain
// metrics. They rank generators of Fashion-MNIST-like images against each
// other. Their values are on another scale than the usual FID and KID, which
// use the pool features of an ImageNet-trained InceptionV3, so the two must
// never be compared or reported under the same name.

#include <algorithm>    // std::min, std::max
#include <cmath>        // std::exp, std::log
#include <concepts>     // std::floating_point
#include <cstddef>      // std::size_t
#include <cstdint>      // std::int64_t, std::uint8_t
#include <filesystem>   // std::filesystem::path
#include <memory>       // std::unique_ptr
#include <span>         // std::span
#include <string_view>  // std::string_view
#include <vector>       // std::vector

#include "advgan/backend/cpu.hpp"
#include "advgan/compose/sequential.hpp"
#include "advgan/core/error.hpp"
#include "advgan/core/finite.hpp"
#include "advgan/io/safetensors.hpp"
#include "advgan/layers.hpp"
#include "advgan/metrics/features.hpp"
#include "advgan/train/model_state.hpp"

namespace advgan {

/// The Fashion-MNIST classifier: 1x32x32 images in [-1, 1] (28x28 images
/// padded by 2 pixels of -1 on each side, as the DCGAN examples train on)
/// to 10 logits. Five convolutions with batch norm take 32x32 to 4x4 (three
/// of them with stride 2). Batch norm lets a few epochs of Adam reach over
/// 91% test accuracy.
using fashion_mnist_classifier =
    sequential<input<1, 32, 32>,                              //
               conv2d<16, 5, 1, 2, false>, batch_norm, relu,  // 0-2: 32x32
               conv2d<32, 3, 2, 1, false>, batch_norm, relu,  // 3-5: 16x16
               conv2d<32, 3, 1, 1, false>, batch_norm, relu,  // 6-8: 16x16
               conv2d<64, 3, 2, 1, false>, batch_norm, relu,  // 9-11: 8x8
               conv2d<64, 3, 2, 1, false>, batch_norm, relu,  // 12-14: 4x4
               flatten, dense<128>, relu,                     // 15-17: 16 is the features
               dense<10>>;                                    // 18: the logits

/// Index of the layer whose output domain_features returns as features: the
/// 128 outputs of the first dense layer, before its ReLU.
///
/// The ReLU outputs would make a poor Gaussian. With the committed weights,
/// 15 of the 128 units are 0 on every test image, and two more have
/// variances of 1e-8 and 6e-7. Their covariance is therefore singular, and
/// the Frechet distance of the test set to itself comes out as 1.2e-6
/// instead of 0. Before the ReLU, the smallest covariance eigenvalue on the
/// test set is 0.017, and that distance is 2e-10.
inline constexpr std::size_t fashion_mnist_feature_layer = 16;
/// Size of the feature vector and number of classes of the classifier.
inline constexpr std::size_t fashion_mnist_feature_count = 128;
inline constexpr std::size_t fashion_mnist_class_count = 10;

/// Computes the mean softmax cross-entropy of `rows` rows of `classes` logits
/// (row-major) against integer labels in [0, classes), as
/// torch.nn.functional.cross_entropy with reduction "mean":
///
///   L = (1 / N) sum_n [logsumexp(x_n) - x_n[y_n]],
///
/// and assigns dL/dx = (softmax(x_n) - onehot(y_n)) / N to `gradient`. The
/// log-sum-exp subtracts each row's maximum, so no finite logit overflows.
/// Throws argument_error if the spans do not hold rows x classes logits and
/// gradients and `rows` labels, or if rows or classes is 0. It also throws
/// argument_error for a label out of range, and for a logit that is not
/// finite, naming its row and column.
template <std::floating_point T>
double softmax_cross_entropy(std::span<const T> logits, std::span<const std::int64_t> labels,
                             std::size_t classes, std::span<T> gradient);

/// Returns the softmax of each row of `rows` rows of `classes` logits
/// (row-major), computed in double after subtracting the row's maximum.
/// Throws argument_error if the span does not hold rows x classes values,
/// classes is 0, or a logit is not finite.
template <std::floating_point T>
feature_matrix softmax_rows(std::span<const T> logits, std::size_t rows, std::size_t classes);

/// Penultimate features and class probabilities of a set of images, one row
/// per image in input order.
struct domain_feature_set {
  feature_matrix features;       ///< count x 128: the outputs of layer 16 (dense)
  feature_matrix probabilities;  ///< count x 10: the softmax of the logits
};

/// Turns images into the features and class probabilities of a trained
/// fashion_mnist_classifier, running it in evaluation mode in batches.
class domain_features {
 public:
  using classifier_model = model<fashion_mnist_classifier, cpu<float>>;

  /// Side of the square images the classifier takes.
  static constexpr std::size_t image_side = 32;

  /// Loads the classifier weights from a safetensors file with PyTorch's
  /// nn.Sequential names ("0.weight", "1.running_mean", ..., "18.bias"), as train_classifier
  /// writes them. Images go through the classifier `batch_size` at a time,
  /// which bounds memory at about 0.5 MB per image of a batch. Throws
  /// file_error naming the file if it cannot be read, lacks a tensor or
  /// contains one of another shape, and argument_error if batch_size is 0.
  explicit domain_features(const std::filesystem::path& classifier_file,
                           std::size_t batch_size = 200);

  /// Computes the features of `images`: count x 1 x 32 x 32 values in
  /// [-1, 1] (NCHW), where -1 is black. Throws argument_error if the span
  /// size is not a multiple of 32 x 32 or is 0, or if a pixel is not finite
  /// (naming the image and the pixel).
  domain_feature_set extract(std::span<const float> images);

  /// Computes the features of 8-bit grayscale images (count x height x
  /// width, row-major), mapping a byte p to p / 127.5 - 1 as data::batcher
  /// does and centering 28 x 28 images in 32 x 32 with padding of -1.
  /// Throws argument_error unless the images are 28 x 28 or 32 x 32 and the
  /// span contains count x height x width bytes with count > 0.
  domain_feature_set extract(std::span<const std::uint8_t> pixels, std::size_t height,
                             std::size_t width);

  /// The classifier, for computing logits directly.
  classifier_model& classifier() { return *classifier_; }

 private:
  void start(domain_feature_set& result, std::size_t count);
  void run_batch(domain_feature_set& result, std::size_t first, std::size_t count);

  std::unique_ptr<classifier_model> classifier_;
  std::size_t batch_size_;
  cpu<float>::tensor batch_;
};

// ---------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------

namespace detail {

// Throws argument_error at the first non-finite logit, naming its row and
// column.
template <std::floating_point T>
void check_finite_logits(std::span<const T> logits, std::size_t classes,
                         std::string_view function_name) {
  for (std::size_t index = 0; index < logits.size(); ++index) {
    if (is_finite(logits[index])) continue;  // a bit test, which -ffast-math keeps
    throw argument_error(concat(function_name, ": logit ", static_cast<double>(logits[index]),
                                " at row ", index / classes, ", column ", index % classes,
                                " is not finite"));
  }
}

// Writes softmax(row) to `out` and returns logsumexp(row), both in double
// with the row's maximum subtracted before exp.
template <std::floating_point T>
double softmax_row(const T* row, std::size_t classes, double* out) {
  double maximum = static_cast<double>(row[0]);
  for (std::size_t c = 1; c < classes; ++c)
    maximum = std::max(maximum, static_cast<double>(row[c]));
  double sum = 0.0;
  for (std::size_t c = 0; c < classes; ++c) {
    out[c] = std::exp(static_cast<double>(row[c]) - maximum);
    sum += out[c];
  }
  for (std::size_t c = 0; c < classes; ++c) out[c] /= sum;
  return maximum + std::log(sum);
}

}  // namespace detail

template <std::floating_point T>
double softmax_cross_entropy(std::span<const T> logits, std::span<const std::int64_t> labels,
                             std::size_t classes, std::span<T> gradient) {
  const std::size_t rows = labels.size();
  if (rows == 0 || classes == 0) {
    throw argument_error(
        detail::concat("softmax_cross_entropy needs at least one row and one "
                       "class, got ",
                       rows, " rows and ", classes, " classes"));
  }
  if (logits.size() != rows * classes || gradient.size() != rows * classes) {
    throw argument_error(detail::concat("softmax_cross_entropy: ", rows, " labels of ", classes,
                                        " classes need ", rows * classes,
                                        " logits and gradients, "
                                        "got ",
                                        logits.size(), " and ", gradient.size()));
  }
  detail::check_finite_logits(logits, classes, "softmax_cross_entropy");
  std::vector<double> probabilities(classes);
  const double scale = 1.0 / static_cast<double>(rows);
  double total = 0.0;
  for (std::size_t n = 0; n < rows; ++n) {
    const std::int64_t label = labels[n];
    if (label < 0 || static_cast<std::size_t>(label) >= classes) {
      throw argument_error(detail::concat("softmax_cross_entropy: label ", label, " of row ", n,
                                          " is outside [0, ", classes, ")"));
    }
    const T* row = logits.data() + n * classes;
    const auto target = static_cast<std::size_t>(label);
    total +=
        detail::softmax_row(row, classes, probabilities.data()) - static_cast<double>(row[target]);
    // dL/dx_nc = (p_nc - [c == y_n]) / N
    for (std::size_t c = 0; c < classes; ++c) {
      const double onehot = c == target ? 1.0 : 0.0;
      gradient[n * classes + c] = static_cast<T>((probabilities[c] - onehot) * scale);
    }
  }
  return total * scale;
}

template <std::floating_point T>
feature_matrix softmax_rows(std::span<const T> logits, std::size_t rows, std::size_t classes) {
  if (classes == 0 || logits.size() != rows * classes) {
    throw argument_error(detail::concat("softmax_rows: ", rows, " rows of ", classes,
                                        " classes need ", rows * classes, " logits, got ",
                                        logits.size()));
  }
  detail::check_finite_logits(logits, classes, "softmax_rows");
  feature_matrix result(rows, classes);
  for (std::size_t n = 0; n < rows; ++n) {
    detail::softmax_row(logits.data() + n * classes, classes, result.values.data() + n * classes);
  }
  return result;
}

inline domain_features::domain_features(const std::filesystem::path& classifier_file,
                                        std::size_t batch_size)
    : classifier_(std::make_unique<classifier_model>()), batch_size_(batch_size) {
  if (batch_size == 0) throw argument_error("domain_features: batch_size must be >= 1, got 0");
  load_model(classifier_file, *classifier_);
  classifier_->eval();
}

inline domain_feature_set domain_features::extract(std::span<const float> images) {
  constexpr std::size_t image_size = image_side * image_side;
  if (images.empty() || images.size() % image_size != 0) {
    throw argument_error(detail::concat("domain_features: ", images.size(),
                                        " values are not a positive number of 1 x 32 x 32 images"));
  }
  const std::size_t bad = cpu<float>::first_non_finite(images.data(), images.size());
  if (bad < images.size()) {
    throw argument_error(detail::concat("domain_features: pixel ", bad % image_size, " of image ",
                                        bad / image_size, " is ", images[bad]));
  }
  const std::size_t count = images.size() / image_size;
  domain_feature_set result;
  start(result, count);
  for (std::size_t first = 0; first < count; first += batch_size_) {
    const std::size_t size = std::min(batch_size_, count - first);
    cpu<float>::resize(batch_, size, 1, image_side, image_side);
    cpu<float>::copy(images.data() + first * image_size, size * image_size, batch_.data());
    run_batch(result, first, size);
  }
  return result;
}

inline domain_feature_set domain_features::extract(std::span<const std::uint8_t> pixels,
                                                   std::size_t height, std::size_t width) {
  const bool supported = (height == 28 && width == 28) || (height == 32 && width == 32);
  if (!supported) {
    throw argument_error(detail::concat("domain_features: images of ", height, " x ", width,
                                        " pixels; expected 28 x 28 or 32 x 32"));
  }
  const std::size_t image_size = height * width;
  if (pixels.empty() || pixels.size() % image_size != 0) {
    throw argument_error(detail::concat("domain_features: ", pixels.size(),
                                        " bytes are not a positive number of ", height, " x ",
                                        width, " images"));
  }
  const std::size_t count = pixels.size() / image_size;
  const std::size_t border = (image_side - height) / 2;
  domain_feature_set result;
  start(result, count);
  for (std::size_t first = 0; first < count; first += batch_size_) {
    const std::size_t size = std::min(batch_size_, count - first);
    cpu<float>::resize(batch_, size, 1, image_side, image_side);
    float* out = batch_.data();
    std::fill_n(out, batch_.size(), -1.0f);
    for (std::size_t n = 0; n < size; ++n) {
      const std::uint8_t* image = pixels.data() + (first + n) * image_size;
      float* target = out + n * image_side * image_side;
      for (std::size_t y = 0; y < height; ++y)
        for (std::size_t x = 0; x < width; ++x)
          target[(y + border) * image_side + x + border] =
              static_cast<float>(image[y * width + x]) / 127.5f - 1.0f;
    }
    run_batch(result, first, size);
  }
  return result;
}

inline void domain_features::start(domain_feature_set& result, std::size_t count) {
  result.features = feature_matrix(count, fashion_mnist_feature_count);
  result.probabilities = feature_matrix(count, fashion_mnist_class_count);
}

// Runs batch_ (images first .. first + count - 1) and copies its features
// and probabilities into their rows of `result`.
inline void domain_features::run_batch(domain_feature_set& result, std::size_t first,
                                       std::size_t count) {
  const cpu<float>::tensor& logits = classifier_->forward(batch_);
  const cpu<float>::tensor& features = classifier_->activation(fashion_mnist_feature_layer);
  const float* feature_data = features.data();
  double* feature_rows = result.features.values.data() + first * fashion_mnist_feature_count;
  for (std::size_t i = 0; i < count * fashion_mnist_feature_count; ++i) {
    feature_rows[i] = static_cast<double>(feature_data[i]);
  }
  const feature_matrix probabilities = softmax_rows(
      std::span<const float>(logits.data(), logits.size()), count, fashion_mnist_class_count);
  std::copy(probabilities.values.begin(), probabilities.values.end(),
            result.probabilities.values.begin() +
                static_cast<std::ptrdiff_t>(first * fashion_mnist_class_count));
}

}  // namespace advgan
