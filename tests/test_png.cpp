// Tests for io::write_png_grid and io::read_png. Grids are decoded with
// libpng through read_png, and read_png is checked on PNG files assembled
// byte by byte here, with zlib for the image data.

#include <zlib.h>

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include <unistd.h>

#include "advgan/core/error.hpp"
#include "advgan/io/png.hpp"
#include "temporary_folder.hpp"

namespace {

namespace fs = std::filesystem;
using bytes = std::vector<std::uint8_t>;
using advgan::io::png_grid_options;
using advgan::io::read_png;
using advgan::io::write_png_grid;

using advgan::testing::temporary_folder;

void write_bytes(const fs::path& path, const bytes& data) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  REQUIRE(out.good());
}

void append_be32(bytes& out, std::uint32_t value) {
  for (int shift = 24; shift >= 0; shift -= 8)
    out.push_back(static_cast<std::uint8_t>(value >> shift));
}

void append_chunk(bytes& png, const char* type, const bytes& data) {
  append_be32(png, static_cast<std::uint32_t>(data.size()));
  const std::size_t type_start = png.size();
  png.insert(png.end(), type, type + 4);
  png.insert(png.end(), data.begin(), data.end());
  const uLong crc = crc32(0L, png.data() + type_start, static_cast<uInt>(png.size() - type_start));
  append_be32(png, static_cast<std::uint32_t>(crc));
}

// Assembles a non-interlaced PNG by hand. `rows` are the raw scanlines,
// each prefixed here with filter type 0 (none). `palette` adds a PLTE chunk.
bytes assemble_png(std::uint32_t width, std::uint32_t height, std::uint8_t bit_depth,
                   std::uint8_t color_type, const std::vector<bytes>& rows,
                   const bytes& palette = {}) {
  bytes png = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  bytes header;
  append_be32(header, width);
  append_be32(header, height);
  header.insert(header.end(), {bit_depth, color_type, 0, 0, 0});
  append_chunk(png, "IHDR", header);
  if (!palette.empty()) append_chunk(png, "PLTE", palette);

  bytes raw;
  for (const bytes& row : rows) {
    raw.push_back(0);
    raw.insert(raw.end(), row.begin(), row.end());
  }
  uLongf compressed_size = compressBound(static_cast<uLong>(raw.size()));
  bytes compressed(compressed_size);
  REQUIRE(compress2(compressed.data(), &compressed_size, raw.data(), static_cast<uLong>(raw.size()),
                    9) == Z_OK);
  compressed.resize(compressed_size);
  append_chunk(png, "IDAT", compressed);
  append_chunk(png, "IEND", {});
  return png;
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

// Images of 4 rows x 3 columns whose pixel (image, y, x) is image * 12 + y * 3 + x,
// written with low 0 and high 255 so each value is its own byte.
std::vector<float> numbered_images(std::size_t count) {
  std::vector<float> values(count * 12);
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i % 256);
  return values;
}

std::uint8_t pixel(const advgan::io::png_image& image, std::size_t x, std::size_t y,
                   std::size_t channel = 0) {
  return image.pixels[(y * image.width + x) * image.channels + channel];
}

}  // namespace

TEST_CASE("png grid size for square and non-square counts") {
  temporary_folder folder;
  struct size_case {
    std::size_t count, width, height;
  };
  // Cells are 3 wide and 4 high with 2 pixels between them.
  const std::vector<size_case> cases = {{1, 3, 4},      // 1 x 1
                                        {2, 8, 4},      // 2 x 1
                                        {5, 13, 10},    // 3 columns, 2 rows
                                        {10, 18, 16},   // 4 columns, 3 rows
                                        {64, 38, 46}};  // 8 x 8
  for (const size_case& size : cases) {
    CAPTURE(size.count);
    const std::vector<float> values = numbered_images(size.count);
    write_png_grid<float>(folder / "grid.png", values, size.count, 1, 4, 3);
    const advgan::io::png_image image = read_png(folder / "grid.png");
    CHECK(image.width == size.width);
    CHECK(image.height == size.height);
    CHECK(image.channels == 1);
    CHECK(image.pixels.size() == size.width * size.height);
  }
}

