#pragma once
// The InceptionV3 network of FID and its 2048 pool features, for the usual
// FID and KID.
//
// The network is the one that pytorch-fid and the original TensorFlow FID
// code use (the TensorFlow graph of 2015-12-05), which differs from
// torchvision's inception_v3:
// - the 3 x 3 average pools of Mixed_5b-5d, Mixed_6b-6e and Mixed_7b leave the
//   padding out of the average (count_include_pad=False);
// - Mixed_7c pools its last branch with a 3 x 3 max pool (stride 1, padding 1);
// - the input is resized to 299 x 299 bilinearly (align_corners=False) and
//   scaled to [-1, 1], with no per-channel normalization.
// Every convolution is a BasicConv2d: a convolution without bias, batch
// normalization with eps 0.001 (evaluation mode) and a ReLU. The features
// are the 2048 channel means after Mixed_7c.
//
// Parameter and buffer names are torchvision's state_dict names
// ("Mixed_5b.branch1x1.conv.weight", "Conv2d_1a_3x3.bn.running_mean", ...).
// scripts/convert_inception_weights.py turns the published PyTorch weights
// of pytorch-fid (pt_inception-2015-12-05-6726825d.pth) into the safetensors
// file that inception_features loads.
//
// NOTE: tests/interop/inception_interop.py checks the architecture against
// torchvision with random weights. The published weights themselves have
// not been run through this code.

#include <algorithm>    // std::min, std::copy_n
#include <cmath>        // std::isfinite
#include <cstddef>      // std::size_t
#include <cstdint>      // std::uint8_t
#include <filesystem>   // std::filesystem::path
#include <memory>       // std::unique_ptr
#include <ratio>        // std::ratio
#include <span>         // std::span
#include <string>       // std::string
#include <type_traits>  // std::conditional_t, std::is_same_v
#include <vector>       // std::vector

#include "advgan/backend/cpu.hpp"
#include "advgan/core/error.hpp"
#include "advgan/layers/activations.hpp"
#include "advgan/layers/batch_norm.hpp"
#include "advgan/layers/composite.hpp"
#include "advgan/layers/conv2d.hpp"
#include "advgan/layers/conv2d_rect.hpp"
#include "advgan/layers/pooling.hpp"
#include "advgan/layers/resize_bilinear.hpp"
#include "advgan/metrics/features.hpp"
#include "advgan/train/model_state.hpp"

