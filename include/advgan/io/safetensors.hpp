#pragma once
// The safetensors file format: reading, checking, building and writing.
//
// A file is an 8-byte little-endian header length N, then N bytes of UTF-8
// JSON, then the data section. The JSON object maps each tensor name to
// {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, where the
// offsets count bytes from the start of the data section, and may hold a
// "__metadata__" object of string values. The tensors must cover the data
// section exactly, in contiguous ranges. Values are little-endian and
// row-major, as PyTorch stores them.

#include <algorithm>    // std::sort, std::max_element
#include <bit>          // std::bit_cast, std::endian
#include <cmath>        // std::ldexp, std::trunc, std::fabs
#include <cstddef>      // std::byte, std::size_t
#include <cstdint>      // std::uint16_t, std::uint64_t, std::int64_t
#include <cstring>      // std::memcpy
#include <filesystem>   // std::filesystem::path, std::filesystem::file_size
#include <fstream>      // std::ifstream
#include <limits>       // std::numeric_limits
#include <map>          // std::map
#include <optional>     // std::optional
#include <set>          // std::set
#include <span>         // std::span
#include <string>       // std::string
#include <string_view>  // std::string_view
#include <type_traits>  // std::is_same_v, std::is_signed_v, std::conditional_t
#include <utility>      // std::in_range, std::move
#include <vector>       // std::vector

#include <nlohmann/json.hpp>

#include "advgan/core/error.hpp"
#include "advgan/core/finite.hpp"
#include "advgan/io/atomic_file.hpp"

namespace advgan::io {

/// Element types of the safetensors format. `boolean` is the format's BOOL,
/// one byte per element.
enum class dtype { f16, bf16, f32, f64, i8, i16, i32, i64, u8, u16, u32, u64, boolean };

namespace detail {

struct dtype_info {
  dtype type;
  std::string_view name;
  std::size_t size;
};

inline constexpr dtype_info dtype_table[] = {
    {dtype::f16, "F16", 2},     {dtype::bf16, "BF16", 2}, {dtype::f32, "F32", 4},
    {dtype::f64, "F64", 8},     {dtype::i8, "I8", 1},     {dtype::i16, "I16", 2},
    {dtype::i32, "I32", 4},     {dtype::i64, "I64", 8},   {dtype::u8, "U8", 1},
    {dtype::u16, "U16", 2},     {dtype::u32, "U32", 4},   {dtype::u64, "U64", 8},
    {dtype::boolean, "BOOL", 1}};

template <class T, class... Candidates>
inline constexpr bool is_one_of_v = (std::is_same_v<T, Candidates> || ...);

// The C++ types a tensor converts to and from: bool, float, double and the
// signed and unsigned integers of 8 to 64 bits (character types excluded).
template <class T>
inline constexpr bool is_element_type_v =
    is_one_of_v<T, bool, float, double, signed char, short, int, long, long long, unsigned char,
                unsigned short, unsigned, unsigned long, unsigned long long>;

}  // namespace detail

/// Returns the format's name of a dtype, as in "F32".
constexpr std::string_view dtype_name(dtype type) {
  return detail::dtype_table[static_cast<std::size_t>(type)].name;
}

/// Returns the size of one element in bytes.
constexpr std::size_t dtype_size(dtype type) {
  return detail::dtype_table[static_cast<std::size_t>(type)].size;
}

/// Returns the dtype with the format's name `name` ("F32"), or nullopt.
constexpr std::optional<dtype> dtype_from_name(std::string_view name) {
  for (const auto& info : detail::dtype_table)
    if (info.name == name) return info.type;
  return std::nullopt;
}

/// Returns the dtype that stores T: float is F32, double F64, bool BOOL, and
/// an integer type the integer dtype of its size and signedness.
template <class T>
constexpr dtype dtype_of() {
  static_assert(detail::is_element_type_v<T>,
                "a tensor element must be bool, float, double or an integer of 8 to 64 bits");
  constexpr dtype signed_types[] = {dtype::i8, dtype::i16, dtype::i32, dtype::i64};
  constexpr dtype unsigned_types[] = {dtype::u8, dtype::u16, dtype::u32, dtype::u64};
  if constexpr (std::is_same_v<T, bool>) {
    return dtype::boolean;
  } else if constexpr (std::is_same_v<T, float>) {
    return dtype::f32;
  } else if constexpr (std::is_same_v<T, double>) {
    return dtype::f64;
  } else {
    constexpr std::size_t index = std::bit_width(sizeof(T)) - 1;  // 1, 2, 4, 8 bytes -> 0..3
    return std::is_signed_v<T> ? signed_types[index] : unsigned_types[index];
  }
}

namespace detail {

// Returns a * b, or nullopt when the product overflows.
inline std::optional<std::size_t> checked_multiply(std::size_t a, std::size_t b) {
  if (a != 0 && b > std::numeric_limits<std::size_t>::max() / a) return std::nullopt;
  return a * b;
}

// Returns the number of elements of `shape` (1 for the scalar shape []), or
// nullopt when the product overflows.
inline std::optional<std::size_t> element_count_of(const std::vector<std::size_t>& shape) {
  std::optional<std::size_t> count = 1;
  for (std::size_t extent : shape) {
    count = checked_multiply(*count, extent);
    if (!count) return std::nullopt;
  }
  return count;
}

// Formats a shape as the format writes it, "[2, 3]".
template <class Extents>
std::string shape_text(const Extents& shape) {
  std::string text = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) text += ", ";
    text += std::to_string(shape[i]);
  }
  return text + "]";
}

