// Tests for the safetensors reader and writer and for atomic file writes.
// They cover round trips of every dtype, metadata, hostile headers, truncated
// files, shape checks and a failed write under RLIMIT_FSIZE. A cross-check
// runs an independent Python reader that uses only json and numpy.

#include <doctest/doctest.h>

#include <sys/resource.h>  // setrlimit, RLIMIT_FSIZE
#include <sys/stat.h>      // chmod, stat
#include <sys/wait.h>      // waitpid, WEXITSTATUS
#include <unistd.h>        // fork, _exit, getpid

#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <map>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "advgan/core/error.hpp"
#include "advgan/core/philox.hpp"
#include "advgan/io/atomic_file.hpp"
#include "advgan/io/safetensors.hpp"
#include "temporary_folder.hpp"

namespace {

namespace fs = std::filesystem;
using advgan::io::dtype;
using advgan::io::safetensors;
using advgan::io::tensor_data;
using byte_vector = std::vector<std::byte>;

constexpr dtype all_dtypes[] = {dtype::f16, dtype::bf16, dtype::f32,    dtype::f64, dtype::i8,
                                dtype::i16, dtype::i32,  dtype::i64,    dtype::u8,  dtype::u16,
                                dtype::u32, dtype::u64,  dtype::boolean};

using advgan::testing::temporary_folder;

byte_vector bytes_of(std::initializer_list<int> values) {
  byte_vector result;
  for (int value : values) result.push_back(static_cast<std::byte>(value));
  return result;
}

byte_vector bytes_of(const std::string& text) {
  byte_vector result;
  for (char c : text) result.push_back(static_cast<std::byte>(c));
  return result;
}

byte_vector concatenate(byte_vector first, const byte_vector& second) {
  first.insert(first.end(), second.begin(), second.end());
  return first;
}

// The 8-byte little-endian header length field.
byte_vector length_field(std::uint64_t length) {
  byte_vector field(8);
  for (int i = 0; i < 8; ++i) field[i] = static_cast<std::byte>(length >> (8 * i));
  return field;
}

// A file made of a header (given as text) and `data_size` data bytes.
byte_vector file_with_header(const std::string& header, std::size_t data_size = 0) {
  byte_vector data(data_size);
  for (std::size_t i = 0; i < data_size; ++i) data[i] = static_cast<std::byte>(i * 7 + 1);
  return concatenate(concatenate(length_field(header.size()), bytes_of(header)), data);
}

// Decodes the header length field of a file's bytes.
std::size_t header_length_of(const byte_vector& bytes) {
  std::size_t length = 0;
  for (int i = 7; i >= 0; --i) length = (length << 8) | std::to_integer<std::size_t>(bytes[i]);
  return length;
}

void write_bytes(const fs::path& path, const byte_vector& data) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  REQUIRE(out.good());
}

byte_vector read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return bytes_of(text);
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Returns the message of the file_error that parsing `bytes` throws, or a
// description of what happened instead.
std::string parse_error(const byte_vector& bytes) {
  try {
    safetensors::parse(bytes, "hostile.safetensors");
  } catch (const advgan::file_error& failure) {
    return failure.what();
  } catch (const std::exception& failure) {
    return std::string("wrong exception type: ") + failure.what();
  }
  return "no exception";
}

// The same through load(), which reads the header length from a stream.
std::string load_error(const fs::path& path) {
  try {
    safetensors::load(path);
  } catch (const advgan::file_error& failure) {
    return failure.what();
  } catch (const std::exception& failure) {
    return std::string("wrong exception type: ") + failure.what();
  }
  return "no exception";
}

// Returns bytes 0, 37, 74, ... shifted by `seed`. Byte round trips need no more.
byte_vector pattern_bytes(std::size_t size, int seed) {
  byte_vector bytes(size);
  for (std::size_t i = 0; i < size; ++i) bytes[i] = static_cast<std::byte>(i * 37 + seed);
  return bytes;
}

// A file with two tensors and metadata, for the tests that need any valid file.
safetensors sample_file(std::size_t weight_count = 6) {
  safetensors file;
  std::vector<float> weight(weight_count);
  for (std::size_t i = 0; i < weight_count; ++i) weight[i] = 0.25f * static_cast<float>(i) - 1.0f;
  file.add<float>("layer.weight", {weight_count / 2, 2}, weight);
  const std::int64_t counter[] = {-7};
  file.add<std::int64_t>("step", {}, counter);
  file.set_metadata("format", "pt");
  return file;
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  if (a.size() != b.size()) return false;
  return a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// Adds `values` as T, writes and parses the file, and checks the dtype and
// that to<T>() gives back the same bits.
template <class T>
void check_typed_round_trip(const std::vector<T>& values, std::vector<std::size_t> shape) {
  safetensors file;
  file.add<T>("values", shape, values);
  const safetensors read = safetensors::parse(file.serialize(), "typed.safetensors");
  const tensor_data& tensor = read.at("values");
  CHECK(tensor.type == advgan::io::dtype_of<T>());
  CHECK(tensor.shape == shape);
  CHECK(tensor.bytes.size() == values.size() * sizeof(T));
  CHECK(same_bits(tensor.to<T>(), values));
}

}  // namespace

