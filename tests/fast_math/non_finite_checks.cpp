// Built with -O2 -ffast-math by tests/cmake/fast_math.cmake. Under fast math
// the compiler assumes that no value is NaN or infinite, so checks written
// with std::isfinite or std::isnan fold to constants and vanish. This
// program feeds NaN and infinity to every check that guards user input and
// training, and exits non-zero if one of them lets the value through.

#ifndef __FAST_MATH__
#error "build this file with -ffast-math: it tests the checks under fast math"
#endif

#include <cstdio>
#include <exception>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "advgan/advgan.hpp"
#include "advgan/metrics/domain.hpp"
#include "advgan/metrics/features.hpp"

namespace {

using namespace advgan;
using backend = cpu<float>;

int failures = 0;

void expect(bool condition, const std::string& description) {
  if (condition) return;
  std::fprintf(stderr, "FAILED: %s\n", description.c_str());
  ++failures;
}

// Runs `action` and reports whether it threw Error.
template <class Error, class Action>
bool throws(Action&& action) {
  try {
    action();
  } catch (const Error&) {
    return true;
  } catch (const std::exception& other) {
    std::fprintf(stderr, "unexpected exception: %s\n", other.what());
    return false;
  }
  return false;
}

// The values are read from volatile memory, so the compiler cannot see
// that they are NaN or infinite and fold them as constants.
volatile float volatile_nan = std::numeric_limits<float>::quiet_NaN();
volatile float volatile_infinity = std::numeric_limits<float>::infinity();
volatile double volatile_nan_double = std::numeric_limits<double>::quiet_NaN();

template <class Scalar>
void check_first_non_finite(Scalar nan, Scalar infinity, const char* type) {
  for (std::size_t size : {1u, 7u, 64u, 1000u, 100000u}) {
    for (Scalar bad : {nan, infinity, -infinity}) {
      std::vector<Scalar> values(size, Scalar(0.5));
      const std::size_t at = size / 2;
      values[at] = bad;
      expect(cpu<Scalar>::first_non_finite(values.data(), size) == at,
             std::string("cpu<") + type + ">::first_non_finite finds " +
                 std::to_string(static_cast<double>(bad)) + " among " + std::to_string(size));
    }
    std::vector<Scalar> finite(size, std::numeric_limits<Scalar>::max());
    finite[0] = -std::numeric_limits<Scalar>::max();
    expect(cpu<Scalar>::first_non_finite(finite.data(), size) == size,
           std::string("cpu<") + type + ">::first_non_finite passes the largest finite values");
  }
}

using generator_spec =
    sequential<input<4>, dense<8>, relu, dense<4>, reshape<1, 2, 2>, tanh_activation>;
using critic_spec = sequential<input<1, 2, 2>, flatten, dense<8>, leaky_relu<>, dense<1>>;
using trainer_type = gan_trainer<generator_spec, critic_spec, non_saturating, backend>;

backend::tensor batch_of(float value) {
  backend::tensor batch;
  backend::resize(batch, 4, 1, 2, 2);
  backend::fill(backend::data(batch), backend::size(batch), value);
  return batch;
}

void check_trainer() {
  trainer_options options;
  options.sample_count = 4;
  trainer_type trainer(options);
  trainer.step(batch_of(0.25f));

  backend::tensor nan_batch = batch_of(0.25f);
  backend::data(nan_batch)[9] = volatile_nan;
  expect(throws<numeric_error>([&] { trainer.step(nan_batch); }), "trainer rejects a NaN batch");
  expect(trainer.iteration() == 1, "a rejected NaN batch leaves the iteration");

  backend::tensor infinite_batch = batch_of(0.25f);
  backend::data(infinite_batch)[0] = -volatile_infinity;
  expect(throws<numeric_error>([&] { trainer.step(infinite_batch); }),
         "trainer rejects a batch with -inf");

  // A NaN weight makes the discriminator's first layer output NaN.
  trainer.discriminator().parameters()[0] = volatile_nan;
  expect(throws<numeric_error>([&] { trainer.step(batch_of(0.25f)); }),
         "trainer reports a NaN activation");
}

void check_objectives() {
  const std::vector<float> real = {1.0f, volatile_nan};
  const std::vector<float> fake = {0.5f, -0.5f};
  std::vector<float> real_grad(2);
  std::vector<float> fake_grad(2);
  const double loss =
      non_saturating::discriminator_loss(std::span<const float>(real), std::span<const float>(fake),
                                         std::span<float>(real_grad), std::span<float>(fake_grad));
  expect(!detail::is_finite(loss), "a NaN logit gives a non-finite loss");

  const std::vector<float> infinite = {volatile_infinity, 1.0f};
  const double infinite_loss = wasserstein::discriminator_loss(
      std::span<const float>(infinite), std::span<const float>(fake), std::span<float>(real_grad),
      std::span<float>(fake_grad));
  expect(detail::is_infinite(infinite_loss), "an infinite logit gives an infinite loss");
}

void check_metrics() {
  feature_matrix features;
  features.rows = 2;
  features.cols = 2;
  features.values = {0.0, 1.0, volatile_nan_double, 2.0};
  expect(throws<argument_error>([&] { check_finite(features, "set A"); }),
         "check_finite rejects a NaN feature");
  features.values[2] = static_cast<double>(volatile_infinity);
  expect(throws<argument_error>([&] { check_finite(features, "set A"); }),
         "check_finite rejects an infinite feature");

  const std::vector<float> logits = {0.5f, volatile_nan, 1.0f, 2.0f};
  expect(throws<argument_error>([&] { softmax_rows(std::span<const float>(logits), 2, 2); }),
         "softmax_rows rejects a NaN logit");
}

void check_safetensors() {
  io::safetensors file;
  const std::vector<double> values = {1.0, volatile_nan_double};
  file.add<double>("values", {2}, values);
  std::vector<int> out(2);
  expect(throws<file_error>([&] { file.read_into<int>("values", {2}, std::span<int>(out)); }),
         "safetensors rejects NaN read into int");
}

}  // namespace

int main() {
  check_first_non_finite<float>(volatile_nan, volatile_infinity, "float");
  check_first_non_finite<double>(volatile_nan_double, static_cast<double>(volatile_infinity),
                                 "double");
  expect(!detail::is_finite(volatile_nan) && detail::is_nan(volatile_nan), "is_nan(NaN)");
  expect(detail::is_positive_infinity(static_cast<float>(volatile_infinity)), "+inf");
  expect(detail::is_negative_infinity(-static_cast<float>(volatile_infinity)), "-inf");
  check_trainer();
  check_objectives();
  check_metrics();
  check_safetensors();
  if (failures > 0) {
    std::fprintf(stderr, "%d checks failed under -ffast-math\n", failures);
    return 1;
  }
  std::printf("every non-finite check holds under -ffast-math\n");
  return 0;
}