TEST_CASE("png grid places each image in its cell") {
  temporary_folder folder;
  const std::vector<float> values = numbered_images(5);
  write_png_grid<float>(folder / "grid.png", values, 5, 1, 4, 3,
                        png_grid_options{.low = 0, .high = 255, .pad_value = 77});
  const advgan::io::png_image image = read_png(folder / "grid.png");
  REQUIRE(image.width == 13);
  REQUIRE(image.height == 10);

  for (std::size_t y = 0; y < 10; ++y) {
    for (std::size_t x = 0; x < 13; ++x) {
      CAPTURE(x);
      CAPTURE(y);
      const std::size_t row = y / 6, column = x / 5;
      const std::size_t inner_y = y % 6, inner_x = x % 5;
      const std::size_t cell = row * 3 + column;
      const bool in_image = inner_y < 4 && inner_x < 3 && cell < 5;
      const std::uint8_t expected =
          in_image ? static_cast<std::uint8_t>(cell * 12 + inner_y * 3 + inner_x) : 77;
      CHECK(pixel(image, x, y) == expected);
    }
  }
}

TEST_CASE("png grid maps [-1, 1] to 0..255") {
  temporary_folder folder;
  const std::vector<double> values = {-1.0, 1.0, 0.0, -0.5, 0.5, 0.999};
  write_png_grid<double>(folder / "range.png", values, 1, 1, 1, 6);
  const advgan::io::png_image image = read_png(folder / "range.png");
  REQUIRE(image.pixels.size() == 6);
  CHECK(image.pixels[0] == 0);
  CHECK(image.pixels[1] == 255);
  CHECK(image.pixels[2] == 128);  // 127.5 rounds up
  CHECK(image.pixels[3] == 64);   // 63.75
  CHECK(image.pixels[4] == 191);  // 191.25
  CHECK(image.pixels[5] == 255);  // 254.87
}

TEST_CASE_TEMPLATE("png grid clips values outside the range", Scalar, float, double) {
  temporary_folder folder;
  constexpr Scalar infinity = std::numeric_limits<Scalar>::infinity();
  const std::vector<Scalar> values = {
      2.0,      -3.0,      1000.0,
      -1000.0,  1.0001,    -1.0001,
      infinity, -infinity, std::numeric_limits<Scalar>::quiet_NaN()};
  write_png_grid<Scalar>(folder / "clip.png", values, 1, 1, 1, values.size());
  const advgan::io::png_image image = read_png(folder / "clip.png");
  REQUIRE(image.pixels.size() == values.size());
  CHECK(image.pixels[0] == 255);
  CHECK(image.pixels[1] == 0);
  CHECK(image.pixels[2] == 255);
  CHECK(image.pixels[3] == 0);
  CHECK(image.pixels[4] == 255);
  CHECK(image.pixels[5] == 0);
  CHECK(image.pixels[6] == 255);
  CHECK(image.pixels[7] == 0);
  CHECK(image.pixels[8] == 0);  // NaN is written as black
}

TEST_CASE("png grid writes RGB from NCHW planes") {
  temporary_folder folder;
  // Two 2 x 2 RGB images. Channel c of pixel (y, x) of image n is
  // 100 * c + 10 * n + 2 * y + x.
  std::vector<float> values(2 * 3 * 2 * 2);
  for (std::size_t n = 0; n < 2; ++n) {
    for (std::size_t c = 0; c < 3; ++c) {
      for (std::size_t y = 0; y < 2; ++y) {
        for (std::size_t x = 0; x < 2; ++x) {
          values[((n * 3 + c) * 2 + y) * 2 + x] = static_cast<float>(100 * c + 10 * n + 2 * y + x);
        }
      }
    }
  }
  write_png_grid<float>(folder / "rgb.png", values, 2, 3, 2, 2,
                        png_grid_options{.low = 0, .high = 255, .padding = 1, .pad_value = 5});

  const advgan::io::png_image image = read_png(folder / "rgb.png");
  CHECK(image.channels == 3);
  REQUIRE(image.width == 5);  // 2 columns of 2 pixels and 1 pixel between them
  REQUIRE(image.height == 2);
  for (std::size_t n = 0; n < 2; ++n) {
    for (std::size_t c = 0; c < 3; ++c) {
      for (std::size_t y = 0; y < 2; ++y) {
        for (std::size_t x = 0; x < 2; ++x) {
          CAPTURE(n);
          CAPTURE(c);
          CAPTURE(y);
          CAPTURE(x);
          CHECK(pixel(image, n * 3 + x, y, c) == 100 * c + 10 * n + 2 * y + x);
        }
      }
    }
  }

  for (std::size_t c = 0; c < 3; ++c) {
    CHECK(pixel(image, 2, 0, c) == 5);
    CHECK(pixel(image, 2, 1, c) == 5);
  }
}

