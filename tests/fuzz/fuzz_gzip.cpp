// libFuzzer target for gzip inflation.
//
// Each input goes to detail::inflate_gzip, the in-memory inflater behind
// data::read_file_bytes, and to read_file_bytes itself through a memfd.
// When inflation succeeds, the output is compressed again with zlib and
// must inflate back to itself. advgan::error is the expected outcome for a
// bad input; any other exception, a crash, a leak or a sanitizer report is
// a failure. scripts/fuzz builds and runs this target.

#include <sys/mman.h>  // memfd_create
#include <unistd.h>    // ftruncate, pwrite
#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "advgan/core/error.hpp"
#include "advgan/data/gzip.hpp"

namespace {

// The limit on inflated bytes: far below the 1 GiB default, so a small
// input that inflates to a lot reaches the limit check quickly.
constexpr std::size_t max_inflated = std::size_t{1} << 24;

struct input_file {
  int fd = -1;
  std::string path;

  input_file() {
    fd = ::memfd_create("fuzz-gzip", 0);
    if (fd < 0) {
      std::perror("memfd_create");
      std::abort();
    }
    path = "/proc/self/fd/" + std::to_string(fd);
  }

  void replace(const std::uint8_t* data, std::size_t size) const {
    if (::ftruncate(fd, 0) != 0 ||
        (size != 0 && ::pwrite(fd, data, size, 0) != static_cast<ssize_t>(size))) {
      std::perror("writing the memfd");
      std::abort();
    }
  }
};

// Compresses `data` as one gzip member (window bits 31 select the gzip wrapper).
std::vector<std::uint8_t> gzip(const std::vector<std::uint8_t>& data) {
  z_stream stream{};
  if (deflateInit2(&stream, 6, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) != Z_OK) std::abort();
  std::vector<std::uint8_t> out(deflateBound(&stream, static_cast<uLong>(data.size())) + 32);
  stream.next_in = const_cast<Bytef*>(data.data());
  stream.avail_in = static_cast<uInt>(data.size());
  stream.next_out = out.data();
  stream.avail_out = static_cast<uInt>(out.size());
  if (deflate(&stream, Z_FINISH) != Z_STREAM_END) std::abort();
  out.resize(stream.total_out);
  deflateEnd(&stream);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const input_file file;
  try {
    const std::vector<std::uint8_t> inflated =
        advgan::detail::inflate_gzip({data, size}, "fuzz.gz", max_inflated);
    if (inflated.size() > max_inflated) std::abort();
    const std::vector<std::uint8_t> again =
        advgan::detail::inflate_gzip(gzip(inflated), "round-trip.gz", max_inflated);
    if (again != inflated) std::abort();
  } catch (const advgan::error&) {
  }

  file.replace(data, size);
  try {
    const std::vector<std::uint8_t> bytes = advgan::data::read_file_bytes(file.path, max_inflated);
    // A file without the gzip magic comes back unchanged.
    const bool compressed = size >= 2 && data[0] == 0x1F && data[1] == 0x8B;
    if (!compressed &&
        (bytes.size() != size || (size != 0 && std::memcmp(bytes.data(), data, size) != 0)))
      std::abort();
  } catch (const advgan::error&) {
  }
  return 0;
}