template <class UInt>
UInt load_little_endian(const std::byte* bytes) {
  UInt value = 0;
  for (std::size_t i = 0; i < sizeof(UInt); ++i)
    value =
        static_cast<UInt>(value | static_cast<UInt>(std::to_integer<UInt>(bytes[i]) << (8 * i)));
  return value;
}

template <class UInt>
void store_little_endian(UInt value, std::byte* bytes) {
  for (std::size_t i = 0; i < sizeof(UInt); ++i)
    bytes[i] = static_cast<std::byte>(value >> (8 * i));
}

// Decodes IEEE 754 binary16, including subnormals, infinities and NaN.
inline float half_to_float(std::uint16_t half) {
  const std::uint32_t sign = static_cast<std::uint32_t>(half & 0x8000u) << 16;
  const std::uint32_t exponent = (half >> 10) & 0x1Fu;
  const std::uint32_t mantissa = half & 0x3FFu;
  if (exponent == 0x1F) return std::bit_cast<float>(sign | 0x7F800000u | (mantissa << 13));
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24.
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign != 0 ? -magnitude : magnitude;
  }
  // Rebias the exponent from 15 to 127.
  return std::bit_cast<float>(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

// Decodes bfloat16, the upper half of a binary32.
inline float bfloat16_to_float(std::uint16_t value) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(value) << 16);
}

// The unsigned integer type of `Size` bytes.
template <std::size_t Size>
using unsigned_of_size = std::conditional_t<
    Size == 1, std::uint8_t,
    std::conditional_t<Size == 2, std::uint16_t,
                       std::conditional_t<Size == 4, std::uint32_t, std::uint64_t>>>;

// Reads one little-endian element of type Stored and widens it without loss:
// floating types to double, signed integers to std::int64_t and unsigned
// integers to std::uint64_t.
template <class Stored>
auto load_widened(const std::byte* bytes) {
  const auto value =
      std::bit_cast<Stored>(load_little_endian<unsigned_of_size<sizeof(Stored)>>(bytes));
  if constexpr (std::is_floating_point_v<Stored>)
    return double{value};
  else if constexpr (std::is_signed_v<Stored>)
    return std::int64_t{value};
  else
    return std::uint64_t{value};
}

// Calls visit(index, value) for each element, with the value widened as by
// load_widened. F16 and BF16 widen to double, BOOL to std::uint64_t 0 or 1
// (any nonzero byte is 1).
template <class Visitor>
void for_each_element(dtype type, const std::byte* data, std::size_t count, Visitor&& visit) {
  auto decode_all = [&](auto decode) {
    const std::size_t width = dtype_size(type);
    for (std::size_t i = 0; i < count; ++i) visit(i, decode(data + i * width));
  };
  switch (type) {
    case dtype::f16:
      return decode_all([](const std::byte* p) {
        return double{half_to_float(load_little_endian<std::uint16_t>(p))};
      });
    case dtype::bf16:
      return decode_all([](const std::byte* p) {
        return double{bfloat16_to_float(load_little_endian<std::uint16_t>(p))};
      });
    case dtype::f32:
      return decode_all(load_widened<float>);
    case dtype::f64:
      return decode_all(load_widened<double>);
    case dtype::i8:
      return decode_all(load_widened<std::int8_t>);
    case dtype::i16:
      return decode_all(load_widened<std::int16_t>);
    case dtype::i32:
      return decode_all(load_widened<std::int32_t>);
    case dtype::i64:
      return decode_all(load_widened<std::int64_t>);
    case dtype::u8:
      return decode_all(load_widened<std::uint8_t>);
    case dtype::u16:
      return decode_all(load_widened<std::uint16_t>);
    case dtype::u32:
      return decode_all(load_widened<std::uint32_t>);
    case dtype::u64:
      return decode_all(load_widened<std::uint64_t>);
    case dtype::boolean:
      return decode_all(
          [](const std::byte* p) { return std::uint64_t{std::to_integer<std::uint8_t>(*p) != 0}; });
  }
}

