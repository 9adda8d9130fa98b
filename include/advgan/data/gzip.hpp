#pragma once
// Reading whole files, with transparent inflation of gzip-compressed ones.

#include <zlib.h>  // z_stream, inflateInit2, inflate, inflateReset, inflateEnd

#include <algorithm>     // std::min
#include <cerrno>        // errno
#include <climits>       // UINT_MAX
#include <cstddef>       // std::size_t
#include <cstdint>       // std::uint8_t, SIZE_MAX
#include <cstdio>        // std::FILE, std::fopen, std::fread, std::ferror, std::fclose
#include <cstring>       // std::strerror
#include <filesystem>    // std::filesystem::path, std::filesystem::file_size
#include <memory>        // std::unique_ptr
#include <span>          // std::span
#include <string>        // std::string
#include <system_error>  // std::error_code
#include <vector>        // std::vector

#include "advgan/core/error.hpp"

namespace advgan {

namespace detail {

struct read_file_closer {
  void operator()(std::FILE* file) const noexcept { std::fclose(file); }
};
using read_file_handle = std::unique_ptr<std::FILE, read_file_closer>;

// Largest output-to-input ratio of deflate: a 258-byte match costs at least
// 2 bits. It caps the first allocation when a gzip trailer claims a huge size.
inline constexpr std::size_t gzip_max_ratio = 1032;

// Reads a little-endian u32, as in a gzip trailer's ISIZE field.
inline std::size_t gzip_read_le32(const std::uint8_t* bytes) {
  return static_cast<std::size_t>(bytes[0]) | static_cast<std::size_t>(bytes[1]) << 8 |
         static_cast<std::size_t>(bytes[2]) << 16 | static_cast<std::size_t>(bytes[3]) << 24;
}

inline bool has_gzip_magic(std::span<const std::uint8_t> bytes, std::size_t offset) {
  return bytes.size() - offset >= 2 && bytes[offset] == 0x1F && bytes[offset + 1] == 0x8B;
}

struct gzip_inflate_stream {
  z_stream stream{};
  bool initialized = false;
  ~gzip_inflate_stream() {
    if (initialized) inflateEnd(&stream);
  }
};

// Inflates gzip data, which may be several gzip members one after another
// (as `cat a.gz b.gz` makes), into one buffer of at most `max_bytes` bytes.
// `name` is the file name that errors report.
inline std::vector<std::uint8_t> inflate_gzip(std::span<const std::uint8_t> compressed,
                                              const std::string& name, std::size_t max_bytes) {
  // The output never grows past one byte beyond the limit, which is enough to
  // detect that the limit was exceeded.
  const std::size_t capacity_limit = max_bytes == SIZE_MAX ? max_bytes : max_bytes + 1;
  // The last member's trailer stores its size modulo 2^32. It only sizes the
  // first allocation, which stays within what the input can expand to.
  std::size_t expected =
      compressed.size() >= 4 ? gzip_read_le32(compressed.data() + compressed.size() - 4) : 0;
  if (compressed.size() <= SIZE_MAX / gzip_max_ratio) {
    expected = std::min(expected, compressed.size() * gzip_max_ratio);
  }
  std::vector<std::uint8_t> output(std::min(std::max<std::size_t>(expected, 4096), capacity_limit));

  gzip_inflate_stream state;
  // 15 + 32: the maximum window, with the gzip or zlib header detected automatically.
  if (inflateInit2(&state.stream, 15 + 32) != Z_OK) {
    throw file_error(name, "gzip", "cannot initialize zlib's inflate: out of memory");
  }
  state.initialized = true;
  z_stream& stream = state.stream;

  std::size_t consumed = 0;  // compressed bytes that zlib has used
  std::size_t produced = 0;
  while (true) {
    if (produced == output.size()) {
      output.resize(produced <= capacity_limit / 2 ? produced * 2 : capacity_limit);
    }
    stream.next_in = const_cast<Bytef*>(compressed.data() + consumed);
    stream.avail_in =
        static_cast<uInt>(std::min<std::size_t>(compressed.size() - consumed, UINT_MAX));
    stream.next_out = output.data() + produced;
    stream.avail_out = static_cast<uInt>(std::min<std::size_t>(output.size() - produced, UINT_MAX));
    const uInt input_given = stream.avail_in;
    const uInt output_given = stream.avail_out;
    const int status = inflate(&stream, Z_NO_FLUSH);
    consumed += input_given - stream.avail_in;
    produced += output_given - stream.avail_out;

    if (produced > max_bytes) {
      throw file_error(
          name, "gzip",
          detail::concat("inflated data exceed the limit of ", max_bytes, " bytes (max_bytes)"),
          consumed);
    }
    if (status == Z_OK) continue;
    if (status == Z_STREAM_END) {
      if (!has_gzip_magic(compressed, consumed)) break;
      inflateReset(&stream);  // the next gzip member follows
      continue;
    }
    if (status == Z_DATA_ERROR || status == Z_NEED_DICT) {
      const char* message = stream.msg != nullptr ? stream.msg : "invalid data";
      throw file_error(name, "gzip", detail::concat("corrupt gzip data: ", message), consumed);
    }
    if (status == Z_MEM_ERROR) {
      throw file_error(name, "gzip", "out of memory while inflating", consumed);
    }
    if (status == Z_BUF_ERROR) {
      // Output space is always left, so no progress means the input ran out
      // before the end of the gzip member.
      throw file_error(
          name, "gzip",
          detail::concat("gzip stream truncated after ", consumed, " compressed bytes"), consumed);
    }
    throw file_error(name, "gzip", detail::concat("inflate failed with zlib status ", status),
                     consumed);
  }

  if (consumed != compressed.size()) {
    throw file_error(name, "gzip",
                     detail::concat(compressed.size() - consumed,
                                    " bytes after the last gzip member are not gzip data"),
                     consumed);
  }
  output.resize(produced);
  output.shrink_to_fit();
  return output;
}

}  // namespace detail

namespace data {

/// Default limit on the bytes read_file_bytes returns: 1 GiB.
inline constexpr std::size_t default_max_bytes = std::size_t{1} << 30;

/// Reads a whole file. A file that starts with the gzip magic bytes 1F 8B is
/// inflated, including files of several concatenated gzip members.
///
/// Throws file_error naming the file when it cannot be opened or read. It
/// also throws when the gzip data are corrupt ("corrupt gzip data: <zlib's
/// message>") or end early ("gzip stream truncated after N compressed
/// bytes"), with the compressed byte offset reached. The limit `max_bytes`
/// on the returned bytes guards against decompression bombs.
inline std::vector<std::uint8_t> read_file_bytes(const std::filesystem::path& path,
                                                 std::size_t max_bytes = default_max_bytes) {
  const std::string name = path.string();
  advgan::detail::read_file_handle file(std::fopen(path.c_str(), "rb"));
  if (!file)
    throw file_error(name, "", advgan::detail::concat("cannot open: ", std::strerror(errno)));

  // Reads in chunks up to EOF rather than trusting the size, so pipes and
  // files that change while being read are handled too.
  constexpr std::size_t chunk = std::size_t{1} << 16;
  std::vector<std::uint8_t> bytes;
  std::error_code size_error;
  const auto size_hint = std::filesystem::file_size(path, size_error);
  if (!size_error) bytes.reserve(std::min<std::uintmax_t>(size_hint, max_bytes) + chunk);
  std::size_t length = 0;
  while (true) {
    bytes.resize(length + chunk);
    const std::size_t got = std::fread(bytes.data() + length, 1, chunk, file.get());
    length += got;
    if (length > max_bytes) {
      throw file_error(
          name, "",
          advgan::detail::concat("file exceeds the limit of ", max_bytes, " bytes (max_bytes)"));
    }
    if (got < chunk) break;
  }
  if (std::ferror(file.get())) {
    throw file_error(name, "", advgan::detail::concat("read failed: ", std::strerror(errno)),
                     length);
  }
  bytes.resize(length);

  if (!advgan::detail::has_gzip_magic(bytes, 0)) return bytes;
  return advgan::detail::inflate_gzip(bytes, name, max_bytes);
}

}  // namespace data

}  // namespace advgan