TEST_CASE("dtype names and sizes") {
  using advgan::io::dtype_name;
  using advgan::io::dtype_size;
  CHECK(dtype_name(dtype::f16) == "F16");
  CHECK(dtype_name(dtype::bf16) == "BF16");
  CHECK(dtype_name(dtype::f32) == "F32");
  CHECK(dtype_name(dtype::f64) == "F64");
  CHECK(dtype_name(dtype::i64) == "I64");
  CHECK(dtype_name(dtype::u8) == "U8");
  CHECK(dtype_name(dtype::boolean) == "BOOL");
  CHECK(dtype_size(dtype::f16) == 2);
  CHECK(dtype_size(dtype::bf16) == 2);
  CHECK(dtype_size(dtype::f32) == 4);
  CHECK(dtype_size(dtype::f64) == 8);
  CHECK(dtype_size(dtype::i8) == 1);
  CHECK(dtype_size(dtype::i16) == 2);
  CHECK(dtype_size(dtype::i32) == 4);
  CHECK(dtype_size(dtype::u16) == 2);
  CHECK(dtype_size(dtype::u32) == 4);
  CHECK(dtype_size(dtype::u64) == 8);
  CHECK(dtype_size(dtype::boolean) == 1);
  for (dtype type : all_dtypes) CHECK(advgan::io::dtype_from_name(dtype_name(type)) == type);
  CHECK_FALSE(advgan::io::dtype_from_name("f32").has_value());

  static_assert(advgan::io::dtype_of<float>() == dtype::f32);
  static_assert(advgan::io::dtype_of<double>() == dtype::f64);
  static_assert(advgan::io::dtype_of<std::int64_t>() == dtype::i64);
  static_assert(advgan::io::dtype_of<long long>() == dtype::i64);
  static_assert(advgan::io::dtype_of<std::uint8_t>() == dtype::u8);
  static_assert(advgan::io::dtype_of<std::int8_t>() == dtype::i8);
  static_assert(advgan::io::dtype_of<std::uint16_t>() == dtype::u16);
  static_assert(advgan::io::dtype_of<std::int32_t>() == dtype::i32);
  static_assert(advgan::io::dtype_of<std::uint64_t>() == dtype::u64);
  static_assert(advgan::io::dtype_of<bool>() == dtype::boolean);
}

TEST_CASE("safetensors round trip of every dtype") {
  const std::vector<std::vector<std::size_t>> shapes = {{}, {0}, {7}, {3, 0, 2}, {1, 3, 5}};
  safetensors file;
  int seed = 0;
  for (dtype type : all_dtypes) {
    for (std::size_t s = 0; s < shapes.size(); ++s) {
      tensor_data tensor{type, shapes[s], {}};
      tensor.bytes = pattern_bytes(tensor.element_count() * advgan::io::dtype_size(type), seed++);
      file.add(std::string(advgan::io::dtype_name(type)) + "." + std::to_string(s), tensor);
    }
  }
  const byte_vector bytes = file.serialize();
  // The header is padded so the data section starts 8-byte aligned.
  CHECK(std::to_integer<int>(bytes[0]) % 8 == 0);

  temporary_folder folder;
  file.save(folder / "all.safetensors");
  CHECK(read_bytes(folder / "all.safetensors") == bytes);
  for (const safetensors& read : {safetensors::parse(bytes, "all.safetensors"),
                                  safetensors::load(folder / "all.safetensors")}) {
    CHECK(read.names() == file.names());
    CHECK(read.names().size() == std::size(all_dtypes) * shapes.size());
    for (const std::string& name : file.names()) {
      INFO("tensor ", name);
      const tensor_data& expected = file.at(name);
      const tensor_data& actual = read.at(name);
      CHECK(actual.type == expected.type);
      CHECK(actual.shape == expected.shape);
      CHECK(actual.bytes == expected.bytes);
    }
  }
  CHECK(file.at("F32.0").element_count() == 1);  // shape [] is a scalar
  CHECK(file.at("F32.1").element_count() == 0);
  CHECK(file.at("F32.3").element_count() == 0);
  CHECK(file.at("U8.4").element_count() == 15);
}

TEST_CASE("safetensors typed round trip keeps every value") {
  const float inf = std::numeric_limits<float>::infinity();
  check_typed_round_trip<float>({1.0f, -0.0f, 1e-45f, -3.4e38f, inf, -inf, 0.1f}, {7});
  check_typed_round_trip<float>({std::numeric_limits<float>::quiet_NaN()}, {});
  check_typed_round_trip<double>({0.1, -2.5e-310, 1e308, -0.0, 3.0, 4.0}, {2, 3});
  check_typed_round_trip<std::int8_t>({-128, 127, 0, -1, 5}, {5});
  check_typed_round_trip<std::int16_t>({-32768, 32767, 300}, {3, 1});
  check_typed_round_trip<std::int32_t>({std::numeric_limits<std::int32_t>::min(), 65536, 7}, {3});
  check_typed_round_trip<std::int64_t>(
      {std::numeric_limits<std::int64_t>::min(), std::numeric_limits<std::int64_t>::max(), -1},
      {1, 1, 3});
  check_typed_round_trip<std::uint8_t>({0, 255, 128}, {3});
  check_typed_round_trip<std::uint16_t>({65535, 1}, {2});
  check_typed_round_trip<std::uint32_t>({4294967295u, 2}, {2});
  check_typed_round_trip<std::uint64_t>({std::numeric_limits<std::uint64_t>::max(), 3}, {2});
  check_typed_round_trip<std::int64_t>({}, {0, 4});

  safetensors file;
  const bool flags[] = {true, false, true};
  file.add<bool>("flags", {3}, flags);
  const auto read = safetensors::parse(file.serialize(), "flags.safetensors");
  CHECK(read.at("flags").type == dtype::boolean);
  CHECK(read.at("flags").bytes == bytes_of({1, 0, 1}));
  CHECK(read.at("flags").to<bool>() == std::vector<bool>{true, false, true});
}

TEST_CASE("safetensors stores values little-endian") {
  safetensors file;
  const float one[] = {1.0f};
  const std::uint32_t word[] = {0x01020304u};
  const std::int16_t minus_two[] = {-2};
  file.add<float>("a", {1}, one);
  file.add<std::uint32_t>("b", {1}, word);
  file.add<std::int16_t>("c", {}, minus_two);
  CHECK(file.at("a").bytes == bytes_of({0x00, 0x00, 0x80, 0x3F}));
  CHECK(file.at("b").bytes == bytes_of({0x04, 0x03, 0x02, 0x01}));
  CHECK(file.at("c").bytes == bytes_of({0xFE, 0xFF}));
  const byte_vector bytes = file.serialize();
  // Tensors follow the header in sorted name order: a, b, c.
  const byte_vector tail(bytes.end() - 10, bytes.end());
  CHECK(tail == bytes_of({0x00, 0x00, 0x80, 0x3F, 0x04, 0x03, 0x02, 0x01, 0xFE, 0xFF}));
}

