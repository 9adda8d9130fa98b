// Bad input across the readers and the trainer, as tables of cases. Each case
// names the exception type it expects and what the message must name: the
// file, the field, the layer or parameter, the index and the bad value.
//
// test_idx.cpp, test_safetensors.cpp and test_png.cpp check the formats on
// their own, and the cases here add what those leave out. They cover
// read_idx on every header fault, gzip header and trailer faults, and
// safetensors boundary and ordering faults. Then come model and checkpoint
// files that do not fit the model, and NaN or infinity in training, after
// which the last good checkpoint must still load.

#include <doctest/doctest.h>

#include <zlib.h>

#include <unistd.h>  // getpid

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <typeinfo>
#include <vector>

#include "advgan/advgan.hpp"
#include "temporary_folder.hpp"

namespace {

namespace fs = std::filesystem;
using namespace advgan;
using bytes = std::vector<std::uint8_t>;

using advgan::testing::temporary_folder;

void write_bytes(const fs::path& path, const bytes& data) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  REQUIRE(out.good());
}

bytes read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  return bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

bytes concatenate(bytes first, const bytes& second) {
  first.insert(first.end(), second.begin(), second.end());
  return first;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
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

// Runs `action` and returns the exception of type Error that it throws. A
// test failure names what happened instead: no exception, or another type.
template <class Error>
std::optional<Error> expect_error(const std::function<void()>& action) {
  try {
    action();
  } catch (const Error& failure) {
    if (typeid(failure) == typeid(Error)) return failure;
    FAIL_CHECK("expected exactly ", std::string(typeid(Error).name()), ", got ",
               std::string(typeid(failure).name()), ": ", failure.what());
    return std::nullopt;
  } catch (const std::exception& failure) {
    FAIL_CHECK("expected ", std::string(typeid(Error).name()), ", got ",
               std::string(typeid(failure).name()), ": ", failure.what());
    return std::nullopt;
  }
  FAIL_CHECK("expected ", std::string(typeid(Error).name()), ", but nothing was thrown");
  return std::nullopt;
}

// A bad file for one reader: its bytes and what the file_error must report.
struct file_case {
  std::string label;
  bytes contents;
  std::string field;
  std::size_t offset;
  std::vector<std::string> words;
};

// Writes each case to `path`, runs `read` on it, and checks the file_error.
void check_file_cases(const std::vector<file_case>& cases, const fs::path& path,
                      const std::function<void(const fs::path&)>& read) {
  for (const file_case& bad : cases) {
    CAPTURE(bad.label);
    write_bytes(path, bad.contents);
    const auto failure = expect_error<file_error>([&] { read(path); });
    if (!failure) continue;
    const std::string message = failure->what();
    CAPTURE(message);
    CHECK(failure->path() == path.string());
    CHECK(failure->field() == bad.field);
    CHECK(failure->offset() == bad.offset);
    CHECK(message.rfind(path.string() + ": " + bad.field, 0) == 0);
    for (const std::string& word : bad.words) CHECK_MESSAGE(contains(message, word), word);
  }
}

constexpr std::size_t no_offset = file_error::npos;

// ---------------------------------------------------------------------------
// Models for the model, checkpoint and numeric cases
// ---------------------------------------------------------------------------

// 8-d noise to 1x8x8 samples. Layer 3 is the last transposed convolution.
using tiny_generator =
    sequential<input<8, 1, 1>, conv_transpose2d<8, 4, 1, 0, 0, false>, batch_norm, relu,
               conv_transpose2d<1, 4, 2, 1, 0, false>, tanh_activation>;

// 1x8x8 samples to one logit, with batch norm at layer 3.
using tiny_discriminator =
    sequential<input<1, 8, 8>, conv2d<4, 4, 2, 1, false>, leaky_relu<>, conv2d<8, 4, 2, 1, false>,
               batch_norm, leaky_relu<>, conv2d<1, 2, 1, 0, false>, flatten>;

// The same without batch norm, so that hand-set weights fix every
// activation: convolutions at layers 0, 2 and 4.
using plain_discriminator =
    sequential<input<1, 8, 8>, conv2d<4, 4, 2, 1, false>, leaky_relu<>, conv2d<8, 4, 2, 1, false>,
               leaky_relu<>, conv2d<1, 2, 1, 0, false>, flatten>;

using backend = cpu<float>;
using tiny_trainer = gan_trainer<tiny_generator, tiny_discriminator, non_saturating, backend>;
using plain_trainer = gan_trainer<tiny_generator, plain_discriminator, non_saturating, backend>;

// A batch of `count` 1x8x8 samples, uniform in [-1, 1] from philox(seed).
backend::tensor random_batch(std::size_t count, std::uint64_t seed) {
  backend::tensor batch;
  backend::resize(batch, count, 1, 8, 8);
  philox random(seed);
  for (std::size_t i = 0; i < backend::size(batch); ++i)
    backend::data(batch)[i] = static_cast<float>(2 * random.uniform() - 1);
  return batch;
}

// Sets every value of the parameter `name` of `m` to `value`.
template <class Model>
void set_parameter(Model& m, const std::string& name, float value) {
  bool found = false;
  m.visit_parameters(
      [&](const std::string& parameter, float* data, float*, const parameter_spec& spec) {
        if (parameter != name) return;
        std::fill_n(data, spec.size(), value);
        found = true;
      });
  REQUIRE_MESSAGE(found, "no parameter ", name);
}

// The bytes that store_model writes for `m`: its whole state, for comparing
// a model before and after a failed load.
template <class Model>
std::vector<std::byte> model_bytes(Model& m) {
  io::safetensors file;
  store_model(file, "", m);
  return file.serialize();
}

// A copy of `source` without the tensor `dropped` (none when empty).
io::safetensors copy_without(const io::safetensors& source, const std::string& dropped = "") {
  io::safetensors copy;
  for (const auto& [key, value] : source.metadata()) copy.set_metadata(key, value);
  for (const std::string& name : source.names())
    if (name != dropped) copy.add(name, source.at(name));
  return copy;
}

}  // namespace

