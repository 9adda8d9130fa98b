// Tests of the domain metrics: the softmax cross-entropy that trains the
// Fashion-MNIST classifier, the committed classifier itself, and the
// domain FID between real image sets. The data sets are the real
// Fashion-MNIST files from Debian's dataset-fashion-mnist package.

#include <doctest/doctest.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "advgan/data/idx.hpp"
#include "advgan/metrics/domain.hpp"
#include "advgan/metrics/metrics.hpp"
#include "gradient_check.hpp"

namespace {

using advgan::domain_feature_set;
using advgan::domain_features;
using advgan::feature_matrix;

const std::string classifier_file =
    std::string(ADVGAN_SOURCE_DIR) + "/examples/weights/fashion_mnist_classifier.safetensors";

// Returns the loss of softmax_cross_entropy, discarding the gradient.
double cross_entropy_value(const std::vector<double>& logits,
                           const std::vector<std::int64_t>& labels, std::size_t classes) {
  std::vector<double> unused(logits.size());
  return advgan::softmax_cross_entropy<double>(logits, labels, classes, unused);
}

// The features of the 10,000 test images, computed once for all test cases.
const domain_feature_set& test_set_features() {
  static const domain_feature_set features = [] {
    const advgan::data::labelled_images test =
        advgan::data::fashion_mnist(advgan::data::split::test);
    domain_features extractor(classifier_file);
    return extractor.extract(std::span<const std::uint8_t>(test.pixels), test.height, test.width);
  }();
  return features;
}

}  // namespace

TEST_CASE("softmax_cross_entropy gradient matches finite differences") {
  constexpr std::size_t rows = 4;
  constexpr std::size_t classes = 10;
  const advgan::testing::tensor64 random =
      advgan::testing::random_tensor(rows, classes, 1, 1, 11, 3.0);
  std::vector<double> logits(random.data(), random.data() + random.size());
  const std::vector<std::int64_t> labels = {3, 0, 9, 3};
  std::vector<double> gradient(logits.size());
  advgan::softmax_cross_entropy<double>(logits, labels, classes, gradient);

  constexpr double step = 1e-6;
  std::vector<double> numeric(logits.size());
  for (std::size_t i = 0; i < logits.size(); ++i) {
    const double saved = logits[i];
    logits[i] = saved + step;
    const double up = cross_entropy_value(logits, labels, classes);
    logits[i] = saved - step;
    const double down = cross_entropy_value(logits, labels, classes);
    logits[i] = saved;
    numeric[i] = (up - down) / (2 * step);
  }
  const double error =
      advgan::testing::relative_max_error(gradient.data(), numeric.data(), gradient.size());
  INFO("relative error " << error);
  CHECK(error < 1e-7);
}

TEST_CASE("softmax_cross_entropy closed forms") {
  SUBCASE("equal logits") {
    // softmax is 1/4 per class, so L = log 4 and dL/dx = (1/4 - [c == y]) / 2.
    const std::vector<double> logits(8, 0.5);
    const std::vector<std::int64_t> labels = {1, 2};
    std::vector<double> gradient(8);
    const double loss = advgan::softmax_cross_entropy<double>(logits, labels, 4, gradient);
    CHECK(loss == doctest::Approx(std::log(4.0)).epsilon(1e-15));
    CHECK(gradient[0] == doctest::Approx(0.125).epsilon(1e-15));
    CHECK(gradient[1] == doctest::Approx(-0.375).epsilon(1e-15));
    CHECK(gradient[6] == doctest::Approx(-0.375).epsilon(1e-15));
  }
  SUBCASE("large logits stay finite") {
    // Logits (1000, 0) with label 1: L = 1000 + log(1 + e^-1000) = 1000.
    const std::vector<float> logits = {1000.0f, 0.0f};
    const std::vector<std::int64_t> labels = {1};
    std::vector<float> gradient(2);
    const double loss = advgan::softmax_cross_entropy<float>(logits, labels, 2, gradient);
    CHECK(loss == doctest::Approx(1000.0).epsilon(1e-12));
    CHECK(gradient[0] == 1.0f);
    CHECK(gradient[1] == -1.0f);
  }
}

