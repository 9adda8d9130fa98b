#pragma once
// Mini-batches over labelled 8-bit images, shuffled anew each epoch, scaled
// to [-1, 1] and optionally padded, written into buffers the caller owns.

#include <algorithm>    // std::fill, std::max, std::min, std::swap
#include <array>        // std::array
#include <cstddef>      // std::size_t
#include <cstdint>      // std::int64_t, std::uint32_t, std::uint64_t
#include <limits>       // std::numeric_limits
#include <numeric>      // std::iota
#include <span>         // std::span
#include <type_traits>  // std::is_floating_point_v
#include <vector>       // std::vector

#include "advgan/core/error.hpp"
#include "advgan/core/philox.hpp"
#include "advgan/data/idx.hpp"

namespace advgan::data {

/// Options of a batcher.
struct batcher_options {
  /// Side of the square that each image is padded to, with the image in the
  /// center; 0 leaves images at their size. 28 x 28 Fashion-MNIST images
  /// padded to 32 get 2 pixels on each side.
  std::size_t pad_to = 0;
  /// Whether the last batch of an epoch is dropped when it is incomplete.
  bool drop_last = true;
  /// Whether each epoch visits the images in a new random order.
  bool shuffle = true;
};

/// Batches of images and labels from a labelled_images set, for training.
///
/// Each epoch visits every image once, in an order that is a function of the
/// seed and the epoch number alone: the Fisher-Yates shuffle driven by
/// `philox(seed, epoch).below()`. The whole state is therefore the epoch and
/// the position in it, and `restore(state())` on a batcher made with the same
/// data, seed and options yields the same batches.
///
/// Pixels p in 0..255 become p / 127.5 - 1, so 0 maps to -1 and 255 to 1.
/// Padding has the value -1, which is black. Images are written as
/// batch_size x channels() x height() x width() (NCHW) and labels as int64.
/// The batcher keeps a pointer to `data`, which must outlive it.
///
/// @tparam Scalar the output type, float or double
template <class Scalar>
class batcher {
  static_assert(std::is_floating_point_v<Scalar>, "batcher writes float or double images");

 public:
  /// Position of a batcher: the epoch and the number of images of that epoch
  /// already returned.
  struct state_type {
    std::uint64_t epoch, position;
  };

  batcher(const labelled_images& data, std::size_t batch_size, std::uint64_t seed,
          batcher_options options = {});
  // A batcher points to its data, so a temporary data set would dangle.
  batcher(labelled_images&& data, std::size_t batch_size, std::uint64_t seed,
          batcher_options options = {}) = delete;

  std::size_t batch_size() const noexcept { return batch_size_; }
  /// Number of batches that next() returns in each epoch.
  std::size_t batches_per_epoch() const noexcept;
  std::size_t channels() const noexcept { return 1; }
  /// Height of the output images, after padding.
  std::size_t height() const noexcept { return height_; }
  /// Width of the output images, after padding.
  std::size_t width() const noexcept { return width_; }
  std::uint64_t seed() const noexcept { return seed_; }
  std::uint64_t epoch() const noexcept { return epoch_; }
  /// Number of images the last successful next() wrote: batch_size(), or
  /// fewer for the last batch of an epoch when drop_last is false.
  std::size_t last_batch_size() const noexcept { return last_batch_size_; }

  bool next(std::span<Scalar> images, std::span<std::int64_t> labels);

  state_type state() const noexcept { return {epoch_, position_}; }
  void restore(state_type state);

 private:
  void shuffle_epoch();
  void write_image(std::size_t index, Scalar* out) const;

