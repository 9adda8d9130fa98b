// The layers of the FID InceptionV3 (pooling, conv2d_rect, resize_bilinear,
// named, chain, concat_branches, and the BasicConv2d built from them), in
// double precision against central finite differences and against PyTorch.
// The fixtures in tests/fixtures/inception_layers come from
// tests/fixtures/make_fixtures.py (torch 1.13), in the format that
// test_layers_fixtures.cpp describes; every tensor is compared as
// max|a - b| / max|b|.

#include <doctest/doctest.h>

#include <algorithm>    // std::max
#include <cmath>        // std::abs
#include <cstddef>      // std::size_t
#include <cstdint>      // std::int64_t
#include <filesystem>   // std::filesystem::path
#include <set>          // std::set
#include <span>         // std::span
#include <string>       // std::string
#include <type_traits>  // std::is_same_v
#include <vector>       // std::vector

#include "advgan/backend/cpu.hpp"
#include "advgan/compose/sequential.hpp"
#include "advgan/io/safetensors.hpp"
#include "advgan/layers.hpp"
#include "advgan/metrics/inception.hpp"
#include "gradient_check.hpp"
#include "temporary_folder.hpp"

using namespace advgan;
using advgan::testing::check_gradients;
using advgan::testing::random_tensor;
using advgan::testing::temporary_folder;

namespace {

const std::filesystem::path fixture_dir =
    std::filesystem::path(ADVGAN_FIXTURE_DIR) / "inception_layers";

template <class Scalar>
constexpr double tolerance = std::is_same_v<Scalar, float> ? 1e-5 : 1e-10;

template <class Spec>
void check_spec(std::size_t batch, bool training = true) {
  model<Spec, cpu<double>> m(11);
  using in = typename Spec::input_shape;
  check_gradients(m, random_tensor(batch, in::channels, in::height, in::width, 3 + batch),
                  training);
}

/// The branches of the "concat_branches" fixture (class Branches in
/// make_fixtures.py).
using four_branches = concat_branches<
    named<"a", conv2d<2, 1>>,
    chain<named<"b1", conv2d_rect<3, size2d<1, 3>, size2d<1, 1>, size2d<0, 1>, false>>,
          named<"b2", batch_norm>, relu>,
    chain<avg_pool2d<3, 1, 1, false>, named<"c", conv2d<2, 1, 1, 0, false>>>, max_pool2d<3, 1, 1>>;

template <class... Functions>
struct overloaded : Functions... {
  using Functions::operator()...;
};
template <class... Functions>
overloaded(Functions...) -> overloaded<Functions...>;

template <class Scalar>
double relative_error(const Scalar* computed, const Scalar* reference, std::size_t count) {
  double difference = 0;
  double scale = 0;
  for (std::size_t i = 0; i < count; ++i) {
    difference = std::max(difference, std::abs(static_cast<double>(computed[i]) - reference[i]));
    scale = std::max(scale, std::abs(static_cast<double>(reference[i])));
  }
  return scale == 0 ? difference : difference / scale;
}

/// Loads the fixture's state into a model of Spec, runs one forward and
/// backward pass, and compares every result with PyTorch's.
template <class Spec, class Scalar>
void check_fixture(const std::string& case_name, const std::string& mode) {
  using backend = cpu<Scalar>;
  using tensor = typename backend::tensor;
  const std::string dtype = std::is_same_v<Scalar, float> ? "f32" : "f64";
  const auto path = fixture_dir / (case_name + "_" + dtype + "_" + mode + ".safetensors");
  INFO("fixture " << path.string());
  REQUIRE(std::filesystem::exists(path));
  const io::safetensors file = io::safetensors::load(path);
  CHECK(file.metadata().at("case") == case_name);

  auto read = [&](const std::string& name, const std::vector<std::size_t>& shape, Scalar* out) {
    INFO(name);
    REQUIRE(file.contains(name));
    std::size_t count = 1;
    for (std::size_t extent : shape) count *= extent;
    file.read_into(name, shape, std::span<Scalar>(out, count));
  };
  auto report = [&](const std::string& name, double error) {
    INFO(name << ": max|a - b| / max|b| = " << error << ", bound " << tolerance<Scalar>);
    CHECK(error < tolerance<Scalar>);
  };
  auto compare = [&](const std::string& name, const Scalar* computed, std::size_t count) {
    REQUIRE(file.contains(name));
    const std::vector<Scalar> reference = file.at(name).template to<Scalar>();
    REQUIRE(reference.size() == count);
    report(name, relative_error(computed, reference.data(), count));
  };

  model<Spec, backend> m(0);
  std::set<std::string> names;
  m.visit_parameters(
      [&](const std::string& key, Scalar* value, Scalar*, const parameter_spec& spec) {
        names.insert(key);
        read("param." + key, spec.shape(), value);
      });
  m.visit_buffers(overloaded{[&](const std::string& key, Scalar* data, const parameter_spec& spec) {
                               names.insert(key);
                               read("param." + key, spec.shape(), data);
                             },
                             [&](const std::string& key, std::int64_t& counter) {
                               names.insert(key);
                               counter = file.at("param." + key).template to<std::int64_t>()[0];
                             }});
  std::set<std::string> file_names;
  for (const auto& name : file.names())
    if (name.starts_with("param.")) file_names.insert(name.substr(6));
  CHECK(names == file_names);

  using in = typename Spec::input_shape;
  const auto& input_shape = file.at("input").shape;
  REQUIRE(input_shape.size() == 4);
  tensor x;
  backend::resize(x, input_shape[0], in::channels, in::height, in::width);
  read("input", input_shape, x.data());
  m.train(mode == "train");
  const tensor& y = m.forward(x);
  compare("output", y.data(), y.size());

  tensor dy;
  backend::resize(dy, backend::shape(y));
  read("dy", file.at("dy").shape, dy.data());
  m.zero_grad();
  tensor dx;
  m.backward(dy, &dx);
  compare("input_grad", dx.data(), dx.size());
  m.visit_parameters(
      [&](const std::string& key, Scalar*, Scalar* gradient, const parameter_spec& spec) {
        compare("grad." + key, gradient, spec.size());
      });
  m.visit_buffers(overloaded{[&](const std::string& key, Scalar* data, const parameter_spec& spec) {
                               compare("after." + key, data, spec.size());
                             },
                             [&](const std::string& key, std::int64_t& counter) {
                               INFO("after." << key);
                               CHECK(counter ==
                                     file.at("after." + key).template to<std::int64_t>()[0]);
                             }});
}

template <class Spec>
void check_case(const std::string& case_name, bool with_training = false) {
  for (const std::string mode : {"eval", "train"}) {
    if (mode == "train" && !with_training) continue;
    check_fixture<Spec, float>(case_name, mode);
    check_fixture<Spec, double>(case_name, mode);
  }
}

}  // namespace

