// spectral_norm: the power iteration in training and evaluation mode, the
// first forward of a new layer, and saving and loading u and v. Gradients
// and the tangent pass are checked against central finite differences in
// evaluation mode, which keeps u and v fixed. Five training steps and an
// evaluation pass are checked against PyTorch, with fixtures from
// tests/fixtures/make_spectral_norm_fixtures.py.

#include <doctest/doctest.h>

#include <algorithm>    // std::max, std::copy
#include <cmath>        // std::abs, std::sqrt
#include <cstddef>      // std::size_t
#include <filesystem>   // std::filesystem::path, std::filesystem::directory_iterator
#include <set>          // std::set
#include <span>         // std::span
#include <string>       // std::string
#include <type_traits>  // std::is_same_v
#include <vector>       // std::vector

#include "advgan/advgan.hpp"
#include "advgan/io/safetensors.hpp"
#include "gradient_check.hpp"
#include "tangent_check.hpp"
#include "temporary_folder.hpp"

using namespace advgan;
using advgan::testing::check_gradients;
using advgan::testing::check_tangent;
using advgan::testing::cpu64;
using advgan::testing::random_tensor;
using advgan::testing::temporary_folder;
using advgan::testing::tensor64;

namespace {

/// Dense 2 -> 2 without bias under spectral norm.
using diagonal_spec = sequential<input<2>, spectral_norm<dense<2, false>>>;
using diagonal_model = model<diagonal_spec, cpu<double>>;

/// Sets W = [[3, 0], [0, 1]], whose largest singular value is 3.
void set_diagonal(diagonal_model& m) {
  const double w[] = {3, 0, 0, 1};
  std::copy(std::begin(w), std::end(w), m.parameters());
}

tensor64 ones_input() {
  tensor64 x;
  cpu64::resize(x, 1, 2, 1, 1);
  x.data()[0] = 1;
  x.data()[1] = 1;
  return x;
}

/// Returns a copy of the buffer `name` ("0.weight_u").
template <class Model>
std::vector<double> buffer(Model& m, const std::string& name) {
  std::vector<double> values;
  m.visit_buffers([&](const std::string& key, double* data, const parameter_spec& spec) {
    if (key == name) values.assign(data, data + spec.size());
  });
  REQUIRE(!values.empty());
  return values;
}

}  // namespace

TEST_CASE("spectral_norm first forward in eval mode is normalised") {
  diagonal_model fresh(7);
  set_diagonal(fresh);
  fresh.eval();
  const tensor64& y = fresh.forward(ones_input());
  // The unset v is set up by 15 power iterations from the initial u. For
  // seed 7 that u is about [0.066, 0.998], so one half iteration would give
  // sigma = |W^T u| = 1.017 and y[0] = 2.95; the 15 bring sigma to 3.
  CHECK(y.data()[0] <= 1.5);
  CHECK(std::abs(y.data()[0] - 1.0) < 1e-4);
  CHECK(std::abs(y.data()[1] - 1.0 / 3.0) < 1e-4);
  // Later evaluation passes leave u and v alone.
  const std::vector<double> after = buffer(fresh, "0.weight_u");
  const tensor64 again = fresh.forward(ones_input());
  CHECK(again.data()[0] == y.data()[0]);
  CHECK(buffer(fresh, "0.weight_u") == after);
}

TEST_CASE("spectral_norm converges to the largest singular value") {
  diagonal_model m(7);
  set_diagonal(m);
  m.train();
  for (int i = 0; i < 30; ++i) m.forward(ones_input());
  const tensor64& y = m.forward(ones_input());
  CHECK(std::abs(y.data()[0] - 1.0) < 1e-4);
  CHECK(std::abs(y.data()[1] - 1.0 / 3.0) < 1e-4);
  CHECK(std::abs(m.layer<0>().sigma() - 3.0) < 1e-4);
}

TEST_CASE("spectral_norm eval mode freezes u and v") {
  diagonal_model m(7);
  set_diagonal(m);
  for (int i = 0; i < 30; ++i) m.forward(ones_input());
  m.eval();
  const std::vector<double> u = buffer(m, "0.weight_u");
  const std::vector<double> v = buffer(m, "0.weight_v");
  const tensor64 first = m.forward(ones_input());
  const tensor64 second = m.forward(ones_input());
  CHECK(first.data()[0] == second.data()[0]);
  CHECK(first.data()[1] == second.data()[1]);
  CHECK(buffer(m, "0.weight_u") == u);
  CHECK(buffer(m, "0.weight_v") == v);

  SUBCASE("saved u and v reproduce the output after loading") {
    io::safetensors file;
    store_model(file, "", m);
    CHECK(file.at("0.weight_u").shape == std::vector<std::size_t>{2});
    CHECK(file.at("0.weight_v").shape == std::vector<std::size_t>{2});
    CHECK(file.at("0.weight_orig").shape == std::vector<std::size_t>{2, 2});
    const temporary_folder folder;
    const auto path = folder / "spectral_norm.safetensors";
    file.save(path);

    diagonal_model loaded(12345);
    load_model(io::safetensors::load(path), "", loaded);
    loaded.eval();
    const tensor64& y = loaded.forward(ones_input());
    CHECK(y.data()[0] == first.data()[0]);
    CHECK(y.data()[1] == first.data()[1]);
    CHECK(buffer(loaded, "0.weight_u") == u);
  }
}