// Converts one widened element to T. Returns false when T cannot hold it:
// an integer out of T's range, a fraction, NaN or infinity for an integral T,
// or a finite value beyond a floating T's range.
template <class T, class Source>
bool convert_element(Source value, T& out) {
  if constexpr (std::is_same_v<T, bool>) {
    if (value != Source{0} && value != Source{1}) return false;
    out = value != Source{0};
  } else if constexpr (std::is_floating_point_v<T>) {
    if constexpr (std::is_floating_point_v<Source>)
      if (advgan::detail::is_finite(value) && std::fabs(value) > std::numeric_limits<T>::max())
        return false;
    out = static_cast<T>(value);
  } else if constexpr (std::is_integral_v<Source>) {
    if (!std::in_range<T>(value)) return false;
    out = static_cast<T>(value);
  } else {
    // T's range is [-2^digits, 2^digits) for signed T, [0, 2^digits) for unsigned.
    // The bit test rejects NaN and infinity also under -ffast-math, where
    // the range comparisons may assume that neither occurs.
    const double upper = std::ldexp(1.0, std::numeric_limits<T>::digits);
    const double lower = std::is_signed_v<T> ? -upper : 0.0;
    if (!advgan::detail::is_finite(value)) return false;
    if (!(value >= lower && value < upper) || std::trunc(value) != value) return false;
    out = static_cast<T>(value);
  }
  return true;
}

// Converts every element of a tensor to T and passes it to store(index,
// value). Throws argument_error naming the first element T cannot hold.
template <class T, class Store>
void convert_elements(dtype type, std::span<const std::byte> bytes, std::size_t count,
                      Store&& store) {
  for_each_element(type, bytes.data(), count, [&](std::size_t i, auto value) {
    T converted{};
    if (!convert_element(value, converted))
      throw argument_error(advgan::detail::concat("cannot convert ", dtype_name(type), " value ",
                                                  value, " at index ", i, " to ",
                                                  dtype_name(dtype_of<T>()), " exactly"));
    store(i, converted);
  });
}

// Copies the bytes unchanged when the tensor already stores T on a
// little-endian machine, and returns whether it did. BOOL always takes the
// converting path, which maps nonzero bytes to true.
template <class T>
bool copy_if_same_type(dtype type, std::span<const std::byte> bytes, T* out) {
  if constexpr (std::endian::native == std::endian::little && !std::is_same_v<T, bool>) {
    if (type != dtype_of<T>()) return false;
    if (!bytes.empty()) std::memcpy(out, bytes.data(), bytes.size());
    return true;
  }
  return false;
}

}  // namespace detail

/// One tensor of a safetensors file: its dtype, its shape (empty for a
/// scalar) and its little-endian, row-major bytes.
struct tensor_data {
  dtype type = dtype::f32;
  std::vector<std::size_t> shape;
  std::vector<std::byte> bytes;

  /// Returns the product of the shape: 1 for a scalar, 0 for an empty tensor.
  /// Throws argument_error if the product overflows.
  std::size_t element_count() const {
    const auto count = detail::element_count_of(shape);
    if (!count)
      throw argument_error("tensor shape " + detail::shape_text(shape) + " has too many elements");
    return *count;
  }

  /// Converts the elements to T. Integer targets accept only values they hold
  /// exactly, so F32 1.5 or I64 -1 to uint8 throws argument_error; floating
  /// targets round. Also throws argument_error if the byte count does not fit
  /// the shape.
  template <class T>
  std::vector<T> to() const {
    const std::size_t count = checked_count();
    std::vector<T> values(count);
    if constexpr (!std::is_same_v<T, bool>)
      if (detail::copy_if_same_type(type, bytes, values.data())) return values;
    detail::convert_elements<T>(type, bytes, count,
                                [&](std::size_t i, T value) { values[i] = value; });
    return values;
  }

  /// Returns element_count() after checking that the byte count matches it.
  std::size_t checked_count() const {
    const std::size_t count = element_count();
    const auto expected = detail::checked_multiply(count, dtype_size(type));
    if (!expected || *expected != bytes.size())
      throw argument_error(advgan::detail::concat(
          "tensor of shape ", detail::shape_text(shape), " and dtype ", dtype_name(type), " has ",
          bytes.size(), " bytes, expected ", count, " * ", dtype_size(type)));
    return count;
  }
};