TEST_CASE("pooling gradients") {
  check_spec<sequential<input<2, 7, 9>, max_pool2d<3, 2>>>(3);
  check_spec<sequential<input<2, 5, 6>, max_pool2d<3, 1, 1>>>(1);
  check_spec<sequential<input<1, 4, 6>, max_pool2d<2>>>(3);
  check_spec<sequential<input<2, 5, 6>, avg_pool2d<3, 1, 1, false>>>(3);
  check_spec<sequential<input<2, 7, 6>, avg_pool2d<3, 2, 1, true>>>(1);
  check_spec<sequential<input<1, 4, 6>, avg_pool2d<2>>>(3);
  check_spec<sequential<input<3, 4, 5>, global_avg_pool2d>>(3);
}

TEST_CASE("conv2d_rect gradients") {
  check_spec<sequential<input<2, 5, 6>, conv2d_rect<3, size2d<1, 3>, size2d<1, 1>, size2d<0, 1>>>>(
      3);
  check_spec<
      sequential<input<3, 7, 4>, conv2d_rect<2, size2d<3, 1>, size2d<2, 1>, size2d<1, 0>, false>>>(
      1);
  check_spec<sequential<input<2, 6, 8>, conv2d_rect<2, size2d<2, 3>, size2d<2, 3>, size2d<1, 1>>>>(
      3);
}

TEST_CASE("resize_bilinear gradients") {
  check_spec<sequential<input<2, 4, 5>, resize_bilinear<9, 11>>>(3);
  check_spec<sequential<input<2, 9, 7>, resize_bilinear<4, 5>>>(1);
  check_spec<sequential<input<1, 1, 3>, resize_bilinear<2, 7>>>(3);
}