TEST_CASE("spectral_norm parameter and buffer names") {
  model<sequential<input<2, 5, 5>, spectral_norm<conv2d<3, 3, 2, 1>>, flatten,
                   spectral_norm<dense<4, false>>>,
        cpu<double>>
      m;
  std::vector<std::string> names;
  std::vector<std::vector<std::size_t>> shapes;
  m.visit_parameters([&](const std::string& name, double*, double*, const parameter_spec& spec) {
    names.push_back(name);
    shapes.push_back(spec.shape());
  });
  CHECK(names == std::vector<std::string>{"0.weight_orig", "0.bias", "2.weight_orig"});
  CHECK(shapes[0] == std::vector<std::size_t>{3, 2, 3, 3});
  CHECK(shapes[2] == std::vector<std::size_t>{4, 27});
  names.clear();
  shapes.clear();
  m.visit_buffers([&](const std::string& name, double*, const parameter_spec& spec) {
    names.push_back(name);
    shapes.push_back(spec.shape());
  });
  CHECK(names == std::vector<std::string>{"0.weight_u", "0.weight_v", "2.weight_u", "2.weight_v"});
  CHECK(shapes[1] == std::vector<std::size_t>{18});
  CHECK(shapes[3] == std::vector<std::size_t>{27});
  // A new u is a unit vector.
  const std::vector<double> u = buffer(m, "0.weight_u");
  double squares = 0;
  for (double value : u) squares += value * value;
  CHECK(squares == doctest::Approx(1.0).epsilon(1e-14));
}

TEST_CASE("spectral_norm of a zero weight is NaN as in PyTorch") {
  diagonal_model m(3);
  std::fill_n(m.parameters(), 4, 0.0);
  m.eval();
  const tensor64& y = m.forward(ones_input());
  // W = 0 gives v = 0 / max(0, eps) = 0, so sigma = 0 and 0 / 0 appears: as
  // in PyTorch the output is NaN, which the trainer reports as a numeric error.
  CHECK(std::isnan(y.data()[0]));
}

TEST_CASE("spectral_norm gradients and tangent with u fixed") {
  using critic =
      sequential<input<2, 5, 5>, spectral_norm<conv2d<3, 3, 2, 1>>, leaky_relu<>, flatten,
                 spectral_norm<dense<4>>, tanh_activation, spectral_norm<dense<1, false>>>;
  model<critic, cpu<double>> m(17);
  // A few power iterations first, so u and v are not the initial ones.
  for (int i = 0; i < 3; ++i) m.forward(random_tensor(3, 2, 5, 5, 30 + i));
  m.eval();
  const tensor64 x = random_tensor(3, 2, 5, 5, 40);
  check_gradients(m, x, false);
  check_tangent(m, x, 41);
}

// --- Against PyTorch --------------------------------------------------------

namespace {

const std::filesystem::path fixture_dir =
    std::filesystem::path(ADVGAN_FIXTURE_DIR) / "spectral_norm";

const std::set<std::string> fixture_cases = {"dense_bias", "dense_no_bias", "conv2d_k3_s2_p1",
                                             "critic"};

template <class Scalar>
constexpr double tolerance = std::is_same_v<Scalar, float> ? 2e-5 : 1e-10;

template <class Scalar>
double relative_error(const Scalar* computed, const std::vector<Scalar>& reference) {
  double difference = 0;
  double scale = 0;
  for (std::size_t i = 0; i < reference.size(); ++i) {
    difference = std::max(difference, std::abs(double(computed[i]) - double(reference[i])));
    scale = std::max(scale, std::abs(double(reference[i])));
  }
  return scale == 0 ? difference : difference / scale;
}

template <class Spec, class Scalar>
class spectral_norm_fixture {
 public:
  using backend = cpu<Scalar>;
  using tensor = typename backend::tensor;

  explicit spectral_norm_fixture(const std::filesystem::path& path)
      : file_(io::safetensors::load(path)), model_(99) {}

