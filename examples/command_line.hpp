#pragma once
// Number parsing for the examples' command-line options. Each parser
// rejects the whole text unless all of it is one number, and its error names
// the option and the text.

#include <cmath>      // std::isinf
#include <cstdint>    // std::uint64_t
#include <exception>  // std::exception
#include <string>     // std::string, std::stoull, std::stod

#include <advgan/core/error.hpp>

namespace command_line {

/// Parses a non-negative integer, the value of option `flag`.
inline std::uint64_t parse_unsigned(const std::string& flag, const std::string& text) {
  std::size_t used = 0;
  unsigned long long value = 0;
  try {
    value = std::stoull(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || text.empty() || text[0] == '-')
    throw advgan::argument_error(advgan::detail::concat(flag, ": invalid number \"", text, "\""));
  return value;
}

/// Parses a finite number greater than 0, the value of option `flag`.
inline double parse_positive(const std::string& flag, const std::string& text) {
  std::size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || text.empty() || !(value > 0) || std::isinf(value)) {
    throw advgan::argument_error(
        advgan::detail::concat(flag, ": expected a positive number, got \"", text, "\""));
  }
  return value;
}

}  // namespace command_line
