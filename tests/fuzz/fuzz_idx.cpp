// libFuzzer target for the IDX reader.
//
// Each input is parsed twice: from memory by the header parser that
// read_idx uses, with every value decoded as read_idx decodes it, and as a
// file through data::read_idx, which also inflates gzip input. The file is
// a memfd, so no input touches the disk. advgan::error is the expected
// outcome for a bad input; any other exception, a crash, a leak or a
// sanitizer report is a failure. scripts/fuzz builds and runs this target.

#include <sys/mman.h>  // memfd_create
#include <unistd.h>    // ftruncate, pwrite

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <span>
#include <string>

#include "advgan/core/error.hpp"
#include "advgan/data/idx.hpp"

namespace {

// A memory-backed file that contains the current input, and its path.
struct input_file {
  int fd = -1;
  std::string path;

  input_file() {
    fd = ::memfd_create("fuzz-idx", 0);
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

void parse_in_memory(std::span<const std::uint8_t> bytes) {
  const advgan::detail::idx_header header =
      advgan::detail::parse_idx_header(bytes, "fuzz.idx", std::nullopt, std::nullopt, "data");
  const std::size_t element_size = advgan::detail::idx_element_size(header.type_code);
  // The parser guarantees that exactly element_count values follow the header.
  if (header.data_offset + header.element_count * element_size != bytes.size()) std::abort();
  float sum = 0;
  for (std::size_t i = 0; i < header.element_count; ++i)
    sum += advgan::detail::decode_idx_value(bytes.data() + header.data_offset + i * element_size,
                                            header.type_code);
  static_cast<void>(sum);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const input_file file;
  try {
    parse_in_memory({data, size});
  } catch (const advgan::error&) {
  }
  // The same bytes with the checks of a uint8 image file (3 dimensions).
  try {
    advgan::detail::parse_idx_header({data, size}, "fuzz.idx", 3, advgan::detail::idx_uint8,
                                     "pixel");
  } catch (const advgan::error&) {
  }

  file.replace(data, size);
  try {
    const advgan::data::idx_array array = advgan::data::read_idx(file.path);
    std::size_t count = 1;
    for (std::size_t dim : array.dims) count *= dim;
    if (count != array.values.size()) std::abort();
  } catch (const advgan::error&) {
  }
  return 0;
}
