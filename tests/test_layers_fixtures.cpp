// Every layer and the reference DCGAN pair against PyTorch. The fixtures in
// tests/fixtures/layers come from tests/fixtures/make_fixtures.py (torch 1.13):
// each contains a torch.nn.Sequential's parameters and buffers, an input, an
// upstream gradient dy, and what PyTorch computed from them in one forward and
// backward pass. Here the same advgan model loads those parameters and buffers,
// runs the same pass, and every tensor is compared as max|a - b| / max|b|.
// doctest's --success (-s) prints the measured error of every tensor.

#include <doctest/doctest.h>

#include <algorithm>    // std::max
#include <cmath>        // std::abs
#include <cstddef>      // std::size_t
#include <cstdint>      // std::int64_t
#include <filesystem>   // std::filesystem::path, std::filesystem::directory_iterator
#include <map>          // std::map
#include <ratio>        // std::ratio
#include <set>          // std::set
#include <span>         // std::span
#include <sstream>      // std::ostringstream
#include <string>       // std::string
#include <type_traits>  // std::is_same_v
#include <vector>       // std::vector

#include "advgan/advgan.hpp"
#include "advgan/io/safetensors.hpp"

using namespace advgan;

namespace {

const std::filesystem::path fixture_dir = std::filesystem::path(ADVGAN_FIXTURE_DIR) / "layers";

/// Bound on max|a - b| / max|b| for each scalar type.
template <class Scalar>
constexpr double tolerance = std::is_same_v<Scalar, float> ? 1e-5 : 1e-10;

/// A fixture variant: dtype "f32" or "f64", mode "train" or "eval".
struct variant {
  std::string dtype;
  std::string mode;
};

const std::vector<variant> all_variants = {
    {"f32", "train"}, {"f32", "eval"}, {"f64", "train"}, {"f64", "eval"}};
const std::vector<variant> eval_only = {{"f32", "eval"}, {"f64", "eval"}};
const std::vector<variant> float_train_only = {{"f32", "train"}};

/// Every case that make_fixtures.py writes and this file checks.
const std::set<std::string> fixture_cases = {"dense_bias",
                                             "dense_no_bias",
                                             "conv2d_k3_s2_p1",
                                             "conv2d_k4_s1_p2_no_bias",
                                             "conv_transpose2d_k4_s2_p1",
                                             "conv_transpose2d_k3_s2_p1_op1_no_bias",
                                             "conv_transpose2d_k4_s1_p0_from_1x1",
                                             "batch_norm_2d",
                                             "batch_norm_1d",
                                             "layer_norm_2d",
                                             "layer_norm_1d",
                                             "layer_norm_no_affine",
                                             "instance_norm",
                                             "instance_norm_affine",
                                             "relu",
                                             "leaky_relu",
                                             "tanh",
                                             "sigmoid",
                                             "flatten_dense",
                                             "reshape_conv2d",
                                             "upsample_nearest2",
                                             "dropout",
                                             "dcgan_generator",
                                             "dcgan_discriminator",
                                             "dcgan_generator_narrow",
                                             "dcgan_discriminator_narrow"};

template <class... Functions>
struct overloaded : Functions... {
  using Functions::operator()...;
};
template <class... Functions>
overloaded(Functions...) -> overloaded<Functions...>;

/// Returns max|computed - reference| / max|reference|, or the plain maximum
/// difference when the reference is all zeros.
template <class Scalar>
double relative_error(const Scalar* computed, const Scalar* reference, std::size_t count) {
  double difference = 0;
  double scale = 0;
  for (std::size_t i = 0; i < count; ++i) {
    const double a = computed[i];
    const double b = reference[i];
    difference = std::max(difference, std::abs(a - b));
    scale = std::max(scale, std::abs(b));
  }
  return scale == 0 ? difference : difference / scale;
}

/// Returns a PyTorch shape padded with trailing 1s to rank 4: advgan stores a
/// batch of feature vectors (N, F) as (N, F, 1, 1).
extents padded_extents(const std::vector<std::size_t>& shape) {
  REQUIRE(shape.size() >= 1);
  REQUIRE(shape.size() <= 4);
  extents padded{1, 1, 1, 1};
  for (std::size_t i = 0; i < shape.size(); ++i) padded[i] = shape[i];
  return padded;
}

std::string shape_text(const std::vector<std::size_t>& shape) {
  std::ostringstream text;
  text << "[";
  for (std::size_t i = 0; i < shape.size(); ++i) text << (i > 0 ? ", " : "") << shape[i];
  text << "]";
  return text.str();
}

std::set<std::string> names_with_prefix(const io::safetensors& file, const std::string& prefix) {
  std::set<std::string> names;
  for (const auto& name : file.names())
    if (name.starts_with(prefix)) names.insert(name.substr(prefix.size()));
  return names;
}

/// One fixture file and the advgan model that reproduces it.
template <class Spec, class Scalar>
class fixture_check {
 public:
  using backend = cpu<Scalar>;
  using tensor = typename backend::tensor;