// ---------------------------------------------------------------------------
// IDX and gzip
// ---------------------------------------------------------------------------

TEST_CASE("read_idx rejects each header fault") {
  temporary_folder folder;
  const std::vector<file_case> cases = {
      {"second magic byte not zero",
       {0x00, 0x01, 0x08, 0x01, 0x00, 0x00, 0x00, 0x00},
       "magic",
       0,
       {"invalid magic 0x00010801 (67585)", "starts with 00 00"}},
      {"type code between int8 and int16",
       {0x00, 0x00, 0x0A, 0x01, 0x00, 0x00, 0x00, 0x00},
       "magic",
       2,
       {"unknown type code 0x0A (magic 0x00000A01)"}},
      {"2 of 4 dimension sizes present",
       {0x00, 0x00, 0x08, 0x04, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01},
       "header",
       no_offset,
       {"incomplete header: 12 bytes, need 20"}},
      {"magic cut after 2 bytes",
       {0x00, 0x00},
       "header",
       no_offset,
       {"incomplete header: 2 bytes"}},
      {"int32 data 2 bytes short",
       {0x00, 0x00, 0x0C, 0x01, 0x00, 0x00, 0x00, 0x03, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10},
       "data",
       8,
       {"truncated: expected 12 data bytes, found 10 (dimensions 3, int32)"}},
      {"float64 data cut inside the last value",
       concatenate({0x00, 0x00, 0x0E, 0x01, 0x00, 0x00, 0x00, 0x02}, bytes(15, 0x3F)),
       "data",
       8,
       {"truncated: expected 16 data bytes, found 15 (dimensions 2, float64)"}},
      // The product fits size_t but not the file: the reader must compare
      // before it allocates 2^64 - 2^33 + 1 values.
      {"dimensions far beyond the file",
       {0x00, 0x00, 0x08, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF},
       "data",
       12,
       {"truncated: expected 18446744065119617025 data bytes, found 0",
        "dimensions 4294967295 x 4294967295, uint8"}},
      // 2^31 x 2^31 float64 values is 2^62 elements, whose byte count overflows.
      {"byte count overflows with the element size",
       {0x00, 0x00, 0x0E, 0x02, 0x80, 0x00, 0x00, 0x00, 0x80, 0x00, 0x00, 0x00},
       "dimensions",
       4,
       {"2147483648 x 2147483648 overflows size_t"}},
      {"8 dimensions of 2^32 - 1",
       concatenate({0x00, 0x00, 0x0D, 0x08}, bytes(32, 0xFF)),
       "dimensions",
       4,
       {"4294967295 x 4294967295 x 4294967295 x 4294967295 x 4294967295 x 4294967295 x "
        "4294967295 x 4294967295 overflows size_t"}},
      {"empty dimension followed by data",
       {0x00, 0x00, 0x08, 0x01, 0x00, 0x00, 0x00, 0x00, 0x05},
       "data",
       8,
       {"1 trailing byte after the 0 data bytes of dimensions 0"}},
      {"gzip member holding truncated data",
       gzip({0x00, 0x00, 0x08, 0x02, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x03, 1, 2, 3}),
       "data",
       12,
       {"truncated: expected 9 data bytes, found 3 (dimensions 3 x 3, uint8)"}},
  };
  check_file_cases(cases, folder / "values.idx",
                   [](const fs::path& path) { advgan::data::read_idx(path); });
}