TEST_CASE("png grid honours the columns option") {
  temporary_folder folder;
  const std::vector<float> values = numbered_images(5);
  write_png_grid<float>(folder / "two.png", values, 5, 1, 4, 3, png_grid_options{.columns = 2});
  const advgan::io::png_image two = read_png(folder / "two.png");
  CHECK(two.width == 8);    // 2 columns
  CHECK(two.height == 16);  // 3 rows
  write_png_grid<float>(folder / "wide.png", values, 5, 1, 4, 3,
                        png_grid_options{.columns = 10, .padding = 0});
  const advgan::io::png_image wide = read_png(folder / "wide.png");
  CHECK(wide.width == 15);  // reduced to 5 columns
  CHECK(wide.height == 4);
}

TEST_CASE("png grid replaces the file atomically") {
  temporary_folder folder;
  const fs::path path = folder / "grid.png";
  write_bytes(path, {1, 2, 3});
  const std::vector<float> values = numbered_images(1);
  write_png_grid<float>(path, values, 1, 1, 4, 3);
  CHECK(read_png(path).width == 3);
  // Only the PNG is left: the temporary file was renamed over it.
  CHECK(std::distance(fs::directory_iterator(folder.path()), fs::directory_iterator()) == 1);
}

TEST_CASE("png grid rejects invalid arguments") {
  temporary_folder folder;
  const fs::path path = folder / "bad.png";
  const std::vector<float> values = numbered_images(2);
  const std::span<const float> span(values);
  CHECK_THROWS_AS(write_png_grid(path, span, 0, 1, 4, 3), advgan::argument_error);
  CHECK_THROWS_AS(write_png_grid(path, span, 2, 1, 0, 3), advgan::argument_error);
  CHECK_THROWS_AS(write_png_grid(path, span.first(12), 1, 2, 2, 3), advgan::argument_error);
  CHECK_THROWS_AS(write_png_grid(path, span, 2, 4, 1, 3), advgan::argument_error);
  CHECK_THROWS_AS(write_png_grid(path, span, 3, 1, 4, 3), advgan::argument_error);
  CHECK_THROWS_AS(write_png_grid(path, span.first(23), 2, 1, 4, 3), advgan::argument_error);
  CHECK_THROWS_AS(write_png_grid(path, span, 2, 1, 4, 3, png_grid_options{.low = 1, .high = 1}),
                  advgan::argument_error);
  CHECK_THROWS_AS(
      write_png_grid(path, span, 2, 1, 4, 3, png_grid_options{.low = std::nan(""), .high = 1}),
      advgan::argument_error);
  CHECK_FALSE(fs::exists(path));
  const auto error =
      expect_file_error([&] { write_png_grid(folder / "absent" / "g.png", span, 2, 1, 4, 3); });
  CHECK(error.path() == (folder / "absent" / "g.png").string());
}

TEST_CASE("read_png decodes hand-assembled files") {
  temporary_folder folder;
  const fs::path path = folder / "input.png";

  SUBCASE("8-bit gray") {
    write_bytes(path, assemble_png(3, 2, 8, 0, {{0, 128, 255}, {1, 2, 3}}));
    const advgan::io::png_image image = read_png(path);
    CHECK(image.width == 3);
    CHECK(image.height == 2);
    CHECK(image.channels == 1);
    CHECK(image.pixels == bytes{0, 128, 255, 1, 2, 3});
  }
  SUBCASE("1-bit gray expands to 0 and 255") {
    write_bytes(path, assemble_png(8, 1, 1, 0, {{0b10110000}}));
    const advgan::io::png_image image = read_png(path);
    CHECK(image.channels == 1);
    CHECK(image.pixels == bytes{255, 0, 255, 255, 0, 0, 0, 0});
  }
  SUBCASE("16-bit gray scales to 8 bits") {
    // 257 * k in 16 bits is k in 8 bits.
    write_bytes(path, assemble_png(3, 1, 16, 0, {{0x00, 0x00, 0xFF, 0xFF, 0x64, 0x64}}));
    const advgan::io::png_image image = read_png(path);
    CHECK(image.pixels == bytes{0, 255, 100});
  }
  SUBCASE("palette expands to RGB") {
    write_bytes(path, assemble_png(2, 1, 8, 3, {{1, 0}}, {10, 20, 30, 200, 100, 50}));
    const advgan::io::png_image image = read_png(path);
    CHECK(image.channels == 3);
    CHECK(image.pixels == bytes{200, 100, 50, 10, 20, 30});
  }
  SUBCASE("RGBA keeps alpha") {
    write_bytes(path, assemble_png(1, 1, 8, 6, {{1, 2, 3, 4}}));
    const advgan::io::png_image image = read_png(path);
    CHECK(image.channels == 4);
    CHECK(image.pixels == bytes{1, 2, 3, 4});
  }
}