TEST_CASE("softmax_cross_entropy rejects bad arguments") {
  const std::vector<double> logits(6, 0.0);
  std::vector<double> gradient(6);
  const std::vector<std::int64_t> out_of_range = {0, 3};
  CHECK_THROWS_WITH_AS(advgan::softmax_cross_entropy<double>(logits, out_of_range, 3, gradient),
                       doctest::Contains("label 3 of row 1 is outside [0, 3)"),
                       advgan::argument_error);
  const std::vector<std::int64_t> three_labels = {0, 1, 2};
  CHECK_THROWS_AS(advgan::softmax_cross_entropy<double>(logits, three_labels, 3, gradient),
                  advgan::argument_error);
  std::vector<double> with_nan = logits;
  with_nan[4] = std::nan("");
  const std::vector<std::int64_t> labels = {0, 1};
  CHECK_THROWS_WITH_AS(advgan::softmax_cross_entropy<double>(with_nan, labels, 3, gradient),
                       doctest::Contains("at row 1, column 1 is not finite"),
                       advgan::argument_error);
}

TEST_CASE("softmax_rows sums to one without overflow") {
  const std::vector<double> logits = {800.0, 799.0, -5000.0, 0.0, 0.0, 0.0};
  const feature_matrix probabilities = advgan::softmax_rows<double>(logits, 2, 3);
  // Row 0: e^0 / (1 + e^-1) and e^-1 / (1 + e^-1); the third underflows to 0.
  CHECK(probabilities(0, 0) == doctest::Approx(1.0 / (1.0 + std::exp(-1.0))).epsilon(1e-15));
  CHECK(probabilities(0, 1) == doctest::Approx(std::exp(-1.0) / (1.0 + std::exp(-1.0))));
  CHECK(probabilities(0, 2) == 0.0);
  CHECK(probabilities(1, 0) == doctest::Approx(1.0 / 3.0).epsilon(1e-15));
}

TEST_CASE("classifier loss gradient matches finite differences") {
  // The whole training pipeline in double: forward, the loss gradient
  // through backward, checked on a sample of parameters from every layer.
  using classifier64 = advgan::model<advgan::fashion_mnist_classifier, advgan::cpu<double>>;
  auto classifier = std::make_unique<classifier64>(3);
  advgan::testing::tensor64 images = advgan::testing::random_tensor(2, 1, 32, 32, 5);
  const std::vector<std::int64_t> labels = {7, 2};
  auto loss = [&] {
    const auto& logits = classifier->forward(images);
    std::vector<double> unused(logits.size());
    return advgan::softmax_cross_entropy<double>(
        std::span<const double>(logits.data(), logits.size()), labels, 10, unused);
  };
  const auto& logits = classifier->forward(images);
  advgan::testing::tensor64 logit_gradient;
  advgan::cpu<double>::resize(logit_gradient, 2, 10, 1, 1);
  advgan::softmax_cross_entropy<double>(
      std::span<const double>(logits.data(), logits.size()), labels, 10,
      std::span<double>(logit_gradient.data(), logit_gradient.size()));
  classifier->zero_grad();
  classifier->backward(logit_gradient, nullptr);

  constexpr double step = 1e-6;
  advgan::philox pick(17);
  classifier->visit_parameters([&](const std::string& name, double* value, double* gradient,
                                   const advgan::parameter_spec& spec) {
    for (int trial = 0; trial < 2; ++trial) {
      const std::size_t i = pick.below(static_cast<std::uint32_t>(spec.size()));
      const double saved = value[i];
      value[i] = saved + step;
      const double up = loss();
      value[i] = saved - step;
      const double down = loss();
      value[i] = saved;
      const double numeric = (up - down) / (2 * step);
      INFO(name << "[" << i << "]: analytic " << gradient[i] << ", numeric " << numeric);
      CHECK(std::abs(gradient[i] - numeric) <= 1e-6 * std::max(1.0, std::abs(numeric)));
    }
  });
}

TEST_CASE("committed classifier reaches 91% test accuracy") {
  const advgan::data::labelled_images test = advgan::data::fashion_mnist(advgan::data::split::test);
  const std::vector<std::size_t> predicted =
      advgan::predicted_labels(test_set_features().probabilities, "test set");
  REQUIRE(predicted.size() == test.count);
  std::size_t correct = 0;
  for (std::size_t i = 0; i < test.count; ++i) correct += predicted[i] == test.labels[i] ? 1 : 0;
  const double accuracy = static_cast<double>(correct) / static_cast<double>(test.count);
  INFO("test accuracy " << accuracy);
  CHECK(accuracy >= 0.91);
}