TEST_CASE("read_file_bytes rejects gzip header and trailer faults") {
  temporary_folder folder;
  const bytes idx = {0x00, 0x00, 0x08, 0x01, 0x00, 0x00, 0x00, 0x03, 1, 2, 3};
  const bytes compressed = gzip(idx);
  // zlib writes a 10-byte header without optional fields, so the deflate
  // data start at byte 10 and the 8-byte trailer (CRC-32, ISIZE) ends it.
  REQUIRE(compressed.size() > 18);
  bytes bad_method = compressed;
  bad_method[2] = 0x07;  // CM: only 8 (deflate) is defined
  bytes reserved_flags = compressed;
  reserved_flags[3] = 0xE0;  // FLG bits 5 to 7 are reserved
  bytes header_crc_flag = compressed;
  header_crc_flag[3] |= 0x02;  // FHCRC: bytes 10 and 11 now count as a header CRC-16
  bytes wrong_length = compressed;
  wrong_length.back() ^= 0x01;  // top byte of ISIZE
  const bytes cut_trailer(compressed.begin(), compressed.end() - 4);
  const bytes header_only(compressed.begin(), compressed.begin() + 10);
  bytes second_corrupt = concatenate(compressed, compressed);
  second_corrupt[compressed.size() + 12] ^= 0xFF;  // inside the second member's deflate data

  const std::vector<file_case> cases = {
      {"magic bytes alone", {0x1F, 0x8B}, "gzip", 2, {"gzip stream truncated after 2 compressed"}},
      {"unknown compression method", bad_method, "gzip", 4, {"unknown compression method"}},
      {"reserved header flags", reserved_flags, "gzip", 4, {"unknown header flags set"}},
      {"header CRC that does not match", header_crc_flag, "gzip", 12, {"header crc mismatch"}},
      {"ISIZE that does not match",
       wrong_length,
       "gzip",
       compressed.size(),
       {"corrupt gzip data: incorrect length check"}},
      {"trailer cut in half",
       cut_trailer,
       "gzip",
       cut_trailer.size(),
       {"gzip stream truncated after " + std::to_string(cut_trailer.size()) + " compressed bytes"}},
      {"header without deflate data", header_only, "gzip", 10, {"truncated after 10 compressed"}},
      {"second member corrupt",
       second_corrupt,
       "gzip",
       compressed.size() + 15,
       {"corrupt gzip data: invalid distance too far back"}},
      {"second member cut to its magic",
       concatenate(compressed, {0x1F, 0x8B}),
       "gzip",
       compressed.size() + 2,
       {"gzip stream truncated after " + std::to_string(compressed.size() + 2)}},
  };
  check_file_cases(cases, folder / "values.idx.gz",
                   [](const fs::path& path) { advgan::data::read_file_bytes(path); });
  // read_idx reports the same faults, because it reads through read_file_bytes.
  check_file_cases(cases, folder / "values.idx.gz",
                   [](const fs::path& path) { advgan::data::read_idx(path); });
}