namespace advgan {

namespace inception {

/// BasicConv2d: convolution without bias, batch norm (eps 0.001), ReLU. A
/// square kernel, stride and padding take conv2d's path.
template <std::size_t Out, class Kernel, class Stride, class Padding>
using basic_conv2d =
    chain<named<"conv", std::conditional_t<
                            Kernel::height == Kernel::width && Stride::height == Stride::width &&
                                Padding::height == Padding::width,
                            conv2d<Out, Kernel::height, Stride::height, Padding::height, false>,
                            conv2d_rect<Out, Kernel, Stride, Padding, false>>>,
          named<"bn", batch_norm_with<std::ratio<1, 10>, std::ratio<1, 1000>>>, relu>;

/// A BasicConv2d named Name with a square kernel.
template <fixed_string Name, std::size_t Out, std::size_t Kernel, std::size_t Stride = 1,
          std::size_t Padding = 0>
using conv = named<Name, basic_conv2d<Out, size2d<Kernel, Kernel>, size2d<Stride, Stride>,
                                      size2d<Padding, Padding>>>;

/// A BasicConv2d named Name with a KernelH x KernelW kernel, stride 1 and
/// padding (PaddingH, PaddingW).
template <fixed_string Name, std::size_t Out, std::size_t KernelH, std::size_t KernelW,
          std::size_t PaddingH, std::size_t PaddingW>
using conv_rect =
    named<Name,
          basic_conv2d<Out, size2d<KernelH, KernelW>, size2d<1, 1>, size2d<PaddingH, PaddingW>>>;

/// The 3 x 3 average pool of the FID blocks, padding left out of the mean.
using fid_avg_pool = avg_pool2d<3, 1, 1, false>;

/// InceptionA (Mixed_5b-5d) with the FID average pool.
template <std::size_t PoolFeatures>
using block_a =
    concat_branches<conv<"branch1x1", 64, 1>,
                    chain<conv<"branch5x5_1", 48, 1>, conv<"branch5x5_2", 64, 5, 1, 2>>,
                    chain<conv<"branch3x3dbl_1", 64, 1>, conv<"branch3x3dbl_2", 96, 3, 1, 1>,
                          conv<"branch3x3dbl_3", 96, 3, 1, 1>>,
                    chain<fid_avg_pool, conv<"branch_pool", PoolFeatures, 1>>>;

/// InceptionB (Mixed_6a): 35 x 35 to 17 x 17.
using block_b =
    concat_branches<conv<"branch3x3", 384, 3, 2>,
                    chain<conv<"branch3x3dbl_1", 64, 1>, conv<"branch3x3dbl_2", 96, 3, 1, 1>,
                          conv<"branch3x3dbl_3", 96, 3, 2>>,
                    max_pool2d<3, 2>>;

/// InceptionC (Mixed_6b-6e) with the FID average pool.
template <std::size_t Channels7x7>
using block_c = concat_branches<
    conv<"branch1x1", 192, 1>,
    chain<conv<"branch7x7_1", Channels7x7, 1>, conv_rect<"branch7x7_2", Channels7x7, 1, 7, 0, 3>,
          conv_rect<"branch7x7_3", 192, 7, 1, 3, 0>>,
    chain<conv<"branch7x7dbl_1", Channels7x7, 1>,
          conv_rect<"branch7x7dbl_2", Channels7x7, 7, 1, 3, 0>,
          conv_rect<"branch7x7dbl_3", Channels7x7, 1, 7, 0, 3>,
          conv_rect<"branch7x7dbl_4", Channels7x7, 7, 1, 3, 0>,
          conv_rect<"branch7x7dbl_5", 192, 1, 7, 0, 3>>,
    chain<fid_avg_pool, conv<"branch_pool", 192, 1>>>;

/// InceptionD (Mixed_7a): 17 x 17 to 8 x 8.
using block_d = concat_branches<
    chain<conv<"branch3x3_1", 192, 1>, conv<"branch3x3_2", 320, 3, 2>>,
    chain<conv<"branch7x7x3_1", 192, 1>, conv_rect<"branch7x7x3_2", 192, 1, 7, 0, 3>,
          conv_rect<"branch7x7x3_3", 192, 7, 1, 3, 0>, conv<"branch7x7x3_4", 192, 3, 2>>,
    max_pool2d<3, 2>>;

/// InceptionE (Mixed_7b, 7c), whose pool branch starts with Pool.
template <class Pool>
using block_e = concat_branches<
    conv<"branch1x1", 320, 1>,
    chain<conv<"branch3x3_1", 384, 1>, concat_branches<conv_rect<"branch3x3_2a", 384, 1, 3, 0, 1>,
                                                       conv_rect<"branch3x3_2b", 384, 3, 1, 1, 0>>>,
    chain<conv<"branch3x3dbl_1", 448, 1>, conv<"branch3x3dbl_2", 384, 3, 1, 1>,
          concat_branches<conv_rect<"branch3x3dbl_3a", 384, 1, 3, 0, 1>,
                          conv_rect<"branch3x3dbl_3b", 384, 3, 1, 1, 0>>>,
    chain<Pool, conv<"branch_pool", 192, 1>>>;

/// Side of the square input of the network.
inline constexpr std::size_t image_side = 299;
/// Size of the feature vector.
inline constexpr std::size_t feature_count = 2048;

/// The FID InceptionV3 from the 3 x 299 x 299 input to the 2048 means of
/// Mixed_7c's channels, without the resizing and scaling of the input.
using network_spec = chain<conv<"Conv2d_1a_3x3", 32, 3, 2>,                  // 32 x 149 x 149
                           conv<"Conv2d_2a_3x3", 32, 3>,                     // 32 x 147 x 147
                           conv<"Conv2d_2b_3x3", 64, 3, 1, 1>,               // 64 x 147 x 147
                           max_pool2d<3, 2>,                                 // 64 x 73 x 73
                           conv<"Conv2d_3b_1x1", 80, 1>,                     // 80 x 73 x 73
                           conv<"Conv2d_4a_3x3", 192, 3>,                    // 192 x 71 x 71
                           max_pool2d<3, 2>,                                 // 192 x 35 x 35
                           named<"Mixed_5b", block_a<32>>,                   // 256 x 35 x 35
                           named<"Mixed_5c", block_a<64>>,                   // 288 x 35 x 35
                           named<"Mixed_5d", block_a<64>>,                   // 288 x 35 x 35
                           named<"Mixed_6a", block_b>,                       // 768 x 17 x 17
                           named<"Mixed_6b", block_c<128>>,                  // 768 x 17 x 17
                           named<"Mixed_6c", block_c<160>>,                  //
                           named<"Mixed_6d", block_c<160>>,                  //
                           named<"Mixed_6e", block_c<192>>,                  //
                           named<"Mixed_7a", block_d>,                       // 1280 x 8 x 8
                           named<"Mixed_7b", block_e<fid_avg_pool>>,         // 2048 x 8 x 8
                           named<"Mixed_7c", block_e<max_pool2d<3, 1, 1>>>,  // 2048 x 8 x 8
                           global_avg_pool2d>;                               // 2048 x 1 x 1

using input_shape = shape<3, image_side, image_side>;
static_assert(std::is_same_v<network_spec::output_shape<input_shape>, shape<feature_count, 1, 1>>);

}  // namespace inception

/// The FID InceptionV3 bound to a backend, owning its parameters (and their
/// gradients) in one array. Its interface follows model<>'s:
/// visit_parameters and visit_buffers give torchvision's state_dict names, so
/// load_model and store_model from train/model_state.hpp work on it.
template <class Backend>
class fid_inception_v3 {
 public:
  using backend = Backend;
  using scalar = typename Backend::scalar;
  using tensor = typename Backend::tensor;
  using input_shape = inception::input_shape;
  using layer_type = typename inception::network_spec::template bind<input_shape, Backend>;
  static constexpr std::size_t parameter_count = [] {
    std::size_t total = 0;
    for (const auto& spec : layer_type::parameters) total += spec.size();
    return total;
  }();