namespace detail {

// One tensor's entry in the header.
struct header_entry {
  std::string name;
  dtype type;
  std::vector<std::size_t> shape;
  std::uint64_t begin;
  std::uint64_t end;
};

// The checked header: entries sorted by offset, then the metadata.
struct parsed_header {
  std::vector<header_entry> entries;
  std::map<std::string, std::string> metadata;
};

// Returns the position of the first byte that starts an invalid UTF-8
// sequence (overlong forms and surrogates included), or npos.
inline std::size_t find_invalid_utf8(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<unsigned char>(text[i]);
    if (lead < 0x80) {
      ++i;
      continue;
    }
    std::size_t length = 0;
    char32_t code_point = 0;
    char32_t smallest = 0;
    if ((lead & 0xE0) == 0xC0) {
      length = 2;
      code_point = lead & 0x1F;
      smallest = 0x80;
    } else if ((lead & 0xF0) == 0xE0) {
      length = 3;
      code_point = lead & 0x0F;
      smallest = 0x800;
    } else if ((lead & 0xF8) == 0xF0) {
      length = 4;
      code_point = lead & 0x07;
      smallest = 0x10000;
    } else {
      return i;
    }
    if (text.size() - i < length) return i;
    for (std::size_t k = 1; k < length; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xC0) != 0x80) return i;
      code_point = (code_point << 6) | (next & 0x3F);
    }
    if (code_point < smallest || code_point > 0x10FFFF ||
        (code_point >= 0xD800 && code_point <= 0xDFFF))
      return i;
    i += length;
  }
  return std::string_view::npos;
}

// Shortens text for an error message, cutting at a UTF-8 character boundary.
inline std::string clip(std::string_view text, std::size_t max_bytes = 120) {
  if (text.size() <= max_bytes) return std::string(text);
  std::size_t cut = max_bytes;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  return std::string(text.substr(0, cut)) + "...";
}

// Describes a JSON value for an error message without printing a container,
// whose nesting could be deep enough to exhaust the stack when dumped.
inline std::string describe(const nlohmann::json& value) {
  if (value.is_array())
    return advgan::detail::concat("an array of ", value.size(),
                                  value.size() == 1 ? " element" : " elements");
  if (value.is_object()) return "an object";
  return clip(value.dump());
}

// Returns a JSON value as a non-negative integer, or nullopt if it is not one.
inline std::optional<std::uint64_t> as_count(const nlohmann::json& value) {
  if (value.is_number_unsigned()) return value.get<std::uint64_t>();
  if (value.is_number_integer() && value.get<std::int64_t>() == 0) return 0;  // "-0"
  return std::nullopt;
}

// Reads the header length and checks it against the limit and the file size
// before anything is allocated for the header.
inline std::uint64_t parse_header_length(std::span<const std::byte> first_bytes,
                                         std::uint64_t file_size, std::uint64_t max_length,
                                         const std::string& source) {
  using advgan::detail::concat;
  if (file_size < 8 || first_bytes.size() < 8)
    throw file_error(source, "",
                     concat("file too small for the 8-byte header length: expected at least 8 "
                            "bytes, found ",
                            file_size));
  const auto length = load_little_endian<std::uint64_t>(first_bytes.data());
  if (length > max_length)
    throw file_error(source, "",
                     concat("header length ", length, " exceeds the limit of ", max_length,
                            " bytes (file size ", file_size, " bytes)"));
  if (length > file_size - 8)
    throw file_error(source, "",
                     concat("header length ", length, " exceeds the ", file_size - 8,
                            " bytes that follow it: expected a file of at least ", length + 8,
                            " bytes, found ", file_size));
  return length;
}

// Reads a "shape" or "data_offsets" array of non-negative integers.
inline std::vector<std::uint64_t> parse_counts(const nlohmann::json& entry, const char* key,
                                               const std::string& source,
                                               const std::string& field) {
  using advgan::detail::concat;
  const auto found = entry.find(key);
  if (found == entry.end()) throw file_error(source, field, concat("missing \"", key, "\""));
  if (!found->is_array())
    throw file_error(source, field,
                     concat("\"", key, "\" is not an array (found ", describe(*found), ")"));
  std::vector<std::uint64_t> counts;
  counts.reserve(found->size());
  for (const auto& value : *found) {
    const auto count = as_count(value);
    if (!count || !std::in_range<std::size_t>(*count))
      throw file_error(
          source, field,
          concat("\"", key, "\" value ", describe(value), " is not a non-negative integer"));
    counts.push_back(*count);
  }
  return counts;
}

