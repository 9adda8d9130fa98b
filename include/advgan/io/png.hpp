#pragma once
// PNG files through libpng: image grids for sample sheets, and a reader.
//
// libpng reports errors by longjmp to a setjmp point. Every setjmp here sits
// in a small function whose locals have trivial destructors, and the error
// callback copies libpng's message into a plain char array before it jumps,
// so a longjmp never skips a C++ destructor. The callers turn a failure into
// an exception after the jump has landed.

#include <png.h>  // libpng

#include <algorithm>    // std::min
#include <cerrno>       // errno
#include <cmath>        // std::floor
#include <csetjmp>      // setjmp
#include <cstddef>      // std::size_t
#include <cstdint>      // std::uint8_t
#include <cstdio>       // std::FILE, std::fopen, std::fread, std::fclose, std::snprintf
#include <cstring>      // std::strerror
#include <filesystem>   // std::filesystem::path
#include <memory>       // std::unique_ptr
#include <new>          // std::bad_alloc
#include <span>         // std::span
#include <string>       // std::string
#include <type_traits>  // std::is_arithmetic_v
#include <vector>       // std::vector

#include "advgan/core/error.hpp"
#include "advgan/io/atomic_file.hpp"

namespace advgan::io {

/// Layout and value range of write_png_grid.
struct png_grid_options {
  /// Value written as 0 (black). Lower values are clipped to it.
  double low = -1.0;
  /// Value written as 255 (white). Higher values are clipped to it.
  double high = 1.0;
  /// Images per row of the grid; 0 picks ceil(sqrt(count)). Values above
  /// the number of images are reduced to it.
  std::size_t columns = 0;
  /// Pixels between neighbouring cells. The grid has no outer border.
  std::size_t padding = 2;
  /// Byte written into the padding and into cells left without an image.
  std::uint8_t pad_value = 0;
};

/// A decoded PNG with 8 bits per sample, rows top to bottom, samples of a
/// pixel interleaved: 1 channel for gray, 2 for gray and alpha, 3 for RGB,
/// 4 for RGBA.
struct png_image {
  std::size_t width, height, channels;
  std::vector<std::uint8_t> pixels;
};

}  // namespace advgan::io