  /// Allocates the parameters and gives them PyTorch's default
  /// initialisation from `seed`; load weights before computing features.
  explicit fid_inception_v3(std::uint64_t seed = 0) : network_(std::make_unique<layer_type>()) {
    Backend::resize(values_, parameter_count, 1, 1, 1);
    Backend::resize(gradients_, parameter_count, 1, 1, 1);
    Backend::fill(Backend::data(gradients_), parameter_count, scalar(0));
    network_->bind(Backend::data(values_), Backend::data(gradients_));
    philox rng(seed);
    network_->reset_parameters(rng, init_scheme::pytorch);
  }

  fid_inception_v3(const fid_inception_v3&) = delete;
  fid_inception_v3& operator=(const fid_inception_v3&) = delete;

  /// Returns the (N, 2048, 1, 1) features of x, shape (N, 3, 299, 299),
  /// computed in evaluation mode. x is expected in [-1, 1].
  const tensor& forward(const tensor& x) {
    network_->forward(x, output_, forward_context{false, nullptr});
    return output_;
  }

  /// Calls visitor(name, value, gradient, spec) for every parameter.
  template <class Visitor>
  void visit_parameters(Visitor&& visitor) {
    std::size_t offset = 0;
    for (const auto& spec : layer_type::parameters) {
      visitor(std::string(spec.name), Backend::data(values_) + offset,
              Backend::data(gradients_) + offset, spec);
      offset += spec.size();
    }
  }

  /// Calls visitor(name, data, spec) for every running statistic and
  /// visitor(name, int64&) for every num_batches_tracked.
  template <class Visitor>
  void visit_buffers(Visitor&& visitor) {
    network_->visit_buffers(
        [&](const char* name, auto&&... buffer) { visitor(std::string(name), buffer...); });
  }

  scalar* parameters() { return Backend::data(values_); }
  layer_type& network() { return *network_; }

 private:
  std::unique_ptr<layer_type> network_;
  tensor values_;
  tensor gradients_;
  tensor output_;
};

/// Turns images into the 2048 InceptionV3 pool features of FID, one row per
/// image in input order, for frechet_distance, kernel_inception_distance and
/// precision_recall.
///
/// Images are NCHW floats in [-1, 1] (pytorch-fid takes [0, 1] and maps v to
/// 2v - 1 itself, which gives the same network input), of any size: each goes
/// to 299 x 299 by bilinear resizing (align_corners=False), and a grayscale
/// image is repeated to three channels.
class inception_features {
 public:
  using network_type = fid_inception_v3<cpu<float>>;

  /// Loads the weights from a safetensors file with torchvision's state_dict
  /// names, as scripts/convert_inception_weights.py writes it. Images go
  /// through the network `batch_size` at a time, and every image of a batch
  /// keeps about 170 MB of activations (measured on a batch of 4). Throws
  /// file_error naming the file if it cannot be read, lacks a tensor or
  /// contains one of another shape (naming the tensor), and argument_error if
  /// batch_size is 0.
  explicit inception_features(const std::filesystem::path& weights_file,
                              std::size_t batch_size = 4);

  /// Computes the features of count x channels x height x width images
  /// (NCHW) in [-1, 1], with channels 1 or 3. Throws argument_error if the
  /// span does not contain a positive number of such images or a pixel is
  /// not finite (naming the image and the pixel).
  feature_matrix extract(std::span<const float> images, std::size_t channels, std::size_t height,
                         std::size_t width);