// Checks one tensor entry on its own: its fields, and that its byte range
// contains exactly product(shape) * dtype size bytes.
inline header_entry parse_entry(const std::string& name, const nlohmann::json& entry,
                                const std::string& source) {
  using advgan::detail::concat;
  const std::string field = clip(name);
  if (!entry.is_object())
    throw file_error(source, field,
                     concat("entry is not a JSON object (found ", describe(entry), ")"));
  const auto dtype_field = entry.find("dtype");
  if (dtype_field == entry.end()) throw file_error(source, field, "missing \"dtype\"");
  if (!dtype_field->is_string())
    throw file_error(source, field,
                     concat("\"dtype\" is not a string (found ", describe(*dtype_field), ")"));
  const auto type = dtype_from_name(dtype_field->get_ref<const std::string&>());
  if (!type) throw file_error(source, field, concat("unknown dtype ", describe(*dtype_field)));

  const auto extents = parse_counts(entry, "shape", source, field);
  const std::vector<std::size_t> shape(extents.begin(), extents.end());
  const auto offsets = parse_counts(entry, "data_offsets", source, field);
  if (offsets.size() != 2)
    throw file_error(source, field,
                     concat("\"data_offsets\" ", shape_text(offsets),
                            " must contain 2 values, found ", offsets.size()));
  const std::uint64_t begin = offsets[0];
  const std::uint64_t end = offsets[1];
  if (end < begin)
    throw file_error(source, field,
                     concat("data_offsets ", shape_text(offsets), " end before they begin"));

  const auto count = element_count_of(shape);
  const auto size = count ? checked_multiply(*count, dtype_size(*type)) : std::nullopt;
  if (!size)
    throw file_error(source, field,
                     concat("shape ", shape_text(shape), " of ", dtype_name(*type),
                            " is too large: its byte count overflows"));
  if (end - begin != *size)
    throw file_error(
        source, field,
        concat("data_offsets ", shape_text(offsets), " span ", end - begin, " bytes, expected ",
               *size, " for shape ", shape_text(shape), " of ", dtype_name(*type)));
  return {name, *type, shape, begin, end};
}

inline std::map<std::string, std::string> parse_metadata(const nlohmann::json& value,
                                                         const std::string& source) {
  using advgan::detail::concat;
  if (!value.is_object())
    throw file_error(source, "__metadata__",
                     concat("metadata is not a JSON object (found ", describe(value), ")"));
  std::map<std::string, std::string> metadata;
  for (const auto& [key, item] : value.items()) {
    if (!item.is_string())
      throw file_error(
          source, "__metadata__",
          concat("value of key \"", clip(key), "\" is not a string (found ", describe(item), ")"));
    metadata.emplace(key, item.get<std::string>());
  }
  return metadata;
}

// Checks that the sorted entries tile the data section: the first starts at
// 0, each starts where the one before ends, and the last ends at data_size.
inline void check_layout(const std::vector<header_entry>& entries, std::uint64_t data_size,
                         const std::string& source) {
  using advgan::detail::concat;
  if (!entries.empty()) {
    const auto last = std::max_element(entries.begin(), entries.end(),
                                       [](const auto& a, const auto& b) { return a.end < b.end; });
    if (last->end > data_size)
      throw file_error(source, clip(last->name),
                       concat("data_offsets [", last->begin, ", ", last->end,
                              "] run past the end of the data section: expected at least ",
                              last->end, " bytes of tensor data, found ", data_size));
  }
  std::uint64_t covered = 0;
  const header_entry* previous = nullptr;
  for (const auto& entry : entries) {
    const std::string range = concat("data_offsets [", entry.begin, ", ", entry.end, "]");
    if (entry.begin < covered)
      throw file_error(source, clip(entry.name),
                       concat(range, " overlap tensor \"", clip(previous->name), "\" at [",
                              previous->begin, ", ", previous->end, "]"));
    if (entry.begin > covered)
      throw file_error(source, clip(entry.name),
                       concat(range, " leave bytes ", covered, " to ", entry.begin,
                              " of the data section unused (tensors must be contiguous)"));
    covered = entry.end;
    previous = &entry;
  }
  if (covered != data_size)
    throw file_error(
        source, "",
        concat("data section has ", data_size, " bytes, but the tensors cover only ", covered));
}

// Formats a byte for an error message, as in "0x0A".
inline std::string byte_text(unsigned char byte) {
  constexpr char digits[] = "0123456789ABCDEF";
  return {'0', 'x', digits[byte >> 4], digits[byte & 0x0F]};
}