TEST_CASE("domain_features pads bytes as the batcher does") {
  // 28x28 bytes centered in 32x32 with -1 must give the features of the
  // float images built by hand.
  const advgan::data::labelled_images test = advgan::data::fashion_mnist(advgan::data::split::test);
  constexpr std::size_t count = 3;
  const std::span<const std::uint8_t> bytes(test.pixels.data(), count * 28 * 28);
  std::vector<float> padded(count * 32 * 32, -1.0f);
  for (std::size_t n = 0; n < count; ++n)
    for (std::size_t y = 0; y < 28; ++y)
      for (std::size_t x = 0; x < 28; ++x)
        padded[(n * 32 + y + 2) * 32 + x + 2] =
            static_cast<float>(bytes[(n * 28 + y) * 28 + x]) / 127.5f - 1.0f;
  domain_features extractor(classifier_file, 2);  // 2 per batch, so the last batch is partial
  const domain_feature_set from_bytes = extractor.extract(bytes, 28, 28);
  const domain_feature_set from_floats = extractor.extract(std::span<const float>(padded));
  CHECK(from_bytes.features.rows == count);
  CHECK(from_bytes.features.cols == advgan::fashion_mnist_feature_count);
  CHECK(from_bytes.probabilities.cols == advgan::fashion_mnist_class_count);
  CHECK(from_bytes.features.values == from_floats.features.values);
  CHECK(from_bytes.probabilities.values == from_floats.probabilities.values);
  // The rows equal the first rows of the whole test set, computed 200 images
  // at a time, up to the rounding that another GEMM blocking brings.
  const double error = advgan::testing::relative_max_error(
      from_bytes.features.values.data(), test_set_features().features.values.data(),
      from_bytes.features.values.size());
  INFO("relative error against batches of 200: " << error);
  CHECK(error < 1e-5);
}

TEST_CASE("domain_features rejects bad input") {
  CHECK_THROWS_WITH_AS(domain_features("/nonexistent/classifier.safetensors"),
                       doctest::Contains("/nonexistent/classifier.safetensors"),
                       advgan::file_error);
  domain_features extractor(classifier_file);
  const std::vector<float> partial(32 * 32 + 5, 0.0f);
  CHECK_THROWS_AS(extractor.extract(std::span<const float>(partial)), advgan::argument_error);
  std::vector<float> with_nan(2 * 32 * 32, 0.0f);
  with_nan[32 * 32 + 7] = std::nanf("");
  CHECK_THROWS_WITH_AS(extractor.extract(std::span<const float>(with_nan)),
                       doctest::Contains("pixel 7 of image 1"), advgan::argument_error);
  const std::vector<std::uint8_t> bytes(2 * 30 * 30, 0);
  CHECK_THROWS_WITH_AS(extractor.extract(std::span<const std::uint8_t>(bytes), 30, 30),
                       doctest::Contains("30 x 30"), advgan::argument_error);
}

TEST_CASE("domain FID orders real and noise images") {
  const feature_matrix& test = test_set_features().features;
  domain_features extractor(classifier_file);

  // The first 2000 training images, a different sample of the same
  // distribution, and 1000 images of uniform noise bytes.
  const advgan::data::labelled_images train =
      advgan::data::fashion_mnist(advgan::data::split::train);
  constexpr std::size_t train_count = 2000;
  const feature_matrix train_features =
      extractor
          .extract(std::span<const std::uint8_t>(train.pixels.data(), train_count * 28 * 28), 28,
                   28)
          .features;
  constexpr std::size_t noise_count = 1000;
  std::vector<std::uint8_t> noise(noise_count * 28 * 28);
  advgan::philox random(23);
  for (std::uint8_t& pixel : noise) pixel = static_cast<std::uint8_t>(random.below(256));
  const feature_matrix noise_features =
      extractor.extract(std::span<const std::uint8_t>(noise), 28, 28).features;

  const double self = advgan::frechet_distance(test, test).value;
  const double real = advgan::frechet_distance(test, train_features).value;
  const double fake = advgan::frechet_distance(test, noise_features).value;
  MESSAGE("domain FID: test vs test " << self << ", test vs 2000 training images " << real
                                      << ", test vs 1000 noise images " << fake);
  CHECK(std::abs(self) <= 1e-8);
  CHECK(real > self);
  // A real sample must be far closer to the test set than noise is: the
  // noise distance is more than 10 times the distance between real sets.
  CHECK(fake > 10 * real);
}