TEST_CASE("read_png rejects bad files naming them") {
  temporary_folder folder;
  const bytes valid = assemble_png(3, 2, 8, 0, {{0, 128, 255}, {1, 2, 3}});

  SUBCASE("not a PNG") {
    write_bytes(folder / "text.png", {'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd'});
    const auto error = expect_file_error([&] { read_png(folder / "text.png"); });
    CHECK(error.path() == (folder / "text.png").string());
    CHECK(contains(error.what(), "not a PNG file"));
  }
  SUBCASE("shorter than the signature") {
    write_bytes(folder / "short.png", {0x89, 'P', 'N'});
    const auto error = expect_file_error([&] { read_png(folder / "short.png"); });
    CHECK(contains(error.what(), "not a PNG file"));
  }
  SUBCASE("missing") {
    const auto error = expect_file_error([&] { read_png(folder / "absent.png"); });
    CHECK(error.path() == (folder / "absent.png").string());
    CHECK(contains(error.what(), "cannot open"));
  }
  SUBCASE("truncated in the image data") {
    write_bytes(folder / "cut.png", bytes(valid.begin(), valid.end() - 20));
    const auto error = expect_file_error([&] { read_png(folder / "cut.png"); });
    CHECK(error.path() == (folder / "cut.png").string());
    CHECK(contains(error.what(), "corrupt or truncated PNG"));
  }
  SUBCASE("header checksum damaged") {
    bytes damaged = valid;
    damaged[29] ^= 0xFF;  // the IHDR chunk's CRC follows its 8 + 13 bytes
    write_bytes(folder / "crc.png", damaged);
    const auto error = expect_file_error([&] { read_png(folder / "crc.png"); });
    CHECK(contains(error.what(), "corrupt PNG"));
  }
  SUBCASE("header declares a huge image") {
    bytes huge = assemble_png(1000000, 1000000, 8, 6, {});
    write_bytes(folder / "huge.png", huge);
    const auto error = expect_file_error([&] { read_png(folder / "huge.png"); });
    CHECK(contains(error.what(), "exceeds the limit"));
  }
}

TEST_CASE("png grid round trip of Fashion-MNIST-sized samples") {
  temporary_folder folder;
  // 64 images of 1 x 28 x 28 with values spread over [-1, 1].
  std::vector<float> values(64 * 28 * 28);
  for (std::size_t i = 0; i < values.size(); ++i) {
    values[i] = static_cast<float>(static_cast<double>(i % 511) / 255.0 - 1.0);
  }
  write_png_grid<float>(folder / "samples.png", values, 64, 1, 28, 28);
  const advgan::io::png_image image = read_png(folder / "samples.png");
  REQUIRE(image.width == 8 * 28 + 7 * 2);
  REQUIRE(image.height == 8 * 28 + 7 * 2);
  std::size_t mismatches = 0;
  for (std::size_t n = 0; n < 64; ++n) {
    for (std::size_t y = 0; y < 28; ++y) {
      for (std::size_t x = 0; x < 28; ++x) {
        const double unit = (values[(n * 28 + y) * 28 + x] + 1.0) / 2.0;
        const auto expected = static_cast<std::uint8_t>(std::floor(unit * 255.0 + 0.5));
        if (pixel(image, n % 8 * 30 + x, n / 8 * 30 + y) != expected) ++mismatches;
      }
    }
  }
  CHECK(mismatches == 0);
}