TEST_CASE("safetensors decodes F16 and BF16") {
  // 1, -2, 65504 (largest), 2^-24 (smallest subnormal), 2^-14 (smallest
  // normal), 0x3555 (0.333251953125), +inf, -0.
  const tensor_data half{dtype::f16,
                         {8},
                         bytes_of({0x00, 0x3C, 0x00, 0xC0, 0xFF, 0x7B, 0x01, 0x00, 0x00, 0x04, 0x55,
                                   0x35, 0x00, 0x7C, 0x00, 0x80})};
  const std::vector<float> decoded = half.to<float>();
  CHECK(decoded[0] == 1.0f);
  CHECK(decoded[1] == -2.0f);
  CHECK(decoded[2] == 65504.0f);
  CHECK(decoded[3] == std::ldexp(1.0f, -24));
  CHECK(decoded[4] == std::ldexp(1.0f, -14));
  CHECK(decoded[5] == 0.333251953125f);
  CHECK(decoded[6] == std::numeric_limits<float>::infinity());
  CHECK(decoded[7] == 0.0f);
  CHECK(std::signbit(decoded[7]));
  const tensor_data half_nan{dtype::f16, {}, bytes_of({0x00, 0x7E})};
  CHECK(std::isnan(half_nan.to<double>()[0]));

  // 1, -3, 0x3E20 (0.15625), 0x7F80 (+inf).
  const tensor_data brain{
      dtype::bf16, {2, 2}, bytes_of({0x80, 0x3F, 0x40, 0xC0, 0x20, 0x3E, 0x80, 0x7F})};
  CHECK(brain.to<double>() ==
        std::vector<double>{1.0, -3.0, 0.15625, std::numeric_limits<double>::infinity()});
}

TEST_CASE("tensor_data converts between types") {
  const std::int64_t big[] = {-3, 9007199254740993};  // 2^53 + 1 rounds in a double
  safetensors file;
  file.add<std::int64_t>("big", {2}, big);
  CHECK(file.at("big").to<double>() == std::vector<double>{-3.0, 9007199254740992.0});

  const std::uint8_t pixels[] = {0, 128, 255};
  file.add<std::uint8_t>("pixels", {3}, pixels);
  CHECK(file.at("pixels").to<float>() == std::vector<float>{0.0f, 128.0f, 255.0f});
  CHECK(file.at("pixels").to<std::int16_t>() == std::vector<std::int16_t>{0, 128, 255});

  const double whole[] = {-4.0, 1e15};
  file.add<double>("whole", {2}, whole);
  CHECK(file.at("whole").to<std::int64_t>() == std::vector<std::int64_t>{-4, 1000000000000000});

  const tensor_data odd_bool{dtype::boolean, {2}, bytes_of({0, 2})};
  CHECK(odd_bool.to<bool>() == std::vector<bool>{false, true});
  CHECK(odd_bool.to<int>() == std::vector<int>{0, 1});

  struct failing_case {
    std::string label;
    std::function<void()> convert;
    std::vector<std::string> words;
  };
  const float fraction[] = {2.0f, 1.5f};
  const std::int64_t minus_one[] = {-1};
  const double huge[] = {1e300};
  const double not_a_number[] = {std::numeric_limits<double>::quiet_NaN()};
  file.add<float>("fraction", {2}, fraction);
  file.add<std::int64_t>("minus_one", {1}, minus_one);
  file.add<double>("huge", {1}, huge);
  file.add<double>("nan", {1}, not_a_number);
  const std::vector<failing_case> cases = {
      {"F32 fraction to I64",
       [&] { file.at("fraction").to<std::int64_t>(); },
       {"F32 value 1.5", "index 1", "I64"}},
      {"I64 -1 to U8",
       [&] { file.at("minus_one").to<std::uint8_t>(); },
       {"I64 value -1", "index 0", "U8"}},
      {"I64 past I32",
       [&] { file.at("big").to<std::int32_t>(); },
       {"I64 value 9007199254740993", "index 1", "I32"}},
      {"F64 past float", [&] { file.at("huge").to<float>(); }, {"F64 value 1e+300", "F32"}},
      {"F64 NaN to I32", [&] { file.at("nan").to<std::int32_t>(); }, {"F64 value nan", "I32"}},
      {"U8 255 to bool", [&] { file.at("pixels").to<bool>(); }, {"U8 value 128", "BOOL"}},
  };
  for (const auto& test : cases) {
    INFO(test.label);
    std::string message = "no exception";
    try {
      test.convert();
    } catch (const advgan::argument_error& failure) {
      message = failure.what();
    }
    for (const auto& word : test.words) CHECK_MESSAGE(contains(message, word), message);
  }

  const tensor_data wrong_size{dtype::f32, {2}, bytes_of({1, 2, 3})};
  CHECK_THROWS_AS(wrong_size.to<float>(), advgan::argument_error);
}

