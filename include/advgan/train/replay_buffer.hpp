#pragma once
// replay_buffer: a store of past generated samples. The discriminator then
// also trains on fakes from earlier generators, which makes the two
// networks oscillate less (Shrivastava et al. 2017, "Learning from Simulated
// and Unsupervised Images through Adversarial Training", section 2.3).
//
// The buffer holds up to `capacity` samples. push() appends while there is
// room; once full, each new sample replaces a uniformly drawn stored one.
// draw() copies uniformly drawn stored samples, with replacement. All
// choices come from the caller's philox, so a seeded run is reproducible.

#include <cstddef>  // std::size_t
#include <cstdint>  // std::uint32_t
#include <limits>   // std::numeric_limits
#include <span>     // std::span

#include "advgan/core/error.hpp"
#include "advgan/core/philox.hpp"

namespace advgan {

template <class Backend>
class replay_buffer {
 public:
  using scalar = typename Backend::scalar;
  using tensor = typename Backend::tensor;

  /// A buffer of `capacity` samples of `sample_size` values each.
  replay_buffer(std::size_t capacity, std::size_t sample_size)
      : capacity_(capacity), sample_size_(sample_size) {
    if (capacity == 0 || sample_size == 0)
      throw argument_error(detail::concat("replay_buffer: capacity (", capacity,
                                          ") and sample size (", sample_size,
                                          ") must both be at least 1"));
    if (capacity > std::numeric_limits<std::uint32_t>::max())
      throw argument_error(detail::concat("replay_buffer: capacity ", capacity,
                                          " exceeds the maximum ",
                                          std::numeric_limits<std::uint32_t>::max()));
    Backend::resize(samples_, capacity, 1, 1, sample_size);
    Backend::fill(Backend::data(samples_), Backend::size(samples_), scalar(0));
  }

  std::size_t capacity() const { return capacity_; }
  std::size_t sample_size() const { return sample_size_; }
  /// Samples stored so far, at most capacity().
  std::size_t size() const { return size_; }

  /// Adds `count` consecutive samples.
  void push(const scalar* samples, std::size_t count, philox& rng) {
    for (std::size_t i = 0; i < count; ++i) {
      std::size_t slot = size_;
      if (size_ < capacity_)
        ++size_;
      else
        slot = rng.below(static_cast<std::uint32_t>(capacity_));
      Backend::copy(samples + i * sample_size_, sample_size_, slot_data(slot));
    }
  }

  /// Writes `count` stored samples, drawn with replacement, to `out`.
  /// Throws argument_error when the buffer is empty.
  void draw(scalar* out, std::size_t count, philox& rng) const {
    if (size_ == 0 && count > 0)
      throw argument_error("replay_buffer: cannot draw from an empty buffer");
    for (std::size_t i = 0; i < count; ++i) {
      const std::size_t slot = rng.below(static_cast<std::uint32_t>(size_));
      Backend::copy(slot_data(slot), sample_size_, out + i * sample_size_);
    }
  }

  /// Every slot, the unused ones zero, for checkpoints: capacity() *
  /// sample_size() values.
  std::span<scalar> storage() { return {Backend::data(samples_), Backend::size(samples_)}; }

  /// Sets the stored count after storage() was restored from a checkpoint.
  /// Throws argument_error for a count above the capacity.
  void restore_size(std::size_t size) {
    if (size > capacity_)
      throw argument_error(detail::concat("replay_buffer: stored count ", size,
                                          " exceeds the capacity ", capacity_));
    size_ = size;
  }

 private:
  scalar* slot_data(std::size_t slot) { return Backend::data(samples_) + slot * sample_size_; }
  const scalar* slot_data(std::size_t slot) const {
    return Backend::data(samples_) + slot * sample_size_;
  }

  std::size_t capacity_;
  std::size_t sample_size_;
  std::size_t size_ = 0;
  tensor samples_;
};

}  // namespace advgan