  explicit fixture_check(const std::filesystem::path& path)
      : file_(io::safetensors::load(path)), model_(0) {}

  void check_names() {
    std::set<std::string> parameters;
    std::set<std::string> buffers;
    model_.visit_parameters([&](const std::string& key, Scalar*, Scalar*, const parameter_spec&) {
      parameters.insert(key);
    });
    model_.visit_buffers([&](const std::string& key, auto&&...) { buffers.insert(key); });
    std::set<std::string> state = parameters;
    state.insert(buffers.begin(), buffers.end());

    CHECK(names_with_prefix(file_, "param.") == state);
    CHECK(names_with_prefix(file_, "grad.") == parameters);
    CHECK(names_with_prefix(file_, "after.") == buffers);
  }

  /// Loads "param.<key>" into every parameter and buffer.
  void load_state() {
    model_.visit_parameters(
        [&](const std::string& key, Scalar* value, Scalar*, const parameter_spec& spec) {
          read("param." + key, spec.shape(), value);
        });
    model_.visit_buffers(
        overloaded{[&](const std::string& key, Scalar* data, const parameter_spec& spec) {
                     read("param." + key, spec.shape(), data);
                   },
                   [&](const std::string& key, std::int64_t& counter) {
                     counter = read_counter("param." + key);
                   }});
  }

  /// Runs forward and backward in the fixture's mode and compares every result.
  void run_and_compare(bool training) {
    const tensor x = read_batch("input", model_input_extents());
    model_.train(training);
    philox rng(1);
    const tensor& y = model_.forward(x, &rng);
    compare("output", y);

    const tensor dy = read_batch("dy", backend::shape(y));
    model_.zero_grad();
    tensor dx;
    model_.backward(dy, &dx);
    compare("input_grad", dx);

    model_.visit_parameters(
        [&](const std::string& key, Scalar*, Scalar* gradient, const parameter_spec& spec) {
          compare("grad." + key, spec.shape(), gradient);
        });
    model_.visit_buffers(
        overloaded{[&](const std::string& key, Scalar* data, const parameter_spec& spec) {
                     compare("after." + key, spec.shape(), data);
                   },
                   [&](const std::string& key, std::int64_t& counter) {
                     INFO("after." << key);
                     CHECK(counter == read_counter("after." + key));
                   }});
  }

  const std::map<std::string, std::string>& metadata() const { return file_.metadata(); }

 private:
  extents model_input_extents() const {
    using in = typename Spec::input_shape;
    const auto& shape = file_.at("input").shape;
    REQUIRE(!shape.empty());
    return {shape[0], in::channels, in::height, in::width};
  }

  void expect_dtype(const std::string& name) const {
    INFO(name << " has dtype " << io::dtype_name(file_.at(name).type));
    REQUIRE(file_.at(name).type == io::dtype_of<Scalar>());
  }

  void read(const std::string& name, const std::vector<std::size_t>& shape, Scalar* out) const {
    expect_dtype(name);
    std::size_t count = 1;
    for (std::size_t extent : shape) count *= extent;
    file_.read_into(name, shape, std::span<Scalar>(out, count));
  }