TEST_CASE("safetensors metadata round trip") {
  safetensors file = sample_file();
  file.set_metadata("format", "pt");
  file.set_metadata("advgan.version", "1");
  file.set_metadata("empty", "");
  file.set_metadata("quoted \"key\"", "line\nbreak, back\\slash, tab\t");
  file.set_metadata("größe", "模型");
  const std::map<std::string, std::string> expected = {
      {"format", "pt"},
      {"advgan.version", "1"},
      {"empty", ""},
      {"quoted \"key\"", "line\nbreak, back\\slash, tab\t"},
      {"größe", "模型"}};
  CHECK(file.metadata() == expected);
  temporary_folder folder;
  file.save(folder / "meta.safetensors");
  CHECK(safetensors::load(folder / "meta.safetensors").metadata() == expected);
  CHECK(safetensors::parse(file.serialize(), "meta").metadata() == expected);

  // A file without metadata has no "__metadata__" entry.
  safetensors plain;
  const float value[] = {1.0f};
  plain.add<float>("x", {}, value);
  const byte_vector bytes = plain.serialize();
  const std::string text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  CHECK_FALSE(contains(text, "__metadata__"));
  CHECK(safetensors::parse(bytes, "plain").metadata().empty());

  CHECK_THROWS_AS(file.set_metadata("bad\xFF", "x"), advgan::argument_error);
  CHECK_THROWS_AS(file.set_metadata("key", "bad\xC0\xAF"), advgan::argument_error);
}

TEST_CASE("safetensors reads files written by other writers") {
  SUBCASE("empty header is an empty file") {
    const safetensors file = safetensors::parse(file_with_header("{}"), "empty.safetensors");
    CHECK(file.names().empty());
    CHECK(file.metadata().empty());
  }
  SUBCASE("header padded with spaces, entries out of offset order") {
    const std::string header = R"({"b":{"dtype":"U8","shape":[2],"data_offsets":[4,6]},)"
                               R"("a":{"dtype":"I16","shape":[2],"data_offsets":[0,4]},)"
                               R"("__metadata__":{"k":"v"}}       )";
    const safetensors file = safetensors::parse(file_with_header(header, 6), "padded");
    CHECK(file.names() == std::vector<std::string>{"a", "b"});
    CHECK(file.at("a").bytes == bytes_of({1, 8, 15, 22}));
    CHECK(file.at("a").to<std::int16_t>() == std::vector<std::int16_t>{0x0801, 0x160F});
    CHECK(file.at("b").to<int>() == std::vector<int>{29, 36});
    CHECK(file.metadata().at("k") == "v");
  }
  SUBCASE("JSON whitespace around and between tokens") {
    // JSON allows space, tab, line feed and carriage return between tokens.
    const std::string header =
        "\t\r\n {\n  \"a\" :\t{\"dtype\": \"U8\", \"shape\": [ 2 ],\r\n"
        "   \"data_offsets\": [0, 2]}\n}\n" +
        std::string(13, ' ');
    const safetensors file = safetensors::parse(file_with_header(header, 2), "whitespace");
    CHECK(file.names() == std::vector<std::string>{"a"});
    CHECK(file.at("a").to<int>() == std::vector<int>{1, 8});
  }
  SUBCASE("escapes in names and metadata") {
    const std::string header = R"({"__metadata__":{"quote\"d":"back\\slash \u00e9 \n"},)"
                               R"("a\u0000b":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})";
    const safetensors file = safetensors::parse(file_with_header(header, 1), "escapes");
    CHECK(file.names() == std::vector<std::string>{std::string("a\0b", 3)});
    CHECK(file.metadata().at("quote\"d") == "back\\slash \xC3\xA9 \n");
  }
  SUBCASE("empty tensors share an offset with their neighbours") {
    const std::string header = R"({"e1":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},)"
                               R"("x":{"dtype":"F32","shape":[],"data_offsets":[0,4]},)"
                               R"("e2":{"dtype":"F64","shape":[2,0],"data_offsets":[4,4]}})";
    const safetensors file = safetensors::parse(file_with_header(header, 4), "empties");
    CHECK(file.names().size() == 3);
    CHECK(file.at("e2").shape == std::vector<std::size_t>{2, 0});
    CHECK(file.at("x").shape.empty());
  }
}