TEST_CASE("composite layer gradients") {
  check_spec<sequential<input<3, 6, 5>, four_branches>>(3, true);
  check_spec<sequential<input<3, 6, 5>, four_branches>>(1, false);
  using nested =
      chain<named<"x", conv2d<4, 1>>,
            concat_branches<named<"p", conv2d_rect<2, size2d<1, 3>, size2d<1, 1>, size2d<0, 1>>>,
                            named<"q", conv2d_rect<2, size2d<3, 1>, size2d<1, 1>, size2d<1, 0>>>>>;
  check_spec<sequential<input<2, 4, 5>, nested, relu>>(3);
  check_spec<sequential<input<3, 5, 4>, inception::conv<"unit", 4, 3, 1, 1>>>(3, true);
  check_spec<sequential<input<3, 5, 4>, inception::conv<"unit", 4, 3, 1, 1>>>(1, false);
}

TEST_CASE("resize_bilinear keeps a same-size image") {
  const auto x = random_tensor(2, 3, 5, 4, 1);
  cpu<double>::tensor y;
  cpu<double>::resize(y, 2, 3, 5, 4);
  detail::resize_bilinear_planes(x.data(), 6, 5, 4, 5, 4, y.data());
  CHECK(relative_error(y.data(), x.data(), x.size()) == 0);
}

TEST_CASE("composite layer names") {
  using layer = named<"Mixed", four_branches>::bind<shape<3, 6, 5>, cpu<float>>;
  std::vector<std::string> names;
  for (const auto& spec : layer::parameters) names.emplace_back(spec.name);
  const std::vector<std::string> expected = {"Mixed.a.weight",  "Mixed.a.bias",  "Mixed.b1.weight",
                                             "Mixed.b2.weight", "Mixed.b2.bias", "Mixed.c.weight"};
  CHECK(names == expected);

  layer bound;
  std::vector<std::string> buffers;
  bound.visit_buffers([&](const char* name, auto&&...) { buffers.emplace_back(name); });
  const std::vector<std::string> expected_buffers = {
      "Mixed.b2.running_mean", "Mixed.b2.running_var", "Mixed.b2.num_batches_tracked"};
  CHECK(buffers == expected_buffers);
}

TEST_CASE("pooling against pytorch") {
  check_case<sequential<input<2, 7, 9>, max_pool2d<3, 2>>>("max_pool2d_k3_s2");
  check_case<sequential<input<2, 5, 6>, max_pool2d<3, 1, 1>>>("max_pool2d_k3_s1_p1");
  check_case<sequential<input<2, 5, 6>, avg_pool2d<3, 1, 1, false>>>(
      "avg_pool2d_k3_s1_p1_exclude_pad");
  check_case<sequential<input<2, 7, 6>, avg_pool2d<3, 2, 1>>>("avg_pool2d_k3_s2_p1");
  check_case<sequential<input<4, 5, 3>, global_avg_pool2d>>("adaptive_avg_pool2d");
}

TEST_CASE("conv2d_rect against pytorch") {
  check_case<
      sequential<input<3, 5, 9>, conv2d_rect<4, size2d<1, 7>, size2d<1, 1>, size2d<0, 3>, false>>>(
      "conv2d_k1x7_p0x3_no_bias");
  check_case<sequential<input<2, 7, 4>, conv2d_rect<3, size2d<3, 1>, size2d<2, 1>, size2d<1, 0>>>>(
      "conv2d_k3x1_s2x1_p1x0");
}

TEST_CASE("resize_bilinear against pytorch") {
  check_case<sequential<input<2, 4, 5>, resize_bilinear<9, 11>>>("resize_bilinear_up");
  check_case<sequential<input<2, 9, 7>, resize_bilinear<4, 5>>>("resize_bilinear_down");
}

TEST_CASE("composite layers against pytorch") {
  check_case<sequential<input<3, 6, 5>, four_branches>>("concat_branches", true);
  check_case<sequential<input<3, 4, 5>,
                        inception::basic_conv2d<4, size2d<1, 3>, size2d<1, 1>, size2d<0, 1>>>>(
      "basic_conv2d_k1x3", true);
}