// ---------------------------------------------------------------------------
// safetensors
// ---------------------------------------------------------------------------

namespace {

std::vector<std::byte> as_byte_vector(const std::string& text) {
  std::vector<std::byte> result(text.size());
  std::memcpy(result.data(), text.data(), text.size());
  return result;
}

// A file of 8-byte length `length`, the header text and `data_size` bytes.
std::vector<std::byte> safetensors_file(const std::string& header, std::size_t data_size,
                                        std::uint64_t length) {
  std::vector<std::byte> file(8);
  for (int i = 0; i < 8; ++i) file[i] = static_cast<std::byte>(length >> (8 * i));
  const auto text = as_byte_vector(header);
  file.insert(file.end(), text.begin(), text.end());
  file.resize(file.size() + data_size, std::byte{0x3C});
  return file;
}

std::vector<std::byte> safetensors_file(const std::string& header, std::size_t data_size = 0) {
  return safetensors_file(header, data_size, header.size());
}

// A safetensors file for both parse() and load(): its bytes, the field the
// file_error names (empty for the file as a whole) and message words.
struct safetensors_case {
  std::string label;
  std::vector<std::byte> contents;
  std::string field;
  std::vector<std::string> words;
};

}  // namespace

TEST_CASE("safetensors rejects boundary and ordering faults") {
  const std::string u8x4 = R"({"dtype":"U8","shape":[4],)";
  const std::vector<safetensors_case> cases = {
      {"header length at the limit but beyond the file",
       safetensors_file("{}", 0, io::safetensors::max_header_length),
       "",
       {"header length 100000000 exceeds the 2 bytes that follow it",
        "expected a file of at least 100000008 bytes, found 10"}},
      {"header length one byte beyond the file",
       safetensors_file("{}", 0, 3),
       "",
       {"header length 3 exceeds the 2 bytes that follow it"}},
      {"overlap with the later tensor listed first",
       safetensors_file(
           "{\"a\":" + u8x4 + R"("data_offsets":[2,6]},"b":)" + u8x4 + R"("data_offsets":[0,4]}})",
           6),
       "a",
       {"data_offsets [2, 6] overlap tensor \"b\" at [0, 4]"}},
      {"two tensors on the same bytes",
       safetensors_file(
           "{\"a\":" + u8x4 + R"("data_offsets":[0,4]},"b":)" + u8x4 + R"("data_offsets":[0,4]}})",
           4),
       "b",
       {"data_offsets [0, 4] overlap tensor \"a\" at [0, 4]"}},
      {"empty tensor inside another tensor's bytes",
       safetensors_file("{\"a\":" + u8x4 +
                            R"("data_offsets":[0,4]},"e":{"dtype":"F32","shape":[0],)"
                            R"("data_offsets":[2,2]}})",
                        4),
       "e",
       {"data_offsets [2, 2] overlap tensor \"a\" at [0, 4]"}},
      {"unordered offsets with a gap",
       safetensors_file(
           "{\"b\":" + u8x4 + R"("data_offsets":[5,9]},"a":)" + u8x4 + R"("data_offsets":[0,4]}})",
           9),
       "b",
       {"leave bytes 4 to 5 of the data section unused"}},
      {"F64 values in 20 bytes",
       safetensors_file(R"({"w":{"dtype":"F64","shape":[3],"data_offsets":[0,20]}})", 20),
       "w",
       {"data_offsets [0, 20] span 20 bytes, expected 24 for shape [3] of F64"}},
      {"BF16 values in an odd byte count",
       safetensors_file(R"({"w":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,7]}})", 7),
       "w",
       {"span 7 bytes, expected 8 for shape [2, 2] of BF16"}},
      {"I64 scalar in 4 bytes",
       safetensors_file(R"({"n":{"dtype":"I64","shape":[],"data_offsets":[0,4]}})", 4),
       "n",
       {"span 4 bytes, expected 8 for shape [] of I64"}},
      {"F8_E4M3, a dtype of newer writers",
       safetensors_file(R"({"w":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})", 2),
       "w",
       {"unknown dtype \"F8_E4M3\""}},
      {"empty dtype name",
       safetensors_file(R"({"w":{"dtype":"","shape":[2],"data_offsets":[0,2]}})", 2),
       "w",
       {"unknown dtype \"\""}},
      {"text after the header object", safetensors_file("{} {}"), "", {"header is not valid JSON"}},
      {"number as the header", safetensors_file("12345678"), "", {"header is not a JSON object"}},
  };

  temporary_folder folder;
  const fs::path path = folder / "hostile.safetensors";
  for (const safetensors_case& bad : cases) {
    CAPTURE(bad.label);
    const auto parsed = expect_error<file_error>(
        [&] { io::safetensors::parse(bad.contents, "hostile.safetensors"); });
    if (parsed) {
      CAPTURE(std::string(parsed->what()));
      CHECK(parsed->path() == "hostile.safetensors");
      CHECK(parsed->field() == bad.field);
      for (const std::string& word : bad.words) CHECK(contains(parsed->what(), word));
    }

    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bad.contents.data()),
              static_cast<std::streamsize>(bad.contents.size()));
    out.close();
    const auto loaded = expect_error<file_error>([&] { io::safetensors::load(path); });
    if (loaded) {
      CAPTURE(std::string(loaded->what()));
      CHECK(loaded->path() == path.string());
      CHECK(loaded->field() == bad.field);
      for (const std::string& word : bad.words) CHECK(contains(loaded->what(), word));
    }
  }
}