TEST_CASE("safetensors rejects hostile files") {
  struct hostile_case {
    std::string label;
    byte_vector bytes;
    std::vector<std::string> words;
  };
  const std::string f32_entry = R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  const std::string deep_array = std::string(100000, '[') + std::string(100000, ']');
  const std::vector<hostile_case> cases = {
      {"5-byte file",
       bytes_of({0x01, 0x02, 0x03, 0x04, 0x05}),
       {"file too small for the 8-byte header length", "found 5"}},
      {"empty file", {}, {"file too small for the 8-byte header length", "found 0"}},
      {"header length 2^64-1",
       bytes_of({0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7B, 0x7D}),
       {"header length 18446744073709551615 exceeds the limit of 100000000 bytes",
        "file size 10 bytes"}},
      {"header length over the limit",
       concatenate(bytes_of({0x01, 0xE1, 0xF5, 0x05, 0x00, 0x00, 0x00, 0x00}), byte_vector(16)),
       {"header length 100000001 exceeds the limit of 100000000 bytes"}},
      {"header length past the end",
       concatenate(bytes_of({0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}), byte_vector(10)),
       {"header length 64 exceeds the 10 bytes", "expected a file of at least 72 bytes, found 18"}},
      {"array header", file_with_header("[]"), {"header is not a JSON object", "array"}},
      {"string header", file_with_header(R"("ab")"), {"header is not a JSON object", "\"ab\""}},
      {"deeply nested header", file_with_header(deep_array), {"header is not a JSON object"}},
      {"bytes FF FE",
       concatenate(length_field(2), bytes_of({0xFF, 0xFE})),
       {"(byte 8)", "header is not valid UTF-8"}},
      {"overlong UTF-8", file_with_header("{\"\xC0\xAF\":1}"), {"(byte 10)", "not valid UTF-8"}},
      {"UTF-8 surrogate", file_with_header("{\"\xED\xA0\x80\":1}"), {"not valid UTF-8"}},
      {"cut UTF-8 sequence", file_with_header("{\"\xE6\xA8"), {"not valid UTF-8"}},
      {"empty header", file_with_header(""), {"header is not valid JSON"}},
      {"unclosed object", file_with_header(R"({"a":)"), {"header is not valid JSON"}},
      {"number overflow", file_with_header(R"({"a":1e400})"), {"header is not valid JSON"}},
      {"entry not an object",
       file_with_header(R"({"w":5})"),
       {"hostile.safetensors: w:", "entry is not a JSON object", "5"}},
      {"missing dtype",
       file_with_header(R"({"w":{"shape":[2],"data_offsets":[0,8]}})", 8),
       {"w:", "missing \"dtype\""}},
      {"missing shape",
       file_with_header(R"({"w":{"dtype":"F32","data_offsets":[0,8]}})", 8),
       {"w:", "missing \"shape\""}},
      {"missing data_offsets",
       file_with_header(R"({"w":{"dtype":"F32","shape":[2]}})", 8),
       {"w:", "missing \"data_offsets\""}},
      {"dtype not a string",
       file_with_header(R"({"w":{"dtype":4,"shape":[2],"data_offsets":[0,8]}})", 8),
       {"\"dtype\" is not a string", "4"}},
      {"unknown dtype",
       file_with_header(R"({"w":{"dtype":"F8","shape":[2],"data_offsets":[0,2]}})", 2),
       {"w:", "unknown dtype \"F8\""}},
      {"lower-case dtype",
       file_with_header(R"({"w":{"dtype":"f32","shape":[2],"data_offsets":[0,8]}})", 8),
       {"unknown dtype \"f32\""}},
      {"shape not an array",
       file_with_header(R"({"w":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", 8),
       {"\"shape\" is not an array", "2"}},
      {"negative shape",
       file_with_header(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,8]}})", 8),
       {"\"shape\" value -1 is not a non-negative integer"}},
      {"fractional shape",
       file_with_header(R"({"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,8]}})", 8),
       {"\"shape\" value 1.5 is not a non-negative integer"}},
      {"string in shape",
       file_with_header(R"({"w":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}})", 8),
       {"\"shape\" value \"2\" is not a non-negative integer"}},
      {"shape value 2^64",
       file_with_header(
           R"({"w":{"dtype":"U8","shape":[18446744073709551616],"data_offsets":[0,8]}})", 8),
       {"\"shape\" value 1.8446744073709552e+19 is not a non-negative integer"}},
      {"shape product overflows",
       file_with_header(
           R"({"w":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,0]}})"),
       {"shape [4294967296, 4294967296] of U8 is too large"}},
      {"byte count overflows",
       file_with_header(
           R"({"w":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,0]}})"),
       {"shape [2305843009213693952] of F64 is too large"}},
      {"three offsets",
       file_with_header(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4,8]}})", 8),
       {"\"data_offsets\" [0, 4, 8] must contain 2 values, found 3"}},
      {"negative offset",
       file_with_header(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[-4,4]}})", 8),
       {"\"data_offsets\" value -4 is not a non-negative integer"}},
      {"offsets end before they begin",
       file_with_header(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", 8),
       {"w:", "data_offsets [8, 4] end before they begin"}},
      {"byte range does not fit the shape",
       file_with_header(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", 4),
       {"w:", "data_offsets [0, 4] span 4 bytes, expected 8 for shape [2] of F32"}},
      {"offsets past the data",
       file_with_header(R"({"w":)" + f32_entry + "}", 4),
       {"w:", "run past the end of the data section", "expected at least 8", "found 4"}},
      {"offsets near 2^64",
       file_with_header(R"({"w":{"dtype":"U8","shape":[7],)"
                        R"("data_offsets":[18446744073709551608,18446744073709551615]}})",
                        7),
       {"run past the end", "expected at least 18446744073709551615", "found 7"}},
      {"overlapping tensors",
       file_with_header(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                        R"("b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}})",
                        8),
       {"b:", "data_offsets [2, 6] overlap tensor \"a\" at [0, 4]"}},
      {"gap between tensors",
       file_with_header(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                        R"("b":{"dtype":"U8","shape":[4],"data_offsets":[6,10]}})",
                        10),
       {"b:", "leave bytes 4 to 6 of the data section unused"}},
      {"first tensor not at 0",
       file_with_header(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}})", 8),
       {"a:", "leave bytes 0 to 4"}},
      {"data longer than the tensors",
       file_with_header(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})", 6),
       {"data section has 6 bytes, but the tensors cover only 4"}},
      {"data after an empty header",
       file_with_header("{}", 3),
       {"data section has 3 bytes, but the tensors cover only 0"}},
      {"metadata value not a string",
       file_with_header(R"({"__metadata__":{"k":5}})"),
       {"__metadata__:", "value of key \"k\" is not a string (found 5)"}},
      {"metadata not an object",
       file_with_header(R"({"__metadata__":["a"]})"),
       {"__metadata__:", "metadata is not a JSON object"}},
      {"repeated tensor name",
       file_with_header(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                        R"("a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})",
                        4),
       {"a:", "name appears twice in the header"}},
      {"repeated dtype in an entry",
       file_with_header(R"({"w":{"dtype":"F32","dtype":"U8","shape":[4],"data_offsets":[0,4]}})",
                        4),
       {"w:", "key \"dtype\" appears twice"}},
      {"repeated data_offsets in an entry",
       file_with_header(R"({"w":{"dtype":"U8","shape":[4],"data_offsets":[0,8],)"
                        R"("data_offsets":[0,4]}})",
                        4),
       {"w:", "key \"data_offsets\" appears twice"}},
      {"repeated metadata key",
       file_with_header(R"({"__metadata__":{"k":"1","k":"2"}})"),
       {"__metadata__:", "key \"k\" appears twice"}},
      {"metadata value null",
       file_with_header(R"({"__metadata__":{"k":null}})"),
       {"__metadata__:", "value of key \"k\" is not a string (found null)"}},
      {"fractional offset",
       file_with_header(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8.0]}})", 8),
       {"w:", "\"data_offsets\" value 8.0 is not a non-negative integer"}},
      {"offset 2^64",
       file_with_header(
           R"({"w":{"dtype":"U8","shape":[0],"data_offsets":[0,18446744073709551616]}})"),
       {"w:", "\"data_offsets\" value 1.8446744073709552e+19 is not a non-negative integer"}},
      {"shape with a negative product",
       file_with_header(R"({"w":{"dtype":"U8","shape":[2,-3],"data_offsets":[0,6]}})", 6),
       {"w:", "\"shape\" value -3 is not a non-negative integer"}},
      // Bytes that JSON does not allow where they stand. nlohmann::json ends
      // its input at a NUL byte and skips a byte-order mark, so without a
      // check of its own the reader would ignore what follows a NUL.
      {"NUL after the header object",
       file_with_header(std::string("{}\0garbage", 10)),
       {"(byte 10)", "header contains byte 0x00, which JSON does not allow outside a string"}},
      {"NUL padding instead of spaces",
       file_with_header(std::string("{}\0\0\0\0\0\0", 8)),
       {"(byte 10)", "byte 0x00"}},
      {"NUL hiding a second tensor",
       file_with_header(std::string(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})") +
                            '\0' + R"({"b":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}})",
                        4),
       {"(byte 61)", "byte 0x00"}},
      {"NUL inside the object", file_with_header(std::string("{\0}", 3)), {"(byte 9)", "0x00"}},
      {"NUL in a tensor name",
       file_with_header(std::string("{\"a\0\":1}", 7)),
       {"(byte 11)", "control byte 0x00 inside a string, which JSON allows only escaped"}},
      {"byte-order mark",
       file_with_header("\xEF\xBB\xBF{}"),
       {"(byte 8)", "byte 0xEF (the start of a UTF-8 byte-order mark)"}},
      {"tab inside a name", file_with_header("{\"a\tb\":1}"), {"(byte 11)", "control byte 0x09"}},
      {"escaped control byte",
       file_with_header(std::string("{\"a\\\x01\":1}")),
       {"(byte 12)", "control byte 0x01"}},
      {"DEL after the object", file_with_header("{}\x7F"), {"(byte 10)", "byte 0x7F"}},
      {"letter after the object", file_with_header("{} x"), {"(byte 11)", "byte 0x78"}},
      {"vertical tab as whitespace", file_with_header("{}\v"), {"(byte 10)", "byte 0x0B"}},
      {"form feed as whitespace", file_with_header("\f{}"), {"(byte 8)", "byte 0x0C"}},
  };

  temporary_folder folder;
  for (const auto& test : cases) {
    INFO(test.label);
    const std::string parsed = parse_error(test.bytes);
    CHECK_MESSAGE(parsed.rfind("hostile.safetensors", 0) == 0, parsed);
    for (const auto& word : test.words) CHECK_MESSAGE(contains(parsed, word), parsed);

    const fs::path path = folder / "hostile.safetensors";
    write_bytes(path, test.bytes);
    const std::string loaded = load_error(path);
    CHECK_MESSAGE(loaded.rfind(path.string(), 0) == 0, loaded);
    for (const auto& word : test.words)
      if (word.rfind("hostile.safetensors", 0) != 0) CHECK_MESSAGE(contains(loaded, word), loaded);
  }
}

