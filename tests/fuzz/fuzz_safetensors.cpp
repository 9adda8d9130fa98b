// libFuzzer target for the safetensors reader.
//
// Each input goes to io::safetensors::parse and, through a memfd, to
// io::safetensors::load; both must accept or reject it alike. An accepted
// file is read back in every element type, written with serialize() and
// parsed again, and must keep its tensors and metadata. advgan::error is
// the expected outcome for a bad input; any other exception, a crash, a
// leak or a sanitizer report is a failure. scripts/fuzz builds and runs
// this target.

#include <sys/mman.h>  // memfd_create
#include <unistd.h>    // ftruncate, pwrite

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "advgan/core/error.hpp"
#include "advgan/io/safetensors.hpp"

namespace {

using advgan::io::safetensors;

struct input_file {
  int fd = -1;
  std::string path;

  input_file() {
    fd = ::memfd_create("fuzz-safetensors", 0);
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

void fail(const char* problem) {
  std::fprintf(stderr, "fuzz_safetensors: %s\n", problem);
  std::abort();
}

// Converts a tensor to T; a value that T cannot hold throws argument_error,
// which is an advgan::error and therefore expected.
template <class T>
void convert(const advgan::io::tensor_data& tensor) {
  try {
    const std::vector<T> values = tensor.to<T>();
    if (values.size() != tensor.element_count()) fail("to<T>() returned the wrong count");
  } catch (const advgan::error&) {
  }
}

bool same_contents(const safetensors& a, const safetensors& b) {
  if (a.names() != b.names() || a.metadata() != b.metadata()) return false;
  for (const std::string& name : a.names()) {
    const auto& x = a.at(name);
    const auto& y = b.at(name);
    if (x.type != y.type || x.shape != y.shape || x.bytes != y.bytes) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const input_file file;
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);

  std::optional<safetensors> parsed;
  try {
    parsed = safetensors::parse(bytes, "fuzz.safetensors");
  } catch (const advgan::error&) {
  }

  file.replace(data, size);
  std::optional<safetensors> loaded;
  try {
    loaded = safetensors::load(file.path);
  } catch (const advgan::error&) {
  }
  if (parsed.has_value() != loaded.has_value()) fail("parse() and load() disagree");
  if (!parsed) return 0;
  if (!same_contents(*parsed, *loaded)) fail("parse() and load() read different contents");

  for (const std::string& name : parsed->names()) {
    const auto& tensor = parsed->at(name);
    convert<float>(tensor);
    convert<double>(tensor);
    convert<std::int64_t>(tensor);
    convert<std::uint8_t>(tensor);
    convert<bool>(tensor);
  }

  // serialize() may reject a header that grows past the limit when it is
  // written again; anything it writes must read back the same.
  try {
    const safetensors again = safetensors::parse(parsed->serialize(), "round-trip.safetensors");
    if (!same_contents(*parsed, again)) fail("a serialized file reads back different contents");
  } catch (const advgan::argument_error&) {
  }
  return 0;
}