  /// Computes the features of 8-bit grayscale images (count x height x
  /// width, row-major), mapping a byte p to p / 127.5 - 1, as pytorch-fid's
  /// p / 255 followed by its own 2v - 1 does.
  feature_matrix extract(std::span<const std::uint8_t> pixels, std::size_t height,
                         std::size_t width);

  network_type& network() { return *network_; }

 private:
  /// Runs the network on batch_ and copies its features to rows first, ...
  void run_batch(feature_matrix& result, std::size_t first, std::size_t count);

  /// Resizes `count` images of `channels` planes each from `images` into
  /// batch_, repeating a single channel to three.
  void fill_batch(const float* images, std::size_t count, std::size_t channels, std::size_t height,
                  std::size_t width);

  std::unique_ptr<network_type> network_;
  std::size_t batch_size_;
  cpu<float>::tensor batch_;
};

// ---------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------

inline inception_features::inception_features(const std::filesystem::path& weights_file,
                                              std::size_t batch_size)
    : network_(std::make_unique<network_type>()), batch_size_(batch_size) {
  if (batch_size == 0) throw argument_error("inception_features: batch_size must be >= 1, got 0");
  load_model(weights_file, *network_);
}

inline feature_matrix inception_features::extract(std::span<const float> images,
                                                  std::size_t channels, std::size_t height,
                                                  std::size_t width) {
  if (channels != 1 && channels != 3)
    throw argument_error(detail::concat("inception_features: images with ", channels,
                                        " channels; expected 1 (grayscale) or 3 (RGB)"));
  const std::size_t image_size = channels * height * width;
  if (image_size == 0 || images.empty() || images.size() % image_size != 0)
    throw argument_error(detail::concat("inception_features: ", images.size(),
                                        " values are not a positive number of ", channels, " x ",
                                        height, " x ", width, " images"));
  const std::size_t bad = cpu<float>::first_non_finite(images.data(), images.size());
  if (bad < images.size())
    throw argument_error(detail::concat("inception_features: pixel ", bad % image_size,
                                        " of image ", bad / image_size, " is ", images[bad]));
  const std::size_t count = images.size() / image_size;
  feature_matrix result(count, inception::feature_count);
  for (std::size_t first = 0; first < count; first += batch_size_) {
    const std::size_t size = std::min(batch_size_, count - first);
    fill_batch(images.data() + first * image_size, size, channels, height, width);
    run_batch(result, first, size);
  }
  return result;
}

inline feature_matrix inception_features::extract(std::span<const std::uint8_t> pixels,
                                                  std::size_t height, std::size_t width) {
  const std::size_t image_size = height * width;
  if (image_size == 0 || pixels.empty() || pixels.size() % image_size != 0)
    throw argument_error(detail::concat("inception_features: ", pixels.size(),
                                        " bytes are not a positive number of ", height, " x ",
                                        width, " images"));
  const std::size_t count = pixels.size() / image_size;
  feature_matrix result(count, inception::feature_count);
  std::vector<float> scaled;
  for (std::size_t first = 0; first < count; first += batch_size_) {
    const std::size_t size = std::min(batch_size_, count - first);
    scaled.resize(size * image_size);
    for (std::size_t i = 0; i < scaled.size(); ++i)
      scaled[i] = static_cast<float>(pixels[first * image_size + i]) / 127.5f - 1.0f;
    fill_batch(scaled.data(), size, 1, height, width);
    run_batch(result, first, size);
  }
  return result;
}

inline void inception_features::fill_batch(const float* images, std::size_t count,
                                           std::size_t channels, std::size_t height,
                                           std::size_t width) {
  constexpr std::size_t side = inception::image_side;
  constexpr std::size_t plane = side * side;
  cpu<float>::resize(batch_, count, 3, side, side);
  float* out = batch_.data();
  for (std::size_t n = 0; n < count; ++n) {
    const float* image = images + n * channels * height * width;
    float* target = out + n * 3 * plane;
    detail::resize_bilinear_planes(image, channels, height, width, side, side, target);
    if (channels == 1) {
      std::copy_n(target, plane, target + plane);
      std::copy_n(target, plane, target + 2 * plane);
    }
  }
}

inline void inception_features::run_batch(feature_matrix& result, std::size_t first,
                                          std::size_t count) {
  const cpu<float>::tensor& features = network_->forward(batch_);
  const float* values = features.data();
  double* rows = result.values.data() + first * inception::feature_count;
  for (std::size_t i = 0; i < count * inception::feature_count; ++i)
    rows[i] = static_cast<double>(values[i]);
}

}  // namespace advgan