// Throws file_error at the first header byte that JSON does not allow at its
// position. Outside strings, JSON allows only whitespace (space, tab, line
// feed, carriage return), structural characters and the characters of
// numbers and literals, and inside strings no unescaped control character.
// The checks matter for bytes that nlohmann::json would pass over: it ends
// the input at a NUL byte, so anything after one went unread, and it skips a
// UTF-8 byte-order mark. The space padding that writers add at the end of the
// header is whitespace and passes.
inline void check_json_bytes(std::string_view text, const std::string& source) {
  using advgan::detail::concat;
  constexpr std::string_view allowed_outside_strings = " \t\n\r{}[]:,\"-+.0123456789eEtruefalsn";
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto byte = static_cast<unsigned char>(text[i]);
    if (in_string) {
      if (byte == '"') {
        in_string = false;
        continue;
      }
      // An escaped byte cannot end the string, so the loop steps over it,
      // but it must not be a control byte either.
      if (byte == '\\' && i + 1 < text.size()) ++i;
      const auto checked = static_cast<unsigned char>(text[i]);
      if (checked < 0x20)
        throw file_error(source, "",
                         concat("header contains control byte ", byte_text(checked),
                                " inside a string, which JSON allows only escaped"),
                         8 + i);
    } else if (byte == '"') {
      in_string = true;
    } else if (allowed_outside_strings.find(static_cast<char>(byte)) == std::string_view::npos) {
      const bool byte_order_mark = i == 0 && text.substr(0, 3) == "\xEF\xBB\xBF";
      throw file_error(source, "",
                       concat("header contains byte ", byte_text(byte),
                              byte_order_mark ? " (the start of a UTF-8 byte-order mark)" : "",
                              ", which JSON does not allow outside a string"),
                       8 + i);
    }
  }
}

// The first key that appears twice in one object of the header: the tensor
// entry (or "__metadata__") that contains it, the key, and the nesting depth
// of its object, 1 for the top level.
struct repeated_key {
  std::string entry;
  std::string key;
  std::size_t depth;
};

// An object of the header while the parser is inside it: its keys so far.
struct open_object {
  std::set<std::string> keys;
  std::string last_key;
};

// Parses and checks the header JSON, given the length of the data section
// that follows it. Every check happens before any tensor is read.
inline parsed_header parse_header(std::string_view text, std::uint64_t data_size,
                                  const std::string& source) {
  using advgan::detail::concat;
  const std::size_t bad_byte = find_invalid_utf8(text);
  if (bad_byte != std::string_view::npos)
    throw file_error(source, "", "header is not valid UTF-8", 8 + bad_byte);
  check_json_bytes(text, source);

  // A repeated key would silently keep only its last value, so the parser
  // callback records the first one, in any object of the header.
  std::optional<repeated_key> repeated;
  std::vector<open_object> open_objects;
  auto find_repeats = [&](int, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using event_kind = nlohmann::json::parse_event_t;
    if (event == event_kind::object_start) {
      open_objects.emplace_back();
    } else if (event == event_kind::object_end) {
      open_objects.pop_back();
    } else if (event == event_kind::key && !repeated) {
      open_object& object = open_objects.back();
      const auto& key = parsed.get_ref<const std::string&>();
      if (!object.keys.insert(key).second)
        repeated = repeated_key{open_objects.size() == 1 ? key : open_objects.front().last_key, key,
                                open_objects.size()};
      object.last_key = key;
    }
    return true;
  };
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text.begin(), text.end(), find_repeats);
  } catch (const nlohmann::json::exception& parse_failure) {
    throw file_error(source, "", concat("header is not valid JSON: ", parse_failure.what()));
  }
  if (!header.is_object())
    throw file_error(source, "",
                     concat("header is not a JSON object (found ", describe(header), ")"));
  if (repeated && repeated->depth == 1)
    throw file_error(source, clip(repeated->entry), "name appears twice in the header");
  if (repeated)
    throw file_error(source, clip(repeated->entry),
                     concat("key \"", clip(repeated->key), "\" appears twice"));

  parsed_header parsed;
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__")
      parsed.metadata = parse_metadata(value, source);
    else
      parsed.entries.push_back(parse_entry(name, value, source));
  }
  std::sort(parsed.entries.begin(), parsed.entries.end(), [](const auto& a, const auto& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  check_layout(parsed.entries, data_size, source);
  return parsed;
}

}  // namespace detail

/// A safetensors file in memory: read one with load() or parse(), or build
/// one with add() and set_metadata(), then write it with save().
///
/// Reading checks the whole header before touching the data, and every
/// violation of the format throws file_error naming the file, the tensor or
/// header field, and the offending value.
class safetensors {
 public:
  /// Largest header accepted, in bytes: MAX_HEADER_SIZE of the Hugging Face
  /// safetensors library (src/tensor.rs), so files it writes always load here.
  static constexpr std::uint64_t max_header_length = 100'000'000;

  safetensors() = default;

  /// Reads and checks the file at `path`. Throws file_error if it cannot be
  /// read or breaks the format.
  static safetensors load(const std::filesystem::path& path);