TEST_CASE("safetensors survives mutated files") {
  // Changes 1 to 4 random bytes of a valid file, mostly in the header, or
  // cuts it at a random length. Each result must parse or throw file_error.
  safetensors valid = sample_file(6);
  valid.add("flags", tensor_data{dtype::boolean, {2, 1}, bytes_of({1, 0})});
  const byte_vector bytes = valid.serialize();
  const std::size_t header_end = 8 + header_length_of(bytes);

  advgan::philox random(2024);
  int parsed = 0;
  int rejected = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    byte_vector mutated = bytes;
    if (trial % 10 == 0) {
      mutated.resize(random.below(static_cast<std::uint32_t>(bytes.size())));
    } else {
      const std::uint32_t changes = 1 + random.below(4);
      for (std::uint32_t c = 0; c < changes; ++c) {
        const auto limit =
            static_cast<std::uint32_t>(random.below(4) == 0 ? bytes.size() : header_end);
        mutated[random.below(limit)] = static_cast<std::byte>(random.below(256));
      }
    }
    try {
      safetensors::parse(mutated, "mutated.safetensors");
      ++parsed;
    } catch (const advgan::file_error&) {
      ++rejected;
    } catch (const std::exception& failure) {
      FAIL("trial ", trial, " threw a non-file_error: ", failure.what());
    }
  }
  // Both outcomes must occur, or the mutations exercised only one path.
  CHECK(parsed > 0);
  CHECK(rejected > 0);
}

TEST_CASE("safetensors reports truncated files") {
  const safetensors file = sample_file(1000);
  const byte_vector bytes = file.serialize();
  const std::size_t header_length = header_length_of(bytes);
  const std::size_t data_size = bytes.size() - 8 - header_length;
  REQUIRE(data_size == 1000 * 4 + 8);
  REQUIRE(header_length < bytes.size() / 2);

  temporary_folder folder;
  const fs::path path = folder / "cut.safetensors";
  SUBCASE("cut to half") {
    const std::size_t cut = bytes.size() / 2;
    const byte_vector half(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(cut));
    write_bytes(path, half);
    for (const std::string& message : {parse_error(half), load_error(path)}) {
      CHECK_MESSAGE(contains(message, "run past the end of the data section"), message);
      // The tensors need all data bytes; half the file leaves cut - 8 - header bytes.
      CHECK_MESSAGE(contains(message, "expected at least " + std::to_string(data_size) +
                                          " bytes of tensor data, found " +
                                          std::to_string(cut - 8 - header_length)),
                    message);
    }
  }
  SUBCASE("cut inside the header") {
    const std::size_t cut = 8 + header_length / 2;
    const byte_vector partial(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(cut));
    write_bytes(path, partial);
    for (const std::string& message : {parse_error(partial), load_error(path)}) {
      CHECK_MESSAGE(contains(message, "header length " + std::to_string(header_length)), message);
      CHECK_MESSAGE(
          contains(message, "expected a file of at least " + std::to_string(header_length + 8) +
                                " bytes, found " + std::to_string(cut)),
          message);
    }
  }
  SUBCASE("cut to 7 bytes") {
    const byte_vector seven(bytes.begin(), bytes.begin() + 7);
    write_bytes(path, seven);
    for (const std::string& message : {parse_error(seven), load_error(path)}) {
      CHECK_MESSAGE(contains(message, "expected at least 8 bytes, found 7"), message);
    }
  }
  SUBCASE("one byte short") {
    const byte_vector short_one(bytes.begin(), bytes.end() - 1);
    write_bytes(path, short_one);
    for (const std::string& message : {parse_error(short_one), load_error(path)}) {
      CHECK_MESSAGE(contains(message, "found " + std::to_string(data_size - 1)), message);
    }
  }
}