namespace advgan::detail {

// Largest image read_png decodes: 1 GiB of samples, so that a small file
// with a huge declared size cannot force a huge allocation.
inline constexpr std::size_t png_max_decoded_bytes = std::size_t{1} << 30;
// libpng's default limit on width and height (PNG_USER_WIDTH_MAX in pnglibconf.h).
inline constexpr std::size_t png_max_side = 1000000;

// The error state that libpng's callbacks fill. It is a plain array with a
// trivial destructor, so a longjmp may leave it behind safely.
struct png_error_state {
  char message[256];
};

inline void png_error_callback(png_structp png, png_const_charp message) {
  auto* state = static_cast<png_error_state*>(png_get_error_ptr(png));
  std::snprintf(state->message, sizeof state->message, "%s", message);
  png_longjmp(png, 1);
}

// Library code never prints, so libpng's warnings about recoverable problems are dropped.
inline void png_warning_callback(png_structp, png_const_charp) {}

// Appends encoded bytes to the std::vector<std::uint8_t> set as the io pointer.
inline void png_write_callback(png_structp png, png_bytep data, png_size_t length) {
  auto* out = static_cast<std::vector<std::uint8_t>*>(png_get_io_ptr(png));
  bool appended = false;
  try {
    out->insert(out->end(), data, data + length);
    appended = true;
  } catch (const std::bad_alloc&) {
  }
  // png_error longjmps, so it is called only after the try block has ended.
  if (!appended) png_error(png, "out of memory while encoding");
}

inline void png_flush_callback(png_structp) {}

// Size and layout of a PNG being read, after the transforms to 8-bit samples.
struct png_read_header {
  png_uint_32 width;
  png_uint_32 height;
  png_byte channels;
  png_size_t row_bytes;
};

// Reads the chunks before the image data and sets the transforms: palette
// and low bit depths expanded to 8 bits, transparency to an alpha channel,
// 16 bits scaled to 8, and interlacing undone. Returns false after a libpng
// error, whose message is in the error state.
inline bool png_read_start(png_structp png, png_infop info, png_read_header* header) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_info(png, info);
  png_set_expand(png);
  png_set_scale_16(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  header->width = png_get_image_width(png, info);
  header->height = png_get_image_height(png, info);
  header->channels = png_get_channels(png, info);
  header->row_bytes = png_get_rowbytes(png, info);
  return true;
}

// Reads the image data into `rows` and the chunks after them. Returns false
// after a libpng error.
inline bool png_read_rows(png_structp png, png_bytepp rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_image(png, rows);
  png_read_end(png, nullptr);
  return true;
}

// Encodes 8-bit rows as a PNG through the write callback. Returns false
// after a libpng error.
inline bool png_encode(png_structp png, png_infop info, png_uint_32 width, png_uint_32 height,
                       int color_type, png_bytepp rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_IHDR(png, info, width, height, 8, color_type, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  png_write_image(png, rows);
  png_write_end(png, info);
  return true;
}

struct png_file_closer {
  void operator()(std::FILE* file) const noexcept { std::fclose(file); }
};

struct png_read_guard {
  png_structp png = nullptr;
  png_infop info = nullptr;
  ~png_read_guard() {
    if (png != nullptr) png_destroy_read_struct(&png, info != nullptr ? &info : nullptr, nullptr);
  }
};

struct png_write_guard {
  png_structp png = nullptr;
  png_infop info = nullptr;
  ~png_write_guard() {
    if (png != nullptr) png_destroy_write_struct(&png, info != nullptr ? &info : nullptr);
  }
};

// Maps `value` from [low, high] to 0..255, rounding to nearest. Values
// outside the range are clipped and NaN becomes 0.
inline std::uint8_t png_to_byte(double value, double low, double high) {
  const double unit = (value - low) / (high - low);
  if (!(unit > 0.0)) return 0;  // also NaN
  if (unit >= 1.0) return 255;
  return static_cast<std::uint8_t>(std::floor(unit * 255.0 + 0.5));
}

// Returns the smallest c with c * c >= count.
inline std::size_t png_ceil_sqrt(std::size_t count) {
  std::size_t root = 0;
  while (root * root < count) ++root;
  return root;
}

// Encodes an 8-bit image with 1 (gray) or 3 (RGB) interleaved channels.
inline std::vector<std::uint8_t> png_encode_image(const std::string& name,
                                                  std::vector<std::uint8_t>& pixels,
                                                  std::size_t width, std::size_t height,
                                                  std::size_t channels) {
  png_error_state state{};
  png_write_guard guard;
  guard.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &state, png_error_callback,
                                      png_warning_callback);
  if (guard.png != nullptr) guard.info = png_create_info_struct(guard.png);
  if (guard.info == nullptr) throw file_error(name, "", "cannot create libpng's write structures");

  std::vector<std::uint8_t> encoded;
  png_set_write_fn(guard.png, &encoded, png_write_callback, png_flush_callback);
  std::vector<png_bytep> rows(height);
  for (std::size_t row = 0; row < height; ++row) rows[row] = pixels.data() + row * width * channels;
  const int color_type = channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB;
  if (!png_encode(guard.png, guard.info, static_cast<png_uint_32>(width),
                  static_cast<png_uint_32>(height), color_type, rows.data())) {
    throw file_error(name, "", concat("PNG encoding failed: ", state.message));
  }
  return encoded;
}

}  // namespace advgan::detail