TEST_CASE("fid inception names match torchvision") {
  fid_inception_v3<cpu<float>> network;
  std::set<std::string> names;
  network.visit_parameters(
      [&](const std::string& name, float*, float*, const parameter_spec&) { names.insert(name); });
  network.visit_buffers([&](const std::string& name, auto&&...) { names.insert(name); });
  // 94 BasicConv2d units, each with conv.weight, bn.weight, bn.bias and three buffers.
  CHECK(names.size() == 94 * 6);
  CHECK(fid_inception_v3<cpu<float>>::parameter_count == 21785568);
  for (const std::string name :
       {"Conv2d_1a_3x3.conv.weight", "Conv2d_4a_3x3.bn.running_var",
        "Mixed_5b.branch5x5_2.conv.weight", "Mixed_6e.branch7x7dbl_5.bn.bias",
        "Mixed_7c.branch3x3dbl_3b.conv.weight", "Mixed_7c.branch_pool.bn.num_batches_tracked"}) {
    INFO(name);
    CHECK(names.count(name) == 1);
  }
}

TEST_CASE("inception_features rejects bad weights files") {
  const temporary_folder folder;
  const auto missing = folder / "no_such_inception.safetensors";
  try {
    inception_features extractor(missing);
    FAIL("expected file_error");
  } catch (const file_error& e) {
    CHECK(std::string(e.what()).find(missing.string()) != std::string::npos);
  }

  // A file with one tensor of the wrong shape and none of the others.
  const auto wrong = folder / "wrong_inception.safetensors";
  io::safetensors file;
  const std::vector<float> values(6, 0.0f);
  file.add<float>("Conv2d_1a_3x3.conv.weight", {2, 3}, std::span<const float>(values));
  file.save(wrong);
  try {
    inception_features extractor(wrong);
    FAIL("expected file_error");
  } catch (const file_error& e) {
    const std::string message = e.what();
    CHECK(message.find(wrong.string()) != std::string::npos);
    CHECK(message.find("Conv2d_1a_3x3.conv.weight") != std::string::npos);
  }
}

namespace {

/// Writes a weights file with the network's own random weights into `folder`
/// and returns its path.
std::filesystem::path random_inception_weights(const temporary_folder& folder) {
  const auto path = folder / "random_inception.safetensors";
  fid_inception_v3<cpu<float>> network(5);
  save_model(path, network);
  return path;
}

}  // namespace

TEST_CASE("inception_features input forms agree") {
  const temporary_folder folder;
  inception_features extractor(random_inception_weights(folder), 2);

  // Two 6 x 5 grayscale images as bytes, as floats, and as three equal channels.
  std::vector<std::uint8_t> bytes(2 * 6 * 5);
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::uint8_t>(i * 37 % 256);
  std::vector<float> gray(bytes.size());
  for (std::size_t i = 0; i < bytes.size(); ++i)
    gray[i] = static_cast<float>(bytes[i]) / 127.5f - 1;
  std::vector<float> rgb;
  for (std::size_t n = 0; n < 2; ++n)
    for (std::size_t c = 0; c < 3; ++c)
      rgb.insert(rgb.end(), gray.begin() + static_cast<std::ptrdiff_t>(n * 30),
                 gray.begin() + static_cast<std::ptrdiff_t>((n + 1) * 30));

  const feature_matrix from_bytes = extractor.extract(std::span<const std::uint8_t>(bytes), 6, 5);
  const feature_matrix from_gray = extractor.extract(std::span<const float>(gray), 1, 6, 5);
  const feature_matrix from_rgb = extractor.extract(std::span<const float>(rgb), 3, 6, 5);
  REQUIRE(from_bytes.rows == 2);
  REQUIRE(from_bytes.cols == 2048);
  CHECK(from_gray.values == from_bytes.values);
  CHECK(from_rgb.values == from_gray.values);
  // The two images differ, and so do their features.
  CHECK(relative_error(from_gray.row_data(0), from_gray.row_data(1), 2048) > 1e-6);
}

TEST_CASE("inception_features rejects bad images") {
  const temporary_folder folder;
  inception_features extractor(random_inception_weights(folder));
  std::vector<float> images(2 * 2 * 4 * 4, 0.0f);
  CHECK_THROWS_AS(extractor.extract(std::span<const float>(images), 2, 4, 4), argument_error);
  CHECK_THROWS_AS(extractor.extract(std::span<const float>(images), 3, 4, 4), argument_error);
  images[40] = std::nanf("");
  try {
    extractor.extract(std::span<const float>(images), 1, 4, 4);
    FAIL("expected argument_error");
  } catch (const argument_error& e) {
    CHECK(std::string(e.what()).find("pixel 8 of image 2") != std::string::npos);
  }
  CHECK_THROWS_AS(extractor.extract(std::span<const std::uint8_t>(), 4, 4), argument_error);
}