TEST_CASE("safetensors lookups and shape checks") {
  temporary_folder folder;
  const fs::path path = folder / "model.safetensors";
  sample_file().save(path);
  const safetensors file = safetensors::load(path);
  CHECK(file.source() == path.string());
  CHECK(file.contains("layer.weight"));
  CHECK_FALSE(file.contains("layer.bias"));
  CHECK(file.names() == std::vector<std::string>{"layer.weight", "step"});

  std::vector<float> weight(6);
  file.read_into<float>("layer.weight", {3, 2}, weight);
  CHECK(weight == std::vector<float>{-1.0f, -0.75f, -0.5f, -0.25f, 0.0f, 0.25f});
  std::vector<double> widened(6);
  file.read_into<double>("layer.weight", {3, 2}, widened);
  CHECK(widened == std::vector<double>{-1.0, -0.75, -0.5, -0.25, 0.0, 0.25});
  std::int64_t step = 0;
  file.read_into<std::int64_t>("step", {}, std::span(&step, 1));
  CHECK(step == -7);

  SUBCASE("wrong shape names the file, tensor and both shapes") {
    std::string message = "no exception";
    try {
      file.read_into<float>("layer.weight", {2, 3}, weight);
    } catch (const advgan::file_error& failure) {
      message = failure.what();
      CHECK(failure.path() == path.string());
      CHECK(failure.field() == "layer.weight");
    }
    CHECK_MESSAGE(contains(message, path.string()), message);
    CHECK_MESSAGE(contains(message, "layer.weight"), message);
    CHECK_MESSAGE(contains(message, "expected [2, 3], found [3, 2]"), message);
  }
  SUBCASE("missing tensor") {
    std::string message = "no exception";
    try {
      file.at("layer.bias");
    } catch (const advgan::file_error& failure) {
      message = failure.what();
    }
    CHECK_MESSAGE(contains(message, path.string()), message);
    CHECK_MESSAGE(contains(message, "layer.bias: tensor not found"), message);
    CHECK_THROWS_AS(file.read_into<float>("layer.bias", {3, 2}, weight), advgan::file_error);
  }
  SUBCASE("output of the wrong size") {
    std::vector<float> small(5);
    CHECK_THROWS_AS(file.read_into<float>("layer.weight", {3, 2}, small), advgan::argument_error);
  }
  SUBCASE("value that does not convert") {
    std::vector<std::int32_t> integers(6);
    CHECK_THROWS_WITH_AS(file.read_into<std::int32_t>("layer.weight", {3, 2}, integers),
                         doctest::Contains("layer.weight: cannot convert F32 value -0.75"),
                         advgan::file_error);
  }
  SUBCASE("missing file") {
    const std::string message = load_error(folder / "absent.safetensors");
    CHECK_MESSAGE(contains(message, (folder / "absent.safetensors").string()), message);
    CHECK_MESSAGE(contains(message, "No such file or directory"), message);
  }
  SUBCASE("folder instead of a file") {
    CHECK_THROWS_AS(safetensors::load(folder.path()), advgan::file_error);
  }
}

TEST_CASE("safetensors add checks its input") {
  safetensors file;
  const float values[] = {1, 2, 3, 4, 5, 6};
  CHECK_THROWS_AS(file.add<float>("w", {2, 2}, values), advgan::argument_error);
  CHECK_THROWS_AS(file.add<float>("__metadata__", {6}, values), advgan::argument_error);
  CHECK_THROWS_AS(file.add<float>("bad\xFF", {6}, values), advgan::argument_error);
  CHECK_THROWS_AS(file.add("w", tensor_data{dtype::f64, {2}, byte_vector(12)}),
                  advgan::argument_error);
  CHECK_THROWS_AS(
      file.add("w", tensor_data{dtype::u8, {std::size_t{1} << 32, std::size_t{1} << 32}, {}}),
      advgan::argument_error);
  CHECK(file.names().empty());

  file.add<float>("w", {6}, values);
  const double replacement[] = {9.0};
  file.add<double>("w", {}, replacement);
  CHECK(file.names() == std::vector<std::string>{"w"});
  CHECK(file.at("w").type == dtype::f64);
  CHECK(file.at("w").to<double>() == std::vector<double>{9.0});
}

TEST_CASE("atomic write replaces the file") {
  temporary_folder folder;
  const fs::path path = folder / "model.safetensors";
  const safetensors first = sample_file(4);
  const safetensors second = sample_file(10);
  first.save(path);
  CHECK(read_bytes(path) == first.serialize());
  ::chmod(path.c_str(), 0600);
  second.save(path);
  CHECK(read_bytes(path) == second.serialize());
  CHECK(safetensors::load(path).at("layer.weight").shape == std::vector<std::size_t>{5, 2});
  CHECK(folder.entries() == std::vector<std::string>{"model.safetensors"});
  struct stat status {};
  REQUIRE(::stat(path.c_str(), &status) == 0);
  CHECK((status.st_mode & 0777) == 0600);

  const fs::path missing = folder / "no-such-folder" / "model.safetensors";
  CHECK_THROWS_WITH_AS(first.save(missing), doctest::Contains(missing.c_str()), advgan::file_error);
  CHECK_THROWS_WITH_AS(first.save(missing), doctest::Contains("No such file or directory"),
                       advgan::file_error);
}

