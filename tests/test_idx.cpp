// Tests for the gzip-aware file reader and the IDX reader and writer, on
// small files written here, on fixtures compressed by GNU gzip, and on the
// Fashion-MNIST files of Debian's dataset-fashion-mnist package.

#include <zlib.h>

#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include <unistd.h>

#include "advgan/core/error.hpp"
#include "advgan/data/gzip.hpp"
#include "advgan/data/idx.hpp"
#include "temporary_folder.hpp"

namespace {

namespace fs = std::filesystem;
using bytes = std::vector<std::uint8_t>;

using advgan::testing::temporary_folder;

void write_bytes(const fs::path& path, const bytes& data) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  REQUIRE(out.good());
}

bytes concatenate(const bytes& first, const bytes& second) {
  bytes joined = first;
  joined.insert(joined.end(), second.begin(), second.end());
  return joined;
}

// Compresses `data` as one gzip member with zlib (window bits 31 select the gzip wrapper).
bytes gzip(const bytes& data) {
  z_stream stream{};
  REQUIRE(deflateInit2(&stream, 9, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  bytes out(deflateBound(&stream, static_cast<uLong>(data.size())) + 32);
  stream.next_in = const_cast<Bytef*>(data.data());
  stream.avail_in = static_cast<uInt>(data.size());
  stream.next_out = out.data();
  stream.avail_out = static_cast<uInt>(out.size());
  const int status = deflate(&stream, Z_FINISH);
  out.resize(stream.total_out);
  deflateEnd(&stream);
  REQUIRE(status == Z_STREAM_END);
  return out;
}

// The two-image file and its labels from the IDX examples: images 2x2.
const bytes base_images = {0x00, 0x00, 0x08, 0x03, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x02,
                           0x00, 0x00, 0x00, 0x02, 0x00, 0x40, 0x80, 0xFF, 0x01, 0x02, 0x03, 0x04};
const bytes base_labels = {0x00, 0x00, 0x08, 0x01, 0x00, 0x00, 0x00, 0x02, 0x07, 0x03};

void check_base_case(const advgan::data::labelled_images& data) {
  CHECK(data.count == 2);
  CHECK(data.height == 2);
  CHECK(data.width == 2);
  CHECK(data.pixels == bytes{0, 64, 128, 255, 1, 2, 3, 4});
  CHECK(data.labels == bytes{7, 3});
}

// Runs `action`, which must throw file_error, and returns the error.
advgan::file_error expect_file_error(const std::function<void()>& action) {
  try {
    action();
  } catch (const advgan::file_error& error) {
    return error;
  }
  FAIL("no file_error was thrown");
  return advgan::file_error("", "", "");
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Counts the labels of each class 0 to 9. Labels of 10 or more are not counted,
// so they make the per-class counts come out short.
std::array<std::size_t, 10> count_per_class(const bytes& labels) {
  std::array<std::size_t, 10> per_class{};
  for (std::uint8_t label : labels) {
    if (label < per_class.size()) ++per_class[label];
  }
  return per_class;
}

// Appends the low `size` bytes of `value` to `out`, most significant first.
void append_big_endian(std::uint64_t value, int size, bytes& out) {
  for (int i = size - 1; i >= 0; --i) out.push_back(static_cast<std::uint8_t>(value >> (8 * i)));
}

}  // namespace

TEST_CASE("idx base case loads plain files") {
  temporary_folder folder;
  write_bytes(folder / "images", base_images);
  write_bytes(folder / "labels", base_labels);
  check_base_case(advgan::data::load_idx_images(folder / "images", folder / "labels"));

  std::vector<std::size_t> dims;
  CHECK(advgan::data::read_idx_u8(folder / "images", 3, dims) ==
        bytes{0, 64, 128, 255, 1, 2, 3, 4});
  CHECK(dims == std::vector<std::size_t>{2, 2, 2});
}

TEST_CASE("idx base case loads gzip files") {
  temporary_folder folder;
  SUBCASE("compressed by zlib") {
    write_bytes(folder / "images.gz", gzip(base_images));
    write_bytes(folder / "labels.gz", gzip(base_labels));
    check_base_case(advgan::data::load_idx_images(folder / "images.gz", folder / "labels.gz"));
  }
  SUBCASE("compressed by zlib as two gzip members") {
    const bytes first(base_images.begin(), base_images.begin() + 5);
    const bytes second(base_images.begin() + 5, base_images.end());
    write_bytes(folder / "images.gz", concatenate(gzip(first), gzip(second)));
    write_bytes(folder / "labels", base_labels);
    check_base_case(advgan::data::load_idx_images(folder / "images.gz", folder / "labels"));
  }
  SUBCASE("compressed by GNU gzip") {
    const fs::path fixtures = fs::path(ADVGAN_FIXTURE_DIR) / "idx";
    check_base_case(advgan::data::load_idx_images(fixtures / "base-images-idx3-ubyte.gz",
                                                  fixtures / "base-labels-idx1-ubyte.gz"));
  }
}

TEST_CASE("read_file_bytes returns plain and inflated bytes") {
  temporary_folder folder;
  bytes data(100000);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::uint8_t>(i * 7 % 251);
  write_bytes(folder / "plain", data);
  write_bytes(folder / "one.gz", gzip(data));
  const bytes head(data.begin(), data.begin() + 1234);
  const bytes tail(data.begin() + 1234, data.end());
  write_bytes(folder / "two.gz", concatenate(gzip(head), gzip(tail)));
  write_bytes(folder / "empty", {});

  CHECK(advgan::data::read_file_bytes(folder / "plain") == data);
  CHECK(advgan::data::read_file_bytes(folder / "one.gz") == data);
  CHECK(advgan::data::read_file_bytes(folder / "two.gz") == data);
  CHECK(advgan::data::read_file_bytes(folder / "empty").empty());
  CHECK(advgan::data::read_file_bytes(folder / "one.gz", data.size()) == data);
}

TEST_CASE("read_file_bytes enforces max_bytes") {
  temporary_folder folder;
  const bytes zeros(1 << 20);  // 1 MiB of zeros compresses to about 1 KiB
  write_bytes(folder / "bomb.gz", gzip(zeros));
  write_bytes(folder / "plain", zeros);
  REQUIRE(fs::file_size(folder / "bomb.gz") < 4096);

  const auto bomb = expect_file_error(
      [&] { advgan::data::read_file_bytes(folder / "bomb.gz", zeros.size() - 1); });
  CHECK(bomb.path() == (folder / "bomb.gz").string());
  CHECK(contains(bomb.what(), "exceed the limit of 1048575 bytes"));

  const auto plain =
      expect_file_error([&] { advgan::data::read_file_bytes(folder / "plain", 1000); });
  CHECK(contains(plain.what(), "exceeds the limit of 1000 bytes"));
}

TEST_CASE("read_file_bytes names a missing file") {
  temporary_folder folder;
  const auto error = expect_file_error([&] { advgan::data::read_file_bytes(folder / "absent"); });
  CHECK(error.path() == (folder / "absent").string());
  CHECK(contains(error.what(), "cannot open: No such file or directory"));
}

TEST_CASE("idx bad inputs name the values") {
  temporary_folder folder;
  const fs::path images = folder / "images";
  const fs::path labels = folder / "labels";
  write_bytes(labels, base_labels);

  const bytes compressed = gzip(base_images);
  bytes corrupt_block = compressed;
  corrupt_block[10] = 0x07;  // first deflate block header: final block of reserved type 3
  bytes corrupt_checksum = compressed;
  corrupt_checksum[compressed.size() - 8] ^= 0xFF;  // first byte of the CRC-32 in the trailer
  const bytes truncated(compressed.begin(), compressed.begin() + 20);
  bytes inner_gzip = {0x1F, 0x8B, 0x08, 0x08};
  inner_gzip.resize(40, 0x00);
  bytes header_only = {0x00, 0x00, 0x08, 0x03, 0x00, 0x00, 0xEA, 0x60,
                       0x00, 0x00, 0x00, 0x1C, 0x00, 0x00, 0x00, 0x1C};
  const bytes short_pixels = concatenate(header_only, {1, 2, 3, 4, 5, 6, 7, 8});
  bytes float_images = base_images;
  float_images[2] = 0x0D;
  bytes unknown_type = base_images;
  unknown_type[2] = 0x07;
  bytes no_dims = {0x00, 0x00, 0x08, 0x00};
  bytes nine_dims = {0x00, 0x00, 0x08, 0x09};
  bytes huge_dims = {0x00, 0x00, 0x08, 0x03, 0xFF, 0xFF, 0xFF, 0xFF,
                     0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
  const bytes three_labels = {0x00, 0x00, 0x08, 0x01, 0x00, 0x00, 0x00, 0x03, 0x07, 0x03, 0x01};

  struct bad_case {
    const char* name;
    bytes images;
    bytes labels;  // empty: use the valid labels file
    std::string message;
    std::size_t offset;
  };
  constexpr std::size_t no_offset = advgan::file_error::npos;
  const std::vector<bad_case> cases = {
      {"corrupt deflate block", corrupt_block, {}, "corrupt gzip data: invalid block type", 11},
      {"corrupt gzip checksum",
       corrupt_checksum,
       {},
       "corrupt gzip data: incorrect data check",
       compressed.size() - 4},
      {"truncated gzip", truncated, {}, "gzip stream truncated after 20 compressed bytes", 20},
      {"gzip trailing garbage",
       concatenate(compressed, {0x00, 0x00}),
       {},
       "2 bytes after the last gzip member are not gzip data",
       compressed.size()},
      {"gzip compressed twice", gzip(inner_gzip), {}, "invalid magic 0x1F8B0808 (529205256)", 0},
      {"labels given as images", base_labels, {}, "expected magic 2051, got 2049", 0},
      {"truncated pixels",
       short_pixels,
       {},
       "truncated: expected 47040000 pixel bytes, found 8",
       16},
      {"empty file", {}, {}, "incomplete header: 0 bytes, need 4", no_offset},
      {"10-byte file",
       bytes(base_images.begin(), base_images.begin() + 10),
       {},
       "incomplete header: 10 bytes, need 16",
       no_offset},
      {"3 labels for 2 images", base_images, three_labels, "2 images but 3 labels", 4},
      {"float32 where uint8 is required",
       float_images,
       {},
       "type code 0x0D (float32) where uint8 (0x08) is required",
       2},
      {"unknown type code", unknown_type, {}, "unknown type code 0x07 (magic 0x00000703)", 2},
      {"0 dimensions", no_dims, {}, "number of dimensions 0 is outside 1 to 8", 3},
      {"9 dimensions", nine_dims, {}, "number of dimensions 9 is outside 1 to 8", 3},
      {"dimensions overflow",
       huge_dims,
       {},
       "the product of dimensions 4294967295 x 4294967295 x 4294967295 overflows size_t",
       4},
      {"trailing byte",
       concatenate(base_images, {0x2A}),
       {},
       "1 trailing byte after the 8 pixel bytes",
       24},
      {"trailing labels", base_images, concatenate(base_labels, {0x01, 0x02}),
       "2 trailing bytes after the 2 label bytes", 10},
  };

  for (const bad_case& bad : cases) {
    CAPTURE(std::string(bad.name));
    write_bytes(images, bad.images);
    write_bytes(labels, bad.labels.empty() ? base_labels : bad.labels);
    const auto error = expect_file_error([&] { advgan::data::load_idx_images(images, labels); });
    // Cases with their own labels file have the fault there.
    CHECK(error.path() == (bad.labels.empty() ? images : labels).string());
    CHECK(contains(error.what(), bad.message));
    CHECK(error.offset() == bad.offset);
  }
}

TEST_CASE("idx count mismatch names both files") {
  temporary_folder folder;
  write_bytes(folder / "images", base_images);
  write_bytes(folder / "labels", {0x00, 0x00, 0x08, 0x01, 0x00, 0x00, 0x00, 0x03, 1, 2, 3});
  const auto error = expect_file_error(
      [&] { advgan::data::load_idx_images(folder / "images", folder / "labels"); });
  CHECK(error.path() == (folder / "labels").string());
  CHECK(contains(error.what(), (folder / "images").string()));
}

TEST_CASE("read_idx decodes every element type") {
  temporary_folder folder;
  const fs::path path = folder / "values";

  struct typed_case {
    std::uint8_t type_code;
    int size;
    std::vector<std::uint64_t> bits;
    std::vector<float> expected;
  };
  const std::vector<typed_case> cases = {
      {0x08, 1, {0, 200, 255}, {0.0f, 200.0f, 255.0f}},
      {0x09, 1, {0x00, 0x7F, 0x80, 0xFF}, {0.0f, 127.0f, -128.0f, -1.0f}},
      {0x0B, 2, {0x0102, 0x8000, 0xFFFE}, {258.0f, -32768.0f, -2.0f}},
      {0x0C, 4, {0x00010000, 0x80000000, 0xFFFFFFF9}, {65536.0f, -2147483648.0f, -7.0f}},
      {0x0D,
       4,
       {std::bit_cast<std::uint32_t>(1.5f), std::bit_cast<std::uint32_t>(-2.25f),
        std::bit_cast<std::uint32_t>(1e-3f)},
       {1.5f, -2.25f, 1e-3f}},
      {0x0E,
       8,
       {std::bit_cast<std::uint64_t>(0.1), std::bit_cast<std::uint64_t>(-1e10),
        std::bit_cast<std::uint64_t>(3.0)},
       {static_cast<float>(0.1), static_cast<float>(-1e10), 3.0f}},
  };
  for (const typed_case& typed : cases) {
    CAPTURE(int{typed.type_code});
    // A 1 x n array, so the dimensions are parsed beyond the first.
    bytes file = {0x00, 0x00, typed.type_code, 0x02, 0x00, 0x00, 0x00, 0x01};
    append_big_endian(typed.bits.size(), 4, file);
    for (std::uint64_t bits : typed.bits) append_big_endian(bits, typed.size, file);
    write_bytes(path, file);

    const advgan::data::idx_array array = advgan::data::read_idx(path);
    CHECK(array.type_code == typed.type_code);
    CHECK(array.dims == std::vector<std::size_t>{1, typed.bits.size()});
    CHECK(array.values == typed.expected);
  }
}

TEST_CASE("read_idx checks the number of dimensions") {
  temporary_folder folder;
  write_bytes(folder / "labels", base_labels);
  CHECK(advgan::data::read_idx(folder / "labels", 1).values == std::vector<float>{7.0f, 3.0f});
  const auto error = expect_file_error([&] { advgan::data::read_idx(folder / "labels", 2); });
  CHECK(contains(error.what(), "expected magic 2050, got 2049 (1 dimension instead of 2)"));
}

TEST_CASE("write_idx_u8 round trip") {
  temporary_folder folder;
  const fs::path path = folder / "images";
  const bytes pixels = {0, 64, 128, 255, 1, 2, 3, 4};
  advgan::data::write_idx_u8(path, {2, 2, 2}, pixels);

  std::ifstream in(path, std::ios::binary);
  const bytes written((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(written == base_images);
  // Only the file itself is left: the temporary file was renamed.
  CHECK(std::distance(fs::directory_iterator(folder.path()), fs::directory_iterator()) == 1);

  advgan::data::write_idx_u8(path, {8}, pixels);  // replaces the file
  std::vector<std::size_t> dims;
  CHECK(advgan::data::read_idx_u8(path, 1, dims) == pixels);
  CHECK(dims == std::vector<std::size_t>{8});
}

TEST_CASE("write_idx_u8 rejects bad dimensions") {
  temporary_folder folder;
  const bytes pixels(8);
  const fs::path path = folder / "out";
  CHECK_THROWS_AS(advgan::data::write_idx_u8(path, {}, pixels), advgan::argument_error);
  CHECK_THROWS_AS(advgan::data::write_idx_u8(path, std::vector<std::size_t>(9, 1), pixels),
                  advgan::argument_error);
  CHECK_THROWS_AS(advgan::data::write_idx_u8(path, {2, 3}, pixels), advgan::argument_error);
  CHECK_THROWS_AS(advgan::data::write_idx_u8(path, {std::size_t{1} << 32, 0}, bytes{}),
                  advgan::argument_error);
  CHECK_FALSE(fs::exists(path));
  const auto error = expect_file_error(
      [&] { advgan::data::write_idx_u8(folder / "absent" / "out", {8}, pixels); });
  CHECK(error.path() == (folder / "absent" / "out").string());
}

// Reference values below were computed from the same files with Python's
// gzip module and numpy, independently of this reader.
TEST_CASE("fashion_mnist train split") {
  const advgan::data::labelled_images train =
      advgan::data::fashion_mnist(advgan::data::split::train);
  CHECK(train.count == 60000);
  CHECK(train.height == 28);
  CHECK(train.width == 28);
  REQUIRE(train.pixels.size() == 60000u * 28 * 28);
  REQUIRE(train.labels.size() == 60000);
  CHECK(train.labels[0] == 9);
  CHECK(train.labels[1] == 0);
  CHECK(train.labels[3] == 3);

  const std::array<std::size_t, 10> per_class = count_per_class(train.labels);
  for (std::size_t count : per_class) CHECK(count == 6000);
  CHECK(std::accumulate(train.pixels.begin(), train.pixels.begin() + 784, std::uint64_t{0}) ==
        76247);
  CHECK(std::accumulate(train.pixels.begin(), train.pixels.end(), std::uint64_t{0}) == 3431114169u);
}

TEST_CASE("fashion_mnist test split") {
  const advgan::data::labelled_images test = advgan::data::fashion_mnist(advgan::data::split::test);
  CHECK(test.count == 10000);
  CHECK(test.height == 28);
  CHECK(test.width == 28);
  REQUIRE(test.labels.size() == 10000);
  CHECK(test.labels[0] == 9);
  const std::array<std::size_t, 10> per_class = count_per_class(test.labels);
  for (std::size_t count : per_class) CHECK(count == 1000);
  CHECK(std::accumulate(test.pixels.begin(), test.pixels.begin() + 784, std::uint64_t{0}) == 33456);
  CHECK(std::accumulate(test.pixels.begin(), test.pixels.end(), std::uint64_t{0}) == 573469082u);

  // The labels through the generic reader: uint8, one dimension.
  const advgan::data::idx_array labels =
      advgan::data::read_idx("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz");
  CHECK(labels.type_code == 0x08);
  CHECK(labels.dims == std::vector<std::size_t>{10000});
  CHECK(labels.values[0] == 9.0f);
}

TEST_CASE("fashion_mnist names a missing folder") {
  temporary_folder folder;
  const auto error = expect_file_error(
      [&] { advgan::data::fashion_mnist(advgan::data::split::test, folder / "absent"); });
  CHECK(error.path() == (folder / "absent" / "t10k-images-idx3-ubyte.gz").string());
  CHECK(contains(error.what(), "dataset-fashion-mnist"));
}