// ---------------------------------------------------------------------------
// Model files and checkpoints that do not fit the model
// ---------------------------------------------------------------------------

TEST_CASE("load_model rejects files that do not fit the model") {
  using model_type = model<tiny_discriminator, backend>;
  temporary_folder folder;
  model_type source(11, init_scheme::dcgan);
  const fs::path good_path = folder / "good.safetensors";
  save_model(good_path, source);
  const io::safetensors good = io::safetensors::load(good_path);
  // 3 convolution weights, and batch norm's weight, bias and 3 buffers.
  REQUIRE(good.names().size() == 8);

  struct model_case {
    std::string label;
    io::safetensors file;
    std::string field;
    std::vector<std::string> words;
  };
  std::vector<model_case> cases;
  cases.push_back({"weight missing",
                   copy_without(good, "2.weight"),
                   "2.weight",
                   {"tensor not found among the file's 7 tensors"}});
  {
    io::safetensors file = copy_without(good);
    const auto values = good.at("2.weight").to<float>();
    file.add<float>("2.weight", {4, 8, 4, 4}, values);
    cases.push_back({"weight with in and out channels swapped",
                     file,
                     "2.weight",
                     {"shape [4, 8, 4, 4] does not match the model's shape [8, 4, 4, 4]"}});
  }
  {
    io::safetensors file = copy_without(good);
    const std::vector<float> four(4, 1.0f);
    file.add<float>("3.running_var", {4}, four);
    cases.push_back({"running_var of the wrong width",
                     file,
                     "3.running_var",
                     {"shape [4] does not match the model's shape [8]"}});
  }
  {
    io::safetensors file = copy_without(good);
    const std::int64_t counter[] = {3};
    file.add<std::int64_t>("3.num_batches_tracked", {1}, counter);
    cases.push_back({"counter stored as a 1-element vector",
                     file,
                     "3.num_batches_tracked",
                     {"shape [1] does not match the model's shape []"}});
  }
  {
    io::safetensors file = copy_without(good);
    std::vector<double> weights(good.at("0.weight").to<double>());
    weights[5] = 1e300;
    file.add<double>("0.weight", {4, 1, 4, 4}, weights);
    cases.push_back({"F64 weight beyond float's range",
                     file,
                     "0.weight",
                     {"cannot convert F64 value 1e+300 at index 5 to F32 exactly"}});
  }
  {
    // The parameters convert; the last buffer does not, after every other
    // tensor has been read.
    io::safetensors file = copy_without(good);
    const float fraction[] = {1.5f};
    file.add<float>("3.num_batches_tracked", {}, fraction);
    cases.push_back({"counter with a fraction",
                     file,
                     "3.num_batches_tracked",
                     {"cannot convert F32 value 1.5 at index 0 to I64 exactly"}});
  }

  for (const model_case& bad : cases) {
    CAPTURE(bad.label);
    const fs::path path = folder / "bad.safetensors";
    bad.file.save(path);
    model_type target(12, init_scheme::dcgan);
    const auto before = model_bytes(target);
    const auto failure = expect_error<file_error>([&] { load_model(path, target); });
    if (failure) {
      const std::string message = failure->what();
      CAPTURE(message);
      CHECK(failure->path() == path.string());
      CHECK(failure->field() == bad.field);
      for (const std::string& word : bad.words) CHECK(contains(message, word));
    }
    CHECK_MESSAGE(model_bytes(target) == before, "a failed load changed the model");
  }
}