TEST_CASE("atomic write keeps the old file when the disk is full") {
  temporary_folder folder;
  const fs::path path = folder / "checkpoint.safetensors";
  const safetensors old_file = sample_file(8);
  old_file.save(path);
  const byte_vector old_bytes = read_bytes(path);
  const std::string expected_error = std::strerror(EFBIG);

  // The child limits its file size to 4 KiB so that writing 64 KiB fails with
  // EFBIG, as on a full disk. SIGXFSZ would kill it, so it is ignored and the
  // failure shows in write's return value. Exit codes: 0 the save threw the
  // expected file_error, 1 it did not throw, 2 the message was wrong, 3 other.
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    std::signal(SIGXFSZ, SIG_IGN);
    const rlimit limit{4096, 4096};
    if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) ::_exit(3);
    try {
      sample_file(16384).save(path);
      ::_exit(1);
    } catch (const advgan::file_error& failure) {
      const std::string message = failure.what();
      ::_exit(contains(message, path.string()) && contains(message, expected_error) &&
                      contains(message, "write failed after 4096 of")
                  ? 0
                  : 2);
    } catch (...) {
      ::_exit(3);
    }
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);

  CHECK(read_bytes(path) == old_bytes);
  const safetensors reloaded = safetensors::load(path);
  CHECK(reloaded.at("layer.weight").bytes == old_file.at("layer.weight").bytes);
  CHECK(folder.entries() == std::vector<std::string>{"checkpoint.safetensors"});
}

TEST_CASE("safetensors file reads back in Python") {
  if (std::system("/usr/bin/python3 -c 'import numpy' 2>/dev/null") != 0) {
    MESSAGE("skipped: /usr/bin/python3 with numpy is not available");
    return;
  }
  safetensors file;
  const float floats[] = {0.1f, -2.5f, 3.0e38f, 1e-45f, 0.0f, 7.0f};
  const double doubles[] = {0.1, -1e-310, 12345.678};
  const std::int64_t longs[] = {std::numeric_limits<std::int64_t>::min(), 42};
  const std::uint64_t huge[] = {std::numeric_limits<std::uint64_t>::max()};
  const std::int8_t small[] = {-128, 5, 127};
  const std::uint8_t pixels[] = {0, 255, 17, 3};
  const std::int32_t ints[] = {-2147483647 - 1};
  const bool flags[] = {true, false};
  file.add<float>("floats", {2, 3}, floats);
  file.add<double>("doubles", {3}, doubles);
  file.add<std::int64_t>("longs", {2, 1}, longs);
  file.add<std::uint64_t>("huge", {}, huge);
  file.add<std::int8_t>("small", {3}, small);
  file.add<std::uint8_t>("pixels", {2, 2}, pixels);
  file.add<std::int32_t>("ints", {1}, ints);
  file.add<bool>("flags", {2}, flags);
  file.add("empty", tensor_data{dtype::f32, {0, 3}, {}});
  file.add("half", tensor_data{dtype::f16, {2}, bytes_of({0x00, 0x3C, 0x01, 0x00})});
  file.add("brain", tensor_data{dtype::bf16, {1}, bytes_of({0x40, 0xC0})});
  file.add("u16", tensor_data{dtype::u16, {1}, bytes_of({0x34, 0x12})});
  file.set_metadata("format", "pt");
  file.set_metadata("note", "größe \"quoted\"");

  // The expected values come from the C++ reader; Python decodes the bytes on
  // its own and must agree exactly.
  nlohmann::json expected;
  expected["metadata"] = file.metadata();
  for (const std::string& name : file.names()) {
    const tensor_data& tensor = file.at(name);
    nlohmann::json entry = {{"dtype", std::string(advgan::io::dtype_name(tensor.type))},
                            {"shape", tensor.shape}};
    switch (tensor.type) {
      case dtype::boolean:
        entry["values"] = tensor.to<bool>();
        break;
      case dtype::i8:
      case dtype::i32:
      case dtype::i64:
        entry["values"] = tensor.to<std::int64_t>();
        break;
      case dtype::u8:
      case dtype::u16:
      case dtype::u64:
        entry["values"] = tensor.to<std::uint64_t>();
        break;
      default:
        entry["values"] = tensor.to<double>();
        break;
    }
    expected["tensors"][name] = entry;
  }

  temporary_folder folder;
  file.save(folder / "check.safetensors");
  // Returns the reader's exit code; `quiet` hides its report of expected mismatches.
  auto run_reader = [&](const nlohmann::json& expectation, bool quiet) {
    std::ofstream(folder / "expected.json") << expectation.dump();
    const std::string command =
        "/usr/bin/python3 '" ADVGAN_SOURCE_DIR "/tests/read_safetensors.py' '" +
        (folder / "check.safetensors").string() + "' '" + (folder / "expected.json").string() +
        "'" + (quiet ? " 2>/dev/null" : "");
    const int status = std::system(command.c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  };
  CHECK(run_reader(expected, false) == 0);

  // The reader must notice a wrong value, a wrong shape and a missing tensor.
  nlohmann::json wrong_value = expected;
  wrong_value["tensors"]["floats"]["values"][1] = -2.4999;
  CHECK(run_reader(wrong_value, true) == 1);
  nlohmann::json wrong_shape = expected;
  wrong_shape["tensors"]["pixels"]["shape"] = {4};
  CHECK(run_reader(wrong_shape, true) == 1);
  nlohmann::json extra_tensor = expected;
  extra_tensor["tensors"]["absent"] = expected["tensors"]["ints"];
  CHECK(run_reader(extra_tensor, true) == 1);
  nlohmann::json wrong_metadata = expected;
  wrong_metadata["metadata"]["format"] = "np";
  CHECK(run_reader(wrong_metadata, true) == 1);
}