namespace advgan::io {

/// Writes `count` images of channels x height x width values (NCHW, as one
/// contiguous span) as one grid PNG. Values map linearly from [low, high] to
/// 0..255 with rounding. Values outside the range are clipped, never wrapped,
/// and NaN is written as 0. The grid has `columns` images per row
/// (ceil(sqrt(count)) by default) and ceil(count / columns) rows, with
/// `padding` pixels of `pad_value` between cells. One channel gives a
/// grayscale PNG and three an RGB one. The file is written to a temporary
/// file and renamed, so a failure never leaves a partial PNG.
///
/// Throws argument_error when count, height or width is 0, channels is not 1
/// or 3, the span does not hold count x channels x height x width values,
/// low < high does not hold, or the grid exceeds 1000000 pixels on a side;
/// and file_error when the file cannot be written.
template <class Value>
void write_png_grid(const std::filesystem::path& path, std::span<const Value> images,
                    std::size_t count, std::size_t channels, std::size_t height, std::size_t width,
                    png_grid_options options = {}) {
  static_assert(std::is_arithmetic_v<Value>,
                "write_png_grid takes integer or floating-point values");
  using advgan::detail::concat;
  const std::size_t side = advgan::detail::png_max_side;
  if (count == 0 || height == 0 || width == 0 || height > side || width > side || count > side) {
    throw argument_error(concat("write_png_grid: ", count, " images of ", height, " x ", width,
                                " pixels for ", path.string(), "; each must be between 1 and ",
                                side));
  }
  if (channels != 1 && channels != 3) {
    throw argument_error(concat("write_png_grid: ", channels, " channels for ", path.string(),
                                "; PNG grids take 1 (gray) or 3 (RGB)"));
  }
  // Each factor is at most 10^6 and channels at most 3, so these products fit in 64 bits.
  const std::size_t image_values = channels * height * width;
  if (images.size() / image_values != count || images.size() % image_values != 0) {
    throw argument_error(concat("write_png_grid: ", images.size(), " values for ", path.string(),
                                ", expected ", count, " x ", channels, " x ", height, " x ",
                                width));
  }
  if (!(options.low < options.high)) {
    throw argument_error(concat("write_png_grid: low ", options.low, " must be below high ",
                                options.high, " for ", path.string()));
  }

  const std::size_t columns = std::min(
      options.columns == 0 ? advgan::detail::png_ceil_sqrt(count) : options.columns, count);
  const std::size_t rows = (count + columns - 1) / columns;
  const std::size_t padding = std::min(options.padding, side);
  const std::size_t grid_width = columns * width + (columns - 1) * padding;
  const std::size_t grid_height = rows * height + (rows - 1) * padding;
  if (grid_width > side || grid_height > side) {
    throw argument_error(concat("write_png_grid: a grid of ", grid_width, " x ", grid_height,
                                " pixels for ", path.string(), " exceeds libpng's limit of ", side,
                                " per side"));
  }

  std::vector<std::uint8_t> grid(grid_width * grid_height * channels, options.pad_value);
  for (std::size_t image = 0; image < count; ++image) {
    const std::size_t top = image / columns * (height + padding);
    const std::size_t left = image % columns * (width + padding);
    for (std::size_t channel = 0; channel < channels; ++channel) {
      const Value* plane = images.data() + (image * channels + channel) * height * width;
      for (std::size_t y = 0; y < height; ++y) {
        std::uint8_t* out = grid.data() + ((top + y) * grid_width + left) * channels + channel;
        for (std::size_t x = 0; x < width; ++x) {
          out[x * channels] = advgan::detail::png_to_byte(static_cast<double>(plane[y * width + x]),
                                                          options.low, options.high);
        }
      }
    }
  }
  const std::vector<std::uint8_t> encoded =
      advgan::detail::png_encode_image(path.string(), grid, grid_width, grid_height, channels);
  write_file_atomically(path, std::as_bytes(std::span<const std::uint8_t>(encoded)));
}

/// Reads a PNG file of any color type and bit depth as 8-bit samples: a
/// palette becomes RGB, transparency an alpha channel, and 16-bit samples
/// are scaled to 8 bits. Throws file_error naming the file when it cannot be
/// opened, is not a PNG, is corrupt or truncated, or would decode to more
/// than 1 GiB.
inline png_image read_png(const std::filesystem::path& path) {
  using advgan::detail::concat;
  const std::string name = path.string();
  std::unique_ptr<std::FILE, advgan::detail::png_file_closer> file(std::fopen(path.c_str(), "rb"));
  if (!file) throw file_error(name, "", concat("cannot open: ", std::strerror(errno)));

  png_byte signature[8] = {};
  const std::size_t signature_size = std::fread(signature, 1, sizeof signature, file.get());
  if (signature_size != sizeof signature || png_sig_cmp(signature, 0, sizeof signature) != 0) {
    throw file_error(name, "signature",
                     "not a PNG file: it does not start with 89 50 4E 47 0D 0A 1A 0A", 0);
  }

  advgan::detail::png_error_state state{};
  advgan::detail::png_read_guard guard;
  guard.png =
      png_create_read_struct(PNG_LIBPNG_VER_STRING, &state, advgan::detail::png_error_callback,
                             advgan::detail::png_warning_callback);
  if (guard.png != nullptr) guard.info = png_create_info_struct(guard.png);
  if (guard.info == nullptr) throw file_error(name, "", "cannot create libpng's read structures");
  png_init_io(guard.png, file.get());
  png_set_sig_bytes(guard.png, sizeof signature);

  advgan::detail::png_read_header header{};
  if (!advgan::detail::png_read_start(guard.png, guard.info, &header)) {
    throw file_error(name, "header", concat("corrupt PNG: ", state.message));
  }
  const std::size_t height = header.height;
  const std::size_t row_bytes = header.row_bytes;
  if (row_bytes != 0 && height > advgan::detail::png_max_decoded_bytes / row_bytes) {
    throw file_error(name, "header",
                     concat("image of ", header.width, " x ", height, " pixels with ",
                            int{header.channels}, " channels exceeds the limit of ",
                            advgan::detail::png_max_decoded_bytes, " decoded bytes"));
  }

  png_image image{header.width, height, header.channels,
                  std::vector<std::uint8_t>(height * row_bytes)};
  std::vector<png_bytep> rows(height);
  for (std::size_t row = 0; row < height; ++row) rows[row] = image.pixels.data() + row * row_bytes;
  if (!advgan::detail::png_read_rows(guard.png, rows.data())) {
    throw file_error(name, "image data", concat("corrupt or truncated PNG: ", state.message));
  }
  return image;
}

}  // namespace advgan::io