TEST_CASE("load_checkpoint rejects checkpoints that do not fit the trainer") {
  temporary_folder folder;
  trainer_options options;
  options.seed = 21;
  options.sample_count = 4;
  tiny_trainer trained(options);
  const backend::tensor batch = random_batch(4, 5);
  trained.step(batch);
  trained.step(batch);
  const fs::path good_path = folder / "good.safetensors";
  trained.save_checkpoint(good_path);
  const io::safetensors good = io::safetensors::load(good_path);

  struct checkpoint_case {
    std::string label;
    io::safetensors file;
    std::string field;
    std::vector<std::string> words;
  };
  std::vector<checkpoint_case> cases;
  {
    io::safetensors generator_file;
    trained.save_generator(folder / "generator.safetensors");
    generator_file = io::safetensors::load(folder / "generator.safetensors");
    cases.push_back({"generator file",
                     generator_file,
                     "__metadata__.format",
                     {"not an advgan checkpoint (expected format \"advgan.checkpoint\")"}});
  }
  {
    io::safetensors file = copy_without(good);
    file.set_metadata("version", "2");
    cases.push_back({"version from a newer build",
                     file,
                     "__metadata__.version",
                     {"unsupported checkpoint version \"2\"; this build reads version 1"}});
  }
  cases.push_back({"optimizer state missing",
                   copy_without(good, "discriminator_optimizer.exp_avg_sq"),
                   "discriminator_optimizer.exp_avg_sq",
                   {"tensor not found"}});
  cases.push_back({"average missing",
                   copy_without(good, "generator_ema.shadow"),
                   "generator_ema.shadow",
                   {"tensor not found"}});
  {
    io::safetensors file = copy_without(good);
    const auto values = good.at("generator.3.weight").to<float>();
    file.add<float>("generator.3.weight", {1, 8, 4, 4}, values);
    cases.push_back({"generator weight transposed",
                     file,
                     "generator.3.weight",
                     {"shape [1, 8, 4, 4] does not match the model's shape [8, 1, 4, 4]"}});
  }
  {
    io::safetensors file = copy_without(good);
    const std::int64_t counters[] = {2, 2, 0};
    file.add<std::int64_t>("trainer.counters", {3}, counters);
    cases.push_back({"three counters",
                     file,
                     "trainer.counters",
                     {"shape [3] does not match the model's shape [4]"}});
  }
  {
    // The generator converts; the discriminator's weight does not, so a
    // loader that wrote as it read would leave the generator changed.
    io::safetensors file = copy_without(good);
    std::vector<double> weights(good.at("discriminator.0.weight").to<double>());
    weights[1] = 1e300;
    file.add<double>("discriminator.0.weight", good.at("discriminator.0.weight").shape, weights);
    cases.push_back({"discriminator weight beyond float's range",
                     file,
                     "discriminator.0.weight",
                     {"cannot convert F64 value 1e+300 at index 1 to F32 exactly"}});
  }
  {
    // Both models convert; the last optimizer array does not.
    io::safetensors file = copy_without(good);
    std::vector<double> state(good.at("generator_ema.shadow").to<double>());
    state[0] = -1e300;
    file.add<double>("generator_ema.shadow", good.at("generator_ema.shadow").shape, state);
    cases.push_back({"average beyond float's range",
                     file,
                     "generator_ema.shadow",
                     {"cannot convert F64 value -1e+300 at index 0 to F32 exactly"}});
  }
  {
    // A checkpoint of a discriminator without batch norm lacks layer 3's
    // buffers and has its last convolution at index 4.
    plain_trainer other(options);
    other.save_checkpoint(folder / "other.safetensors");
    cases.push_back({"checkpoint of another discriminator",
                     io::safetensors::load(folder / "other.safetensors"),
                     "discriminator.3.weight",
                     {"tensor not found"}});
  }

  for (const checkpoint_case& bad : cases) {
    CAPTURE(bad.label);
    const fs::path path = folder / "bad.safetensors";
    bad.file.save(path);
    tiny_trainer target(options);
    target.save_checkpoint(folder / "before.safetensors");
    const auto failure = expect_error<file_error>([&] { target.load_checkpoint(path); });
    if (failure) {
      const std::string message = failure->what();
      CAPTURE(message);
      CHECK(failure->path() == path.string());
      CHECK(failure->field() == bad.field);
      for (const std::string& word : bad.words) CHECK(contains(message, word));
    }
    target.save_checkpoint(folder / "after.safetensors");
    CHECK_MESSAGE(
        read_bytes(folder / "after.safetensors") == read_bytes(folder / "before.safetensors"),
        "a failed load changed the trainer");
  }
}