  void run() {
    model_.visit_parameters([&](const std::string& key, Scalar* value, Scalar*,
                                const parameter_spec& spec) { read("param." + key, spec, value); });
    model_.visit_buffers([&](const std::string& key, Scalar* data, const parameter_spec& spec) {
      read("param." + key, spec, data);
    });
    for (int step = 0; step < 5; ++step) run_step(detail::concat("step", step, "."));

    model_.eval();
    const tensor x = batch("eval.input");
    compare("eval.output", model_.forward(x));
    compare_buffers("eval.after.");
  }

 private:
  void run_step(const std::string& prefix) {
    INFO(prefix);
    model_.train();
    // The model keeps a pointer to its input until backward.
    const tensor x = batch(prefix + "input");
    compare(prefix + "output", model_.forward(x));
    model_.zero_grad();
    const tensor dy = batch(prefix + "dy", backend::shape(model_.output()));
    tensor dx;
    model_.backward(dy, &dx);
    compare(prefix + "input_grad", dx);
    model_.visit_parameters(
        [&](const std::string& key, Scalar*, Scalar* gradient, const parameter_spec& spec) {
          compare(prefix + "grad." + key, spec, gradient);
        });
    compare_buffers(prefix + "after.");
    // The same plain gradient step as the fixture script.
    for (std::size_t i = 0; i < decltype(model_)::parameter_count; ++i)
      model_.parameters()[i] -= static_cast<Scalar>(0.1) * model_.gradients()[i];
  }

  void compare_buffers(const std::string& prefix) {
    model_.visit_buffers([&](const std::string& key, Scalar* data, const parameter_spec& spec) {
      compare(prefix + key, spec, data);
    });
  }

  void read(const std::string& name, const parameter_spec& spec, Scalar* out) const {
    REQUIRE(file_.at(name).type == io::dtype_of<Scalar>());
    file_.read_into<Scalar>(name, spec.shape(), std::span<Scalar>(out, spec.size()));
  }

  /// Reads an input batch as (N, C, H, W) with (C, H, W) the model's input.
  tensor batch(const std::string& name) const {
    using in = typename Spec::input_shape;
    return batch(name, {file_.at(name).shape.at(0), in::channels, in::height, in::width});
  }

  tensor batch(const std::string& name, const extents& e) const {
    tensor t;
    backend::resize(t, e);
    file_.read_into<Scalar>(name, file_.at(name).shape,
                            std::span<Scalar>(backend::data(t), backend::size(t)));
    return t;
  }

  void compare(const std::string& name, const tensor& computed) const {
    const std::vector<Scalar> reference = file_.at(name).to<Scalar>();
    REQUIRE(reference.size() == backend::size(computed));
    report(name, relative_error(backend::data(computed), reference));
  }

  void compare(const std::string& name, const parameter_spec& spec, const Scalar* computed) const {
    std::vector<Scalar> reference(spec.size());
    file_.read_into<Scalar>(name, spec.shape(), reference);
    report(name, relative_error(computed, reference));
  }

  static void report(const std::string& name, double error) {
    INFO(name << ": max|a - b| / max|b| = " << error << ", bound " << tolerance<Scalar>);
    CHECK(error < tolerance<Scalar>);
  }

  io::safetensors file_;
  model<Spec, backend> model_;
};

template <class Spec>
void check_case(const std::string& name) {
  REQUIRE(fixture_cases.count(name) == 1);
  for (const std::string dtype : {"f32", "f64"}) {
    const auto path = fixture_dir / (name + "_" + dtype + ".safetensors");
    INFO("fixture " << path.string());
    REQUIRE(std::filesystem::exists(path));
    if (dtype == "f32")
      spectral_norm_fixture<Spec, float>(path).run();
    else
      spectral_norm_fixture<Spec, double>(path).run();
  }
}

}  // namespace

TEST_CASE("spectral_norm fixture files all checked") {
  REQUIRE(std::filesystem::is_directory(fixture_dir));
  std::size_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(fixture_dir)) {
    if (entry.path().extension() != ".safetensors") continue;
    ++files;
    const std::string stem = entry.path().stem().string();
    INFO("fixture " << stem);
    REQUIRE(stem.size() > 4);
    CHECK(fixture_cases.count(stem.substr(0, stem.size() - 4)) == 1);
  }
  CHECK(files == 2 * fixture_cases.size());
}

TEST_CASE("spectral_norm against pytorch over five steps and eval") {
  check_case<sequential<input<5>, spectral_norm<dense<4>>>>("dense_bias");
  check_case<sequential<input<6>, spectral_norm<dense<3, false>>>>("dense_no_bias");
  check_case<sequential<input<2, 5, 5>, spectral_norm<conv2d<3, 3, 2, 1>>>>("conv2d_k3_s2_p1");
  check_case<sequential<input<1, 8, 8>, spectral_norm<conv2d<4, 4, 2, 1>>, leaky_relu<>, flatten,
                        spectral_norm<dense<1>>>>("critic");
}
