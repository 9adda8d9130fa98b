#pragma once
// Philox-4x32-10, the counter-based generator of Salmon et al., "Parallel
// random numbers: as easy as 1, 2, 3" (SC 2011), which cuRAND and PyTorch's
// CUDA generator also use. Its whole state is a 64-bit key and a 128-bit
// counter, so a stored (seed, offset) pair resumes a stream exactly and every
// backend can produce the same numbers from the same seed.

#include <array>    // std::array
#include <cmath>    // std::log, std::sqrt, std::cos, std::sin
#include <cstdint>  // std::uint32_t, std::uint64_t

namespace advgan {

/// Computes one Philox-4x32-10 block: ten rounds of the bijection on
/// `counter` under `key`.
constexpr std::array<std::uint32_t, 4> philox4x32_10(std::array<std::uint32_t, 4> counter,
                                                     std::array<std::uint32_t, 2> key) {
  constexpr std::uint64_t multiplier0 = 0xD2511F53u;
  constexpr std::uint64_t multiplier1 = 0xCD9E8D57u;
  constexpr std::uint32_t weyl0 = 0x9E3779B9u;
  constexpr std::uint32_t weyl1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const std::uint64_t product0 = multiplier0 * counter[0];
    const std::uint64_t product1 = multiplier1 * counter[2];
    const auto hi0 = static_cast<std::uint32_t>(product0 >> 32);
    const auto lo0 = static_cast<std::uint32_t>(product0);
    const auto hi1 = static_cast<std::uint32_t>(product1 >> 32);
    const auto lo1 = static_cast<std::uint32_t>(product1);
    counter = {hi1 ^ counter[1] ^ key[0], lo1, hi0 ^ counter[3] ^ key[1], lo0};
    key[0] += weyl0;
    key[1] += weyl1;
  }
  return counter;
}

/// A stream of random numbers from Philox-4x32-10.
///
/// The key is the seed and the counter is (offset, stream), so two generators
/// with the same seed and different `stream` values never overlap. `offset()`
/// counts 32-bit words drawn; `seek(offset)` restores any position.
class philox {
 public:
  explicit philox(std::uint64_t seed = 0, std::uint64_t stream = 0) noexcept
      : seed_(seed), stream_(stream) {}

  std::uint64_t seed() const noexcept { return seed_; }
  std::uint64_t stream() const noexcept { return stream_; }
  std::uint64_t offset() const noexcept { return offset_; }
  void seek(std::uint64_t offset) noexcept { offset_ = offset; }

  /// Returns the next 32 random bits.
  std::uint32_t next_u32() noexcept {
    const std::uint64_t block = offset_ / 4;
    const auto lane = static_cast<std::size_t>(offset_ % 4);
    if (block != cached_block_ || !has_cache_) {
      cache_ = philox4x32_10(
          {static_cast<std::uint32_t>(block), static_cast<std::uint32_t>(block >> 32),
           static_cast<std::uint32_t>(stream_), static_cast<std::uint32_t>(stream_ >> 32)},
          {static_cast<std::uint32_t>(seed_), static_cast<std::uint32_t>(seed_ >> 32)});
      cached_block_ = block;
      has_cache_ = true;
    }
    ++offset_;
    return cache_[lane];
  }

  /// Returns a uniform double in [0, 1) with 53 random bits.
  double uniform() noexcept {
    const std::uint64_t high = next_u32() >> 5;  // 27 bits
    const std::uint64_t low = next_u32() >> 6;   // 26 bits
    return static_cast<double>((high << 26) | low) * 0x1.0p-53;
  }

  /// Returns a uniform double in [low, high).
  double uniform(double low, double high) noexcept { return low + (high - low) * uniform(); }

  /// Returns a standard normal sample by the Box-Muller transform. Each call
  /// consumes exactly four 32-bit words, so offsets stay predictable.
  double normal() noexcept {
    const double u1 = 1.0 - uniform();  // in (0, 1], so the logarithm is finite
    const double u2 = uniform();
    constexpr double two_pi = 6.283185307179586476925286766559;
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(two_pi * u2);
  }

  /// Returns a normal sample with the given mean and standard deviation.
  double normal(double mean, double stddev) noexcept { return mean + stddev * normal(); }

  /// Returns an integer uniform in [0, bound) without modulo bias, by
  /// Lemire's multiply-and-reject method on 32-bit words.
  std::uint32_t below(std::uint32_t bound) noexcept {
    std::uint64_t product = static_cast<std::uint64_t>(next_u32()) * bound;
    auto low = static_cast<std::uint32_t>(product);
    if (low < bound) {
      const std::uint32_t threshold = static_cast<std::uint32_t>(-bound) % bound;
      while (low < threshold) {
        product = static_cast<std::uint64_t>(next_u32()) * bound;
        low = static_cast<std::uint32_t>(product);
      }
    }
    return static_cast<std::uint32_t>(product >> 32);
  }

 private:
  std::uint64_t seed_;
  std::uint64_t stream_;
  std::uint64_t offset_ = 0;
  std::uint64_t cached_block_ = 0;
  bool has_cache_ = false;
  std::array<std::uint32_t, 4> cache_{};
};

}  // namespace advgan