// ---------------------------------------------------------------------------
// Non-finite values in training
// ---------------------------------------------------------------------------

TEST_CASE("step rejects non-finite input batches") {
  trainer_options options;
  options.seed = 3;
  options.sample_count = 4;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  struct input_case {
    std::string label;
    std::size_t index;
    float value;
    std::string value_text;
  };
  const std::vector<input_case> cases = {{"NaN in the first sample", 37, nan, "nan"},
                                         {"+inf in the last value", 4 * 64 - 1, inf, "inf"},
                                         {"-inf at index 0", 0, -inf, "-inf"}};
  for (const input_case& bad : cases) {
    CAPTURE(bad.label);
    tiny_trainer trainer(options);
    trainer.step(random_batch(4, 1));
    backend::tensor batch = random_batch(4, 2);
    backend::data(batch)[bad.index] = bad.value;
    const auto failure = expect_error<numeric_error>([&] { trainer.step(batch); });
    if (!failure) continue;
    CAPTURE(std::string(failure->what()));
    CHECK(failure->layer() == "input batch");
    CHECK(failure->tensor() == "real samples");
    CHECK(failure->index() == bad.index);
    CHECK(failure->iteration() == 2);
    CHECK(std::string(failure->what()) == "non-finite value " + bad.value_text +
                                              " in real samples of input batch at index " +
                                              std::to_string(bad.index) + ", iteration 2");
    // The batch is rejected before anything changes.
    CHECK(trainer.iteration() == 1);
  }
}

TEST_CASE("step rejects a batch of the wrong sample shape") {
  trainer_options options;
  options.sample_count = 4;
  tiny_trainer trainer(options);
  backend::tensor batch;
  backend::resize(batch, 4, 1, 7, 8);
  backend::fill(backend::data(batch), backend::size(batch), 0.5f);
  const auto failure = expect_error<shape_error>([&] { trainer.step(batch); });
  REQUIRE(failure);
  CHECK(failure->layer() == "sequential input");
  CHECK(failure->expected() == "(N >= 1, 1, 8, 8)");
  CHECK(contains(failure->actual(), "7"));
}

namespace {

// Trains `trainer` for `steps` steps on finite random batches of 4 samples,
// saves a checkpoint to `path`, and returns the checkpoint's bytes.
template <class Trainer>
bytes train_and_save(Trainer& trainer, int steps, const fs::path& path) {
  for (int i = 0; i < steps; ++i)
    trainer.step(random_batch(4, 100 + static_cast<std::uint64_t>(i)));
  trainer.save_checkpoint(path);
  return read_bytes(path);
}

// Checks that the checkpoint at `path` still has `expected` bytes and loads
// into a fresh trainer at iteration `iteration`, which then trains on.
template <class Trainer>
void check_last_good_checkpoint(const fs::path& path, const bytes& expected,
                                const trainer_options& options, std::int64_t iteration) {
  CHECK(read_bytes(path) == expected);
  Trainer resumed(options);
  resumed.load_checkpoint(path);
  CHECK(resumed.iteration() == iteration);
  const step_record record = resumed.step(random_batch(4, 200));
  CHECK(std::isfinite(record.discriminator_loss));
  CHECK(std::isfinite(record.generator_loss));
}

}  // namespace

