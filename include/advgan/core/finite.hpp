#pragma once
// NaN and infinity tests that read the bits of a value.
//
// With -ffast-math (or -ffinite-math-only), GCC and Clang assume that no
// value is NaN or infinite, so std::isfinite, std::isnan and comparisons with
// infinity fold to constants and every check built on them disappears. These
// tests read the exponent field instead, which integer code does and the
// compiler cannot assume away: an IEEE 754 binary32 or binary64 value is NaN
// or infinite exactly when its exponent bits are all ones.

#include <bit>       // std::bit_cast
#include <concepts>  // std::floating_point
#include <cstdint>   // std::uint32_t, std::uint64_t
#include <limits>    // std::numeric_limits

namespace advgan::detail {

/// The unsigned integer type with the bits of T, and the masks of T's sign,
/// exponent and mantissa fields.
template <std::floating_point T>
struct float_bits;

template <>
struct float_bits<float> {
  using type = std::uint32_t;
  static constexpr type sign_mask = 0x8000'0000u;
  static constexpr type exponent_mask = 0x7F80'0000u;
  static constexpr type mantissa_mask = 0x007F'FFFFu;
};

template <>
struct float_bits<double> {
  using type = std::uint64_t;
  static constexpr type sign_mask = 0x8000'0000'0000'0000u;
  static constexpr type exponent_mask = 0x7FF0'0000'0000'0000u;
  static constexpr type mantissa_mask = 0x000F'FFFF'FFFF'FFFFu;
};

/// Returns whether `value` is neither NaN nor infinite, also under
/// -ffast-math.
template <std::floating_point T>
constexpr bool is_finite(T value) noexcept {
  static_assert(std::numeric_limits<T>::is_iec559, "advgan needs IEEE 754 float and double");
  using bits = float_bits<T>;
  return (std::bit_cast<typename bits::type>(value) & bits::exponent_mask) != bits::exponent_mask;
}

/// Returns whether `value` is NaN, also under -ffast-math.
template <std::floating_point T>
constexpr bool is_nan(T value) noexcept {
  using bits = float_bits<T>;
  const auto pattern = std::bit_cast<typename bits::type>(value);
  return !is_finite(value) && (pattern & bits::mantissa_mask) != 0;
}

/// Returns whether `value` is +infinity or -infinity, also under -ffast-math.
template <std::floating_point T>
constexpr bool is_infinite(T value) noexcept {
  return !is_finite(value) && !is_nan(value);
}

/// Returns whether `value` is +infinity, also under -ffast-math.
template <std::floating_point T>
constexpr bool is_positive_infinity(T value) noexcept {
  return std::bit_cast<typename float_bits<T>::type>(value) == float_bits<T>::exponent_mask;
}

/// Returns whether `value` is -infinity, also under -ffast-math.
template <std::floating_point T>
constexpr bool is_negative_infinity(T value) noexcept {
  using bits = float_bits<T>;
  return std::bit_cast<typename bits::type>(value) == (bits::sign_mask | bits::exponent_mask);
}

}  // namespace advgan::detail