  /// Reads and checks a file's bytes; `name_for_errors` stands for the file
  /// in error messages and in source().
  static safetensors parse(std::span<const std::byte> bytes, const std::string& name_for_errors);

  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }

  /// Returns the tensor `name`. Throws file_error if there is none.
  const tensor_data& at(const std::string& name) const;

  /// Returns the tensor names in sorted order.
  std::vector<std::string> names() const;

  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  /// Sets a metadata entry. Throws argument_error unless key and value are
  /// valid UTF-8.
  void set_metadata(const std::string& key, const std::string& value);

  /// Adds a tensor, replacing any tensor of the same name. Throws
  /// argument_error if the name is "__metadata__" or not valid UTF-8, or the
  /// byte count does not fit the shape and dtype.
  void add(const std::string& name, tensor_data data);

  /// Adds a tensor of dtype_of<T>() with the given shape and row-major values.
  /// Throws argument_error if the value count does not fit the shape.
  template <class T>
  void add(const std::string& name, std::vector<std::size_t> shape, std::span<const T> values);

  /// Reads tensor `name` into `out`, converting to T as tensor_data::to does.
  /// Throws file_error naming the file, the tensor and both shapes if the
  /// tensor's shape is not `expected_shape`, and file_error if a value does
  /// not convert. Throws argument_error if `out` does not hold exactly
  /// product(expected_shape) elements.
  template <class T>
  void read_into(const std::string& name, const std::vector<std::size_t>& expected_shape,
                 std::span<T> out) const;

  /// Returns the file's bytes: tensors in sorted name order with contiguous
  /// offsets, and the header padded with spaces to a multiple of 8 bytes so
  /// the data section stays 8-byte aligned. Throws argument_error if the
  /// header would exceed max_header_length.
  std::vector<std::byte> serialize() const;

  /// Writes serialize() to `path` with write_file_atomically(), so an
  /// existing file is replaced only by a complete new one.
  void save(const std::filesystem::path& path) const;

  /// Returns the path or name the tensors came from, for messages.
  const std::string& source() const { return source_; }

 private:
  static safetensors from_header(detail::parsed_header header, std::string source);

  std::string source_ = "(in-memory safetensors)";
  std::map<std::string, tensor_data> tensors_;
  std::map<std::string, std::string> metadata_;
};

// ---------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------

inline safetensors safetensors::from_header(detail::parsed_header header, std::string source) {
  safetensors file;
  file.source_ = std::move(source);
  file.metadata_ = std::move(header.metadata);
  return file;
}

inline safetensors safetensors::parse(std::span<const std::byte> bytes,
                                      const std::string& name_for_errors) {
  const std::uint64_t length =
      detail::parse_header_length(bytes, bytes.size(), max_header_length, name_for_errors);
  const std::string_view text(reinterpret_cast<const char*>(bytes.data()) + 8, length);
  const auto data = bytes.subspan(8 + length);
  auto header = detail::parse_header(text, data.size(), name_for_errors);

  auto entries = std::move(header.entries);
  safetensors file = from_header(std::move(header), name_for_errors);
  for (auto& entry : entries) {
    const auto range = data.subspan(entry.begin, entry.end - entry.begin);
    file.tensors_[entry.name] = {entry.type, std::move(entry.shape),
                                 std::vector<std::byte>(range.begin(), range.end())};
  }
  return file;
}

inline safetensors safetensors::load(const std::filesystem::path& path) {
  using advgan::detail::concat;
  const std::string source = path.string();
  std::error_code code;
  const std::uintmax_t file_size = std::filesystem::file_size(path, code);
  if (code) throw file_error(source, "", "cannot read file: " + code.message());
  std::ifstream in(path, std::ios::binary);
  if (!in) throw file_error(source, "", "cannot open file for reading");

  // Reads exactly `size` bytes. A shorter read means that the file shrank
  // after its size was checked.
  auto read_exactly = [&](void* out, std::uint64_t size, std::uint64_t offset) {
    in.read(static_cast<char*>(out), static_cast<std::streamsize>(size));
    if (static_cast<std::uint64_t>(in.gcount()) != size)
      throw file_error(
          source, "",
          concat("file truncated while reading: expected ", size, " bytes, found ", in.gcount()),
          offset);
  };

  std::byte length_bytes[8] = {};
  const std::size_t length_size = file_size < 8 ? 0 : 8;
  read_exactly(length_bytes, length_size, 0);
  const std::uint64_t length = detail::parse_header_length(std::span(length_bytes, length_size),
                                                           file_size, max_header_length, source);
  std::string text(length, '\0');
  read_exactly(text.data(), length, 8);
  auto header = detail::parse_header(text, file_size - 8 - length, source);

  // The layout check guarantees the entries are contiguous in this order.
  auto entries = std::move(header.entries);
  safetensors file = from_header(std::move(header), source);
  for (auto& entry : entries) {
    std::vector<std::byte> bytes(entry.end - entry.begin);
    read_exactly(bytes.data(), bytes.size(), 8 + length + entry.begin);
    file.tensors_[entry.name] = {entry.type, std::move(entry.shape), std::move(bytes)};
  }
  return file;
}