TEST_CASE("step names the first layer whose output is not finite") {
  temporary_folder folder;
  const fs::path checkpoint = folder / "checkpoint.safetensors";
  trainer_options options;
  options.seed = 8;
  options.sample_count = 4;

  SUBCASE("infinity from a discriminator convolution") {
    plain_trainer trainer(options);
    const bytes saved = train_and_save(trainer, 3, checkpoint);
    // Positive inputs and layer 0 weights keep layer 0 finite and positive;
    // layer 2 multiplies its 64 positive inputs by FLT_MAX and overflows.
    set_parameter(trainer.discriminator(), "0.weight", 0.1f);
    set_parameter(trainer.discriminator(), "2.weight", std::numeric_limits<float>::max());
    backend::tensor ones = random_batch(4, 0);
    backend::fill(backend::data(ones), backend::size(ones), 1.0f);
    const auto failure = expect_error<numeric_error>([&] { trainer.step(ones); });
    REQUIRE(failure);
    CAPTURE(std::string(failure->what()));
    CHECK(failure->layer() == "discriminator layer 2 (conv2d)");
    CHECK(failure->tensor() == "output on the real batch");
    CHECK(failure->iteration() == 4);
    CHECK(failure->index() == 0);
    CHECK(contains(failure->what(), "non-finite value inf"));
    check_last_good_checkpoint<plain_trainer>(checkpoint, saved, options, 3);
  }

  SUBCASE("NaN weights in the generator's last convolution") {
    tiny_trainer trainer(options);
    const bytes saved = train_and_save(trainer, 2, checkpoint);
    set_parameter(trainer.generator(), "3.weight", std::numeric_limits<float>::quiet_NaN());
    const auto failure = expect_error<numeric_error>([&] { trainer.step(random_batch(4, 9)); });
    REQUIRE(failure);
    CAPTURE(std::string(failure->what()));
    // Layers 0 to 2 stay finite; the tanh at layer 4 passes the NaN on.
    CHECK(failure->layer() == "generator layer 3 (conv_transpose2d)");
    CHECK(failure->tensor() == "output on the noise batch");
    CHECK(failure->iteration() == 3);
    CHECK(contains(failure->what(), "non-finite value nan"));
    check_last_good_checkpoint<tiny_trainer>(checkpoint, saved, options, 2);
  }
}

TEST_CASE("step names the first parameter whose gradient is not finite") {
  temporary_folder folder;
  const fs::path checkpoint = folder / "checkpoint.safetensors";
  trainer_options options;
  options.seed = 9;
  options.sample_count = 4;
  plain_trainer trainer(options);
  const bytes saved = train_and_save(trainer, 4, checkpoint);

  // Every activation stays finite: layer 0 outputs about 1.6e30 on an input
  // of ones, layer 2 scales that down to about 100, and layer 4 gives logits
  // near -3e13. The real term's gradient at the logits is then about -1/4
  // per sample, so layer 2's weight gradient, input times output gradient,
  // is 1.6e30 * 1e10 / 4 per term and overflows float. Layer 0's gradient
  // passes through the 1e-30 weights of layer 2 and stays finite.
  set_parameter(trainer.discriminator(), "0.weight", 1e29f);
  set_parameter(trainer.discriminator(), "2.weight", 1e-30f);
  set_parameter(trainer.discriminator(), "4.weight", -1e10f);
  backend::tensor ones = random_batch(4, 0);
  backend::fill(backend::data(ones), backend::size(ones), 1.0f);
  const auto failure = expect_error<numeric_error>([&] { trainer.step(ones); });
  REQUIRE(failure);
  CAPTURE(std::string(failure->what()));
  CHECK(failure->layer() == "discriminator parameter 2.weight");
  CHECK(failure->tensor() == "gradient");
  CHECK(failure->iteration() == 5);
  CHECK(trainer.discriminator_optimizer().step_count() == 4);
  check_last_good_checkpoint<plain_trainer>(checkpoint, saved, options, 4);
}
