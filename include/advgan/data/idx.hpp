#pragma once
// The IDX format of MNIST and Fashion-MNIST.
// A file starts with the magic number 00 00 <type code> <number of
// dimensions>, followed by one big-endian u32 per dimension, then the values
// in row-major order, big-endian. Files may be gzip-compressed, as
// distributed; they are inflated on reading.

#include <bit>          // std::bit_cast
#include <cstddef>      // std::size_t, std::ptrdiff_t
#include <cstdint>      // std::uint8_t, std::int8_t, std::int16_t, std::int32_t, std::uint64_t
#include <filesystem>   // std::filesystem::path, std::filesystem::exists
#include <limits>       // std::numeric_limits
#include <optional>     // std::optional
#include <span>         // std::span
#include <string>       // std::string
#include <string_view>  // std::string_view
#include <utility>      // std::move
#include <vector>       // std::vector

#include "advgan/core/error.hpp"
#include "advgan/data/gzip.hpp"
#include "advgan/io/atomic_file.hpp"

namespace advgan::detail {

inline constexpr std::uint8_t idx_uint8 = 0x08;
inline constexpr std::uint8_t idx_int8 = 0x09;
inline constexpr std::uint8_t idx_int16 = 0x0B;
inline constexpr std::uint8_t idx_int32 = 0x0C;
inline constexpr std::uint8_t idx_float32 = 0x0D;
inline constexpr std::uint8_t idx_float64 = 0x0E;
inline constexpr std::size_t idx_max_ndims = 8;

// Returns the element size in bytes of an IDX type code, or 0 for an unknown code.
inline std::size_t idx_element_size(std::uint8_t type_code) {
  switch (type_code) {
    case idx_uint8:
    case idx_int8:
      return 1;
    case idx_int16:
      return 2;
    case idx_int32:
    case idx_float32:
      return 4;
    case idx_float64:
      return 8;
    default:
      return 0;
  }
}

inline std::string_view idx_type_name(std::uint8_t type_code) {
  switch (type_code) {
    case idx_uint8:
      return "uint8";
    case idx_int8:
      return "int8";
    case idx_int16:
      return "int16";
    case idx_int32:
      return "int32";
    case idx_float32:
      return "float32";
    case idx_float64:
      return "float64";
    default:
      return "unknown";
  }
}

// Formats a byte as 0x08, or a 32-bit value as 0x00000803.
inline std::string idx_hex(std::uint64_t value, int digits) {
  constexpr char symbols[] = "0123456789ABCDEF";
  std::string text = "0x";
  for (int digit = digits - 1; digit >= 0; --digit) text += symbols[(value >> (4 * digit)) & 0xF];
  return text;
}

inline std::uint32_t idx_read_be32(const std::uint8_t* bytes) {
  return static_cast<std::uint32_t>(bytes[0]) << 24 | static_cast<std::uint32_t>(bytes[1]) << 16 |
         static_cast<std::uint32_t>(bytes[2]) << 8 | static_cast<std::uint32_t>(bytes[3]);
}

inline std::string idx_format_dims(const std::vector<std::size_t>& dims) {
  std::string text;
  for (std::size_t axis = 0; axis < dims.size(); ++axis) {
    if (axis > 0) text += " x ";
    text += std::to_string(dims[axis]);
  }
  return text;
}

// The parsed header of an IDX file whose size has been checked against it.
struct idx_header {
  std::uint8_t type_code;
  std::vector<std::size_t> dims;
  std::size_t element_count;
  std::size_t data_offset;
};

// Checks the magic number against what the caller requires: a number of
// dimensions and, where given, a type code. The expected magic is shown
// with the file's own type code unless a type is required.
inline void check_idx_magic(const std::string& name, std::uint32_t magic,
                            std::optional<std::size_t> expected_ndims,
                            std::optional<std::uint8_t> required_type) {
  const auto type_code = static_cast<std::uint8_t>(magic >> 8);
  const std::size_t ndims = magic & 0xFF;
  if (expected_ndims && ndims != *expected_ndims) {
    const std::uint64_t expected_magic =
        std::uint64_t{required_type.value_or(type_code)} << 8 | *expected_ndims;
    throw file_error(
        name, "magic",
        concat("expected magic ", expected_magic, ", got ", magic, " (", ndims,
               ndims == 1 ? " dimension" : " dimensions", " instead of ", *expected_ndims, ")"),
        0);
  }
  if (required_type && type_code != *required_type) {
    throw file_error(
        name, "magic",
        concat("type code ", idx_hex(type_code, 2), " (", idx_type_name(type_code), ") where ",
               idx_type_name(*required_type), " (", idx_hex(*required_type, 2), ") is required"),
        2);
  }
}

// Parses the header of IDX data read from `name` and checks that the data
// that follow it are exactly as long as its dimensions require. `noun`
// names the values in messages ("pixel", "label", "data").
inline idx_header parse_idx_header(std::span<const std::uint8_t> bytes, const std::string& name,
                                   std::optional<std::size_t> expected_ndims,
                                   std::optional<std::uint8_t> required_type,
                                   std::string_view noun) {
  if (bytes.size() < 4) {
    throw file_error(name, "header", concat("incomplete header: ", bytes.size(), " bytes, need 4"));
  }
  const std::uint32_t magic = idx_read_be32(bytes.data());
  if (bytes[0] != 0 || bytes[1] != 0) {
    const bool gzip = bytes[0] == 0x1F && bytes[1] == 0x8B;
    throw file_error(
        name, "magic",
        concat("invalid magic ", idx_hex(magic, 8), " (", magic, "): an IDX file starts with 00 00",
               gzip ? ", but these bytes are still gzip data after inflating once, so the file was "
                      "compressed twice"
                    : ""),
        0);
  }
  const std::uint8_t type_code = bytes[2];
  const std::size_t ndims = bytes[3];
  if (idx_element_size(type_code) == 0) {
    throw file_error(
        name, "magic",
        concat("unknown type code ", idx_hex(type_code, 2), " (magic ", idx_hex(magic, 8),
               "); known codes are 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, "
               "0x0D float32, 0x0E float64"),
        2);
  }
  if (ndims == 0 || ndims > idx_max_ndims) {
    throw file_error(name, "magic",
                     concat("number of dimensions ", ndims, " is outside 1 to ", idx_max_ndims,
                            " (magic ", idx_hex(magic, 8), ")"),
                     3);
  }
  check_idx_magic(name, magic, expected_ndims, required_type);

  const std::size_t header_size = 4 + 4 * ndims;
  if (bytes.size() < header_size) {
    throw file_error(name, "header",
                     concat("incomplete header: ", bytes.size(), " bytes, need ", header_size));
  }
  idx_header header{type_code, std::vector<std::size_t>(ndims), 1, header_size};
  constexpr std::size_t size_max = std::numeric_limits<std::size_t>::max();
  bool overflow = false;
  for (std::size_t axis = 0; axis < ndims; ++axis) {
    header.dims[axis] = idx_read_be32(bytes.data() + 4 + 4 * axis);
    if (header.dims[axis] != 0 && header.element_count > size_max / header.dims[axis]) {
      overflow = true;
    }
    header.element_count *= header.dims[axis];
  }
  const std::size_t element_size = idx_element_size(type_code);
  if (overflow || header.element_count > size_max / element_size) {
    throw file_error(
        name, "dimensions",
        concat("the product of dimensions ", idx_format_dims(header.dims), " overflows size_t"), 4);
  }

  const std::size_t expected_bytes = header.element_count * element_size;
  const std::size_t found_bytes = bytes.size() - header_size;
  if (found_bytes < expected_bytes) {
    throw file_error(
        name, "data",
        concat("truncated: expected ", expected_bytes, " ", noun, " bytes, found ", found_bytes,
               " (dimensions ", idx_format_dims(header.dims), ", ", idx_type_name(type_code), ")"),
        header_size);
  }
  if (found_bytes > expected_bytes) {
    throw file_error(
        name, "data",
        concat(found_bytes - expected_bytes,
               found_bytes - expected_bytes == 1 ? " trailing byte" : " trailing bytes",
               " after the ", expected_bytes, " ", noun, " bytes of dimensions ",
               idx_format_dims(header.dims)),
        header_size + expected_bytes);
  }
  return header;
}

// Decodes one big-endian element of an IDX type to float.
inline float decode_idx_value(const std::uint8_t* bytes, std::uint8_t type_code) {
  auto big_endian = [bytes](std::size_t size) {
    std::uint64_t value = 0;
    for (std::size_t i = 0; i < size; ++i) value = value << 8 | bytes[i];
    return value;
  };
  switch (type_code) {
    case idx_uint8:
      return static_cast<float>(bytes[0]);
    case idx_int8:
      return static_cast<float>(static_cast<std::int8_t>(bytes[0]));
    case idx_int16:
      return static_cast<float>(static_cast<std::int16_t>(big_endian(2)));
    case idx_int32:
      return static_cast<float>(static_cast<std::int32_t>(big_endian(4)));
    case idx_float32:
      return std::bit_cast<float>(static_cast<std::uint32_t>(big_endian(4)));
    default:  // idx_float64, the only other code that the header check accepts
      return static_cast<float>(std::bit_cast<double>(big_endian(8)));
  }
}

// Reads a uint8 IDX file, as data::read_idx_u8 does, with `noun` naming
// the values in messages.
inline std::vector<std::uint8_t> idx_read_u8(const std::filesystem::path& path,
                                             std::size_t expected_ndims,
                                             std::vector<std::size_t>& dims,
                                             std::string_view noun) {
  std::vector<std::uint8_t> bytes = data::read_file_bytes(path);
  idx_header header = parse_idx_header(bytes, path.string(), expected_ndims, idx_uint8, noun);
  bytes.erase(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(header.data_offset));
  dims = std::move(header.dims);
  return bytes;
}

// Returns `folder/name.gz` if it exists, else `folder/name` if that exists.
inline std::filesystem::path find_dataset_file(const std::filesystem::path& folder,
                                               const std::string& name) {
  std::filesystem::path compressed = folder / (name + ".gz");
  if (std::filesystem::exists(compressed)) return compressed;
  std::filesystem::path plain = folder / name;
  if (std::filesystem::exists(plain)) return plain;
  throw file_error(compressed.string(), "",
                   "neither this file nor the name without .gz exists; install Debian's "
                   "dataset-fashion-mnist package or pass the folder that contains the "
                   "Fashion-MNIST files");
}

}  // namespace advgan::detail