  const labelled_images* data_;
  std::size_t batch_size_;
  std::uint64_t seed_;
  batcher_options options_;
  std::size_t height_;
  std::size_t width_;
  std::size_t top_;   // rows of padding above each image
  std::size_t left_;  // columns of padding left of each image
  std::uint64_t epoch_ = 0;
  std::uint64_t position_ = 0;
  std::size_t last_batch_size_ = 0;
  std::vector<std::uint32_t> order_;  // the visiting order of epoch_
  std::array<Scalar, 256> scaled_;    // the output value of each pixel byte
};

// ---------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------

/// Checks the data and the options: throws argument_error for a batch size
/// of 0 or above the number of images, a pad_to below the image size, or
/// data whose pixel or label counts do not match count, height and width.
template <class Scalar>
batcher<Scalar>::batcher(const labelled_images& data, std::size_t batch_size, std::uint64_t seed,
                         batcher_options options)
    : data_(&data), batch_size_(batch_size), seed_(seed), options_(options) {
  using detail::concat;
  constexpr std::size_t size_max = std::numeric_limits<std::size_t>::max();
  const bool overflow = data.height != 0 && data.width > size_max / data.height;
  const std::size_t image_size = data.height * data.width;
  if (overflow || data.height == 0 || data.width == 0 ||
      (image_size != 0 && data.count > size_max / image_size) ||
      data.pixels.size() != data.count * image_size || data.labels.size() != data.count) {
    throw argument_error(concat("batcher: data of ", data.count, " images of ", data.height, " x ",
                                data.width, " pixels need as many pixels and labels, but hold ",
                                data.pixels.size(), " pixels and ", data.labels.size(), " labels"));
  }
  if (data.count > std::numeric_limits<std::uint32_t>::max()) {
    throw argument_error(concat("batcher: ", data.count, " images exceed the limit of 2^32 - 1"));
  }
  if (batch_size == 0 || batch_size > data.count) {
    throw argument_error(concat("batcher: batch size ", batch_size, " must be between 1 and the ",
                                data.count, " images of the data"));
  }
  if (options.pad_to != 0 && options.pad_to < std::max(data.height, data.width)) {
    throw argument_error(concat("batcher: pad_to ", options.pad_to, " is smaller than the ",
                                data.height, " x ", data.width, " images"));
  }

  height_ = options.pad_to != 0 ? options.pad_to : data.height;
  width_ = options.pad_to != 0 ? options.pad_to : data.width;
  // An odd difference puts the extra row or column below or right of the image.
  top_ = (height_ - data.height) / 2;
  left_ = (width_ - data.width) / 2;
  for (std::size_t byte = 0; byte < scaled_.size(); ++byte) {
    scaled_[byte] = static_cast<Scalar>(byte) / static_cast<Scalar>(127.5) - Scalar{1};
  }
  shuffle_epoch();
}

template <class Scalar>
std::size_t batcher<Scalar>::batches_per_epoch() const noexcept {
  const std::size_t full = data_->count / batch_size_;
  return options_.drop_last || data_->count % batch_size_ == 0 ? full : full + 1;
}

/// Writes the next batch into `images` (batch_size() x channels() x height()
/// x width() values) and `labels` (batch_size() values) and returns true.
/// When the epoch has no batch left, it moves to the start of the next epoch
/// and returns false without writing. A last incomplete batch, when kept,
/// fills only the first last_batch_size() images and labels. Throws
/// argument_error when a buffer has another size.
template <class Scalar>
bool batcher<Scalar>::next(std::span<Scalar> images, std::span<std::int64_t> labels) {
  const std::size_t image_values = channels() * height_ * width_;
  if (images.size() != batch_size_ * image_values || labels.size() != batch_size_) {
    throw argument_error(detail::concat(
        "batcher::next: buffers of ", images.size(), " image values and ", labels.size(),
        " labels, expected ", batch_size_ * image_values, " (", batch_size_, " x ", channels(),
        " x ", height_, " x ", width_, ") and ", batch_size_));
  }
  const std::size_t remaining = data_->count - position_;
  if (remaining == 0 || (options_.drop_last && remaining < batch_size_)) {
    ++epoch_;
    position_ = 0;
    last_batch_size_ = 0;
    shuffle_epoch();
    return false;
  }

  const std::size_t count = std::min(batch_size_, remaining);
  for (std::size_t slot = 0; slot < count; ++slot) {
    const std::size_t index = order_[position_ + slot];
    write_image(index, images.data() + slot * image_values);
    labels[slot] = data_->labels[index];
  }
  position_ += count;
  last_batch_size_ = count;
  return true;
}

/// Moves to `state`, as returned by state(). Throws argument_error when its
/// position exceeds the number of images.
template <class Scalar>
void batcher<Scalar>::restore(state_type state) {
  if (state.position > data_->count) {
    throw argument_error(detail::concat("batcher::restore: position ", state.position,
                                        " exceeds the ", data_->count, " images of an epoch"));
  }
  const bool new_epoch = state.epoch != epoch_;
  epoch_ = state.epoch;
  position_ = state.position;
  last_batch_size_ = 0;
  if (new_epoch) shuffle_epoch();
}

// Sets order_ to the visiting order of epoch_, computed from the identity
// so that it depends on the seed and the epoch only.
template <class Scalar>
void batcher<Scalar>::shuffle_epoch() {
  order_.resize(data_->count);
  std::iota(order_.begin(), order_.end(), std::uint32_t{0});
  if (!options_.shuffle) return;
  philox random(seed_, epoch_);
  for (std::size_t i = order_.size(); i > 1; --i) {
    const std::uint32_t j = random.below(static_cast<std::uint32_t>(i));
    std::swap(order_[i - 1], order_[j]);
  }
}

template <class Scalar>
void batcher<Scalar>::write_image(std::size_t index, Scalar* out) const {
  const std::size_t rows = data_->height;
  const std::size_t columns = data_->width;
  const std::uint8_t* pixels = data_->pixels.data() + index * rows * columns;
  if (height_ != rows || width_ != columns) std::fill(out, out + height_ * width_, Scalar{-1});
  for (std::size_t row = 0; row < rows; ++row) {
    Scalar* out_row = out + (top_ + row) * width_ + left_;
    for (std::size_t column = 0; column < columns; ++column) {
      out_row[column] = scaled_[pixels[row * columns + column]];
    }
  }
}

}  // namespace advgan::data