  std::int64_t read_counter(const std::string& name) const {
    const auto& data = file_.at(name);
    INFO(name << " has dtype " << io::dtype_name(data.type) << " and rank " << data.shape.size());
    REQUIRE(data.type == io::dtype::i64);
    REQUIRE(data.shape.empty());
    return data.to<std::int64_t>()[0];
  }

  /// Reads a batch tensor whose PyTorch shape, padded to rank 4, must be `expected`.
  tensor read_batch(const std::string& name, const extents& expected) const {
    const auto& shape = file_.at(name).shape;
    INFO(name << ": file shape " << shape_text(shape) << ", advgan shape " << to_string(expected));
    REQUIRE(padded_extents(shape) == expected);
    tensor t;
    backend::resize(t, expected);
    read(name, shape, backend::data(t));
    return t;
  }

  void compare(const std::string& name, const tensor& computed) const {
    const tensor reference = read_batch(name, backend::shape(computed));
    report(name, relative_error(backend::data(computed), backend::data(reference),
                                backend::size(computed)));
  }

  void compare(const std::string& name, const std::vector<std::size_t>& shape,
               const Scalar* computed) const {
    std::size_t count = 1;
    for (std::size_t extent : shape) count *= extent;
    std::vector<Scalar> reference(count);
    read(name, shape, reference.data());
    report(name, relative_error(computed, reference.data(), count));
  }

  static void report(const std::string& name, double error) {
    INFO(name << ": max|a - b| / max|b| = " << error << ", bound " << tolerance<Scalar>);
    CHECK(error < tolerance<Scalar>);
  }

  io::safetensors file_;
  model<Spec, backend> model_;
};

template <class Spec, class Scalar>
void check_file(const std::string& case_name, const variant& v) {
  const std::string stem = case_name + "_" + v.dtype + "_" + v.mode;
  const auto path = fixture_dir / (stem + ".safetensors");
  INFO("fixture " << path.string());
  REQUIRE(std::filesystem::exists(path));

  fixture_check<Spec, Scalar> check(path);
  const auto& metadata = check.metadata();
  CHECK(metadata.at("case") == case_name);
  CHECK(metadata.at("dtype") == v.dtype);
  CHECK(metadata.at("mode") == v.mode);

  check.check_names();
  check.load_state();
  check.run_and_compare(v.mode == "train");
}

/// Checks the advgan model Spec against each fixture variant of one case.
template <class Spec>
void check_case(const std::string& case_name, const std::vector<variant>& variants = all_variants) {
  REQUIRE(fixture_cases.count(case_name) == 1);
  for (const auto& v : variants) {
    REQUIRE((v.dtype == "f32" || v.dtype == "f64"));
    REQUIRE((v.mode == "train" || v.mode == "eval"));
    if (v.dtype == "f32")
      check_file<Spec, float>(case_name, v);
    else
      check_file<Spec, double>(case_name, v);
  }
}

template <std::size_t W1, std::size_t W2, std::size_t W3>
using dcgan_generator =
    sequential<input<100, 1, 1>, conv_transpose2d<W1, 4, 1, 0, 0, false>, batch_norm, relu,
               conv_transpose2d<W2, 4, 2, 1, 0, false>, batch_norm, relu,
               conv_transpose2d<W3, 4, 2, 1, 0, false>, batch_norm, relu,
               conv_transpose2d<1, 4, 2, 1, 0, false>, tanh_activation>;

template <std::size_t W1, std::size_t W2, std::size_t W3>
using dcgan_discriminator =
    sequential<input<1, 32, 32>, conv2d<W1, 4, 2, 1, false>, leaky_relu<>,
               conv2d<W2, 4, 2, 1, false>, batch_norm, leaky_relu<>, conv2d<W3, 4, 2, 1, false>,
               batch_norm, leaky_relu<>, conv2d<1, 4, 1, 0, false>, flatten>;

}  // namespace