namespace advgan::data {

/// An IDX array of any element type, with its values converted to float.
/// int32 values above 2^24 and float64 values lose precision in the
/// conversion, and float64 values beyond float's range become infinite.
struct idx_array {
  std::uint8_t type_code;
  std::vector<std::size_t> dims;
  std::vector<float> values;
};

/// Images with one label each, as 8-bit pixels in row-major order
/// (count x height x width) and 8-bit labels.
struct labelled_images {
  std::size_t count, height, width;
  std::vector<std::uint8_t> pixels;
  std::vector<std::uint8_t> labels;
};

/// The two parts of a dataset such as Fashion-MNIST.
enum class split { train, test };

/// Reads an IDX file of any element type, plain or gzip-compressed, with its
/// values converted to float. With `expected_ndims`, a file with another
/// number of dimensions is rejected.
///
/// Throws file_error naming the file, the field and the values on any
/// deviation from the format. The checked faults are an incomplete header, a
/// magic number that does not start with 00 00, an unknown type code, 0 or
/// more than 8 dimensions, and dimensions whose product overflows size_t.
/// Data shorter than the dimensions require ("truncated: ...") and bytes
/// after the data are errors too.
inline idx_array read_idx(const std::filesystem::path& path,
                          std::optional<std::size_t> expected_ndims = {}) {
  const std::vector<std::uint8_t> bytes = read_file_bytes(path);
  advgan::detail::idx_header header =
      advgan::detail::parse_idx_header(bytes, path.string(), expected_ndims, std::nullopt, "data");
  const std::size_t element_size = advgan::detail::idx_element_size(header.type_code);
  std::vector<float> values(header.element_count);
  const std::uint8_t* data = bytes.data() + header.data_offset;
  for (std::size_t i = 0; i < values.size(); ++i) {
    values[i] = advgan::detail::decode_idx_value(data + i * element_size, header.type_code);
  }
  return {header.type_code, std::move(header.dims), std::move(values)};
}

/// Reads an IDX file of type uint8 (code 0x08) with `expected_ndims`
/// dimensions, stores its dimensions in `dims` and returns its data. Throws
/// file_error as read_idx does, and also for another type code or number of
/// dimensions ("expected magic 2051, got 2049 ...").
inline std::vector<std::uint8_t> read_idx_u8(const std::filesystem::path& path,
                                             std::size_t expected_ndims,
                                             std::vector<std::size_t>& dims) {
  return advgan::detail::idx_read_u8(path, expected_ndims, dims, "data");
}

/// Loads an images file (uint8, count x height x width) and its labels file
/// (uint8, count), each plain or gzip-compressed. Throws file_error as
/// read_idx_u8 does, and when the two counts differ ("2 images but 3 labels").
inline labelled_images load_idx_images(const std::filesystem::path& images,
                                       const std::filesystem::path& labels) {
  std::vector<std::size_t> image_dims;
  std::vector<std::size_t> label_dims;
  labelled_images result{};
  result.pixels = advgan::detail::idx_read_u8(images, 3, image_dims, "pixel");
  result.labels = advgan::detail::idx_read_u8(labels, 1, label_dims, "label");
  if (image_dims[0] != label_dims[0]) {
    throw file_error(labels.string(), "count",
                     advgan::detail::concat(image_dims[0], " images but ", label_dims[0],
                                            " labels (images in ", images.string(), ")"),
                     4);
  }
  result.count = image_dims[0];
  result.height = image_dims[1];
  result.width = image_dims[2];
  return result;
}

/// Loads Fashion-MNIST from `dir`, where Debian's dataset-fashion-mnist
/// package installs it: 60000 training or 10000 test images of 28 x 28
/// pixels with labels 0 to 9. Reads `<dir>/train-images-idx3-ubyte.gz` and
/// `train-labels-idx1-ubyte.gz`, or the `t10k-` files for the test split,
/// and the same names without `.gz` where the compressed files are missing.
inline labelled_images fashion_mnist(
    split part, const std::filesystem::path& dir = "/usr/share/datasets/fashion-mnist") {
  const std::string prefix = part == split::train ? "train" : "t10k";
  const std::filesystem::path images =
      advgan::detail::find_dataset_file(dir, prefix + "-images-idx3-ubyte");
  const std::filesystem::path labels =
      advgan::detail::find_dataset_file(dir, prefix + "-labels-idx1-ubyte");
  return load_idx_images(images, labels);
}

/// Writes `data` as a plain (uncompressed) uint8 IDX file with dimensions
/// `dims`, atomically through a temporary file and a rename. Throws
/// argument_error unless there are 1 to 8 dimensions, each below 2^32, whose
/// product is data.size(), and file_error when writing fails.
inline void write_idx_u8(const std::filesystem::path& path, const std::vector<std::size_t>& dims,
                         std::span<const std::uint8_t> data) {
  using advgan::detail::concat;
  if (dims.empty() || dims.size() > advgan::detail::idx_max_ndims) {
    throw argument_error(concat("write_idx_u8: ", dims.size(), " dimensions for ", path.string(),
                                "; IDX allows 1 to ", advgan::detail::idx_max_ndims));
  }
  std::size_t count = 1;
  bool overflow = false;
  for (std::size_t dim : dims) {
    if (dim > std::numeric_limits<std::uint32_t>::max()) {
      throw argument_error(concat("write_idx_u8: dimension ", dim, " for ", path.string(),
                                  " does not fit the 32-bit field of IDX"));
    }
    if (dim != 0 && count > std::numeric_limits<std::size_t>::max() / dim) overflow = true;
    count *= dim;
  }
  if (overflow || count != data.size()) {
    throw argument_error(concat("write_idx_u8: dimensions ", advgan::detail::idx_format_dims(dims),
                                " for ", path.string(), " do not match the ", data.size(),
                                " bytes of data"));
  }

  std::vector<std::uint8_t> bytes(4 + 4 * dims.size());
  bytes[2] = advgan::detail::idx_uint8;
  bytes[3] = static_cast<std::uint8_t>(dims.size());
  for (std::size_t axis = 0; axis < dims.size(); ++axis) {
    for (std::size_t i = 0; i < 4; ++i) {
      bytes[4 + 4 * axis + i] = static_cast<std::uint8_t>(dims[axis] >> (8 * (3 - i)));
    }
  }
  bytes.insert(bytes.end(), data.begin(), data.end());
  io::write_file_atomically(path, std::as_bytes(std::span<const std::uint8_t>(bytes)));
}

}  // namespace advgan::data