inline const tensor_data& safetensors::at(const std::string& name) const {
  const auto found = tensors_.find(name);
  if (found == tensors_.end())
    throw file_error(
        source_, detail::clip(name),
        advgan::detail::concat("tensor not found among the file's ", tensors_.size(), " tensors"));
  return found->second;
}

inline std::vector<std::string> safetensors::names() const {
  std::vector<std::string> result;
  result.reserve(tensors_.size());
  for (const auto& entry : tensors_) result.push_back(entry.first);
  return result;
}

inline void safetensors::set_metadata(const std::string& key, const std::string& value) {
  if (detail::find_invalid_utf8(key) != std::string_view::npos ||
      detail::find_invalid_utf8(value) != std::string_view::npos)
    throw argument_error("safetensors metadata key and value must be valid UTF-8");
  metadata_[key] = value;
}

inline void safetensors::add(const std::string& name, tensor_data data) {
  using advgan::detail::concat;
  if (name == "__metadata__")
    throw argument_error("safetensors: \"__metadata__\" is reserved and cannot name a tensor");
  if (detail::find_invalid_utf8(name) != std::string_view::npos)
    throw argument_error("safetensors: tensor name is not valid UTF-8");
  try {
    data.checked_count();
  } catch (const argument_error& mismatch) {
    throw argument_error(concat("safetensors: tensor \"", name, "\": ", mismatch.what()));
  }
  tensors_[name] = std::move(data);
}

template <class T>
void safetensors::add(const std::string& name, std::vector<std::size_t> shape,
                      std::span<const T> values) {
  const auto count = detail::element_count_of(shape);
  if (!count || *count != values.size())
    throw argument_error(advgan::detail::concat("safetensors: tensor \"", name, "\" of shape ",
                                                detail::shape_text(shape), " given ", values.size(),
                                                " values"));
  tensor_data data{dtype_of<T>(), std::move(shape), std::vector<std::byte>(values.size_bytes())};
  constexpr std::size_t width = sizeof(T);
  for (std::size_t i = 0; i < values.size(); ++i) {
    std::byte* out = data.bytes.data() + i * width;
    if constexpr (std::is_same_v<T, bool>) {
      out[0] = std::byte{values[i] ? std::uint8_t{1} : std::uint8_t{0}};
    } else {
      using bits = detail::unsigned_of_size<width>;
      detail::store_little_endian(std::bit_cast<bits>(values[i]), out);
    }
  }
  add(name, std::move(data));
}

template <class T>
void safetensors::read_into(const std::string& name, const std::vector<std::size_t>& expected_shape,
                            std::span<T> out) const {
  using advgan::detail::concat;
  const tensor_data& tensor = at(name);
  if (tensor.shape != expected_shape)
    throw file_error(source_, detail::clip(name),
                     concat("shape mismatch: expected ", detail::shape_text(expected_shape),
                            ", found ", detail::shape_text(tensor.shape)));
  const std::size_t count = tensor.element_count();
  if (out.size() != count)
    throw argument_error(concat("safetensors::read_into: tensor \"", name, "\" has ", count,
                                " elements, but the output holds ", out.size()));
  if (detail::copy_if_same_type(tensor.type, tensor.bytes, out.data())) return;
  try {
    detail::convert_elements<T>(tensor.type, tensor.bytes, count,
                                [&](std::size_t i, T value) { out[i] = value; });
  } catch (const argument_error& conversion) {
    throw file_error(source_, detail::clip(name), conversion.what());
  }
}

inline std::vector<std::byte> safetensors::serialize() const {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  std::uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors_) {
    const std::uint64_t end = offset + tensor.bytes.size();
    header[name] = {{"dtype", std::string(dtype_name(tensor.type))},
                    {"shape", tensor.shape},
                    {"data_offsets", {offset, end}}};
    offset = end;
  }
  std::string text = header.dump();
  text.resize((text.size() + 7) / 8 * 8, ' ');
  if (text.size() > max_header_length)
    throw argument_error(advgan::detail::concat(
        "safetensors: the header of ", tensors_.size(), " tensors takes ", text.size(),
        " bytes, more than the limit of ", max_header_length, " that readers accept"));

  std::vector<std::byte> file(8 + text.size() + offset);
  detail::store_little_endian<std::uint64_t>(text.size(), file.data());
  std::memcpy(file.data() + 8, text.data(), text.size());
  std::byte* data = file.data() + 8 + text.size();
  for (const auto& entry : tensors_) {
    if (!entry.second.bytes.empty())
      std::memcpy(data, entry.second.bytes.data(), entry.second.bytes.size());
    data += entry.second.bytes.size();
  }
  return file;
}

inline void safetensors::save(const std::filesystem::path& path) const {
  write_file_atomically(path, serialize());
}

}  // namespace advgan::io