TEST_CASE("fixture files all checked") {
  REQUIRE(std::filesystem::is_directory(fixture_dir));
  std::size_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(fixture_dir)) {
    if (entry.path().extension() != ".safetensors") continue;
    ++files;
    const std::string stem = entry.path().stem().string();
    INFO("fixture " << stem);
    // The stem is <case>_<dtype>_<mode>; the case name itself contains underscores.
    const auto mode_at = stem.rfind('_');
    REQUIRE(mode_at != std::string::npos);
    const auto dtype_at = stem.rfind('_', mode_at - 1);
    REQUIRE(dtype_at != std::string::npos);
    CHECK(fixture_cases.count(stem.substr(0, dtype_at)) == 1);
  }
  CHECK(files > 0);
}

TEST_CASE("dense against pytorch") {
  check_case<sequential<input<7>, dense<5>>>("dense_bias");
  check_case<sequential<input<6>, dense<4, false>>>("dense_no_bias");
}

TEST_CASE("conv2d against pytorch") {
  check_case<sequential<input<2, 7, 5>, conv2d<3, 3, 2, 1>>>("conv2d_k3_s2_p1");
  check_case<sequential<input<2, 5, 7>, conv2d<3, 4, 1, 2, false>>>("conv2d_k4_s1_p2_no_bias");
}

TEST_CASE("conv_transpose2d against pytorch") {
  check_case<sequential<input<3, 3, 5>, conv_transpose2d<2, 4, 2, 1>>>("conv_transpose2d_k4_s2_p1");
  check_case<sequential<input<2, 5, 4>, conv_transpose2d<3, 3, 2, 1, 1, false>>>(
      "conv_transpose2d_k3_s2_p1_op1_no_bias");
  check_case<sequential<input<5, 1, 1>, conv_transpose2d<3, 4, 1, 0>>>(
      "conv_transpose2d_k4_s1_p0_from_1x1");
}

TEST_CASE("batch_norm against pytorch") {
  check_case<sequential<input<4, 3, 5>, batch_norm>>("batch_norm_2d");
  check_case<sequential<input<6>, batch_norm>>("batch_norm_1d");
}

TEST_CASE("layer_norm against pytorch") {
  check_case<sequential<input<3, 4, 5>, layer_norm>>("layer_norm_2d");
  check_case<sequential<input<6>, layer_norm>>("layer_norm_1d");
  check_case<sequential<input<2, 3, 3>, layer_norm_with<false>>>("layer_norm_no_affine");
}

TEST_CASE("instance_norm against pytorch") {
  check_case<sequential<input<4, 3, 5>, instance_norm>>("instance_norm");
  check_case<sequential<input<4, 3, 5>, instance_norm_with<true>>>("instance_norm_affine");
}

TEST_CASE("activations against pytorch") {
  check_case<sequential<input<2, 5, 3>, relu>>("relu");
  check_case<sequential<input<2, 5, 3>, leaky_relu<std::ratio<1, 5>>>>("leaky_relu");
  check_case<sequential<input<2, 5, 3>, tanh_activation>>("tanh");
  check_case<sequential<input<2, 5, 3>, sigmoid>>("sigmoid");
}

TEST_CASE("shape layers against pytorch") {
  check_case<sequential<input<2, 3, 5>, flatten, dense<4>>>("flatten_dense");
  check_case<sequential<input<30>, reshape<2, 5, 3>, conv2d<3, 3, 1, 1>>>("reshape_conv2d");
  check_case<sequential<input<2, 3, 5>, upsample_nearest<2>>>("upsample_nearest2");
}

TEST_CASE("dropout in eval mode against pytorch") {
  check_case<sequential<input<2, 5, 3>, dropout<std::ratio<1, 2>>>>("dropout", eval_only);
}

TEST_CASE("dcgan generator against pytorch") {
  check_case<dcgan_generator<512, 256, 128>>("dcgan_generator", float_train_only);
  check_case<dcgan_generator<64, 32, 16>>("dcgan_generator_narrow");
}

TEST_CASE("dcgan discriminator against pytorch") {
  check_case<dcgan_discriminator<64, 128, 256>>("dcgan_discriminator", float_train_only);
  check_case<dcgan_discriminator<16, 32, 64>>("dcgan_discriminator_narrow");
}
