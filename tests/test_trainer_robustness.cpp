// gan_trainer under faults: bad batches that must leave it unchanged, a NaN
// that arises inside a step, an infinity in a hidden layer that a later
// tanh hides, checkpoints whose regularizer state is corrupt, and the
// choice of RMSprop in place of Adam for the original WGAN recipe.

#include <doctest/doctest.h>

#include <unistd.h>  // getpid

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <optional>
#include <ratio>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <vector>

#include "advgan/advgan.hpp"
#include "temporary_folder.hpp"

namespace {

namespace fs = std::filesystem;
using namespace advgan;
using bytes = std::vector<char>;
using backend = cpu<float>;

using advgan::testing::temporary_folder;

bytes read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot read ", path.string());
  return bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Runs `action` and returns the exception of exactly type Error that it
// throws. A test failure names what happened instead.
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

// A batch of `count` samples of Shape, uniform in [-1, 1] from philox(seed).
template <class Shape, class Backend = backend>
typename Backend::tensor random_batch(std::size_t count, std::uint64_t seed) {
  typename Backend::tensor batch;
  Backend::resize(batch, count, Shape::channels, Shape::height, Shape::width);
  philox random(seed);
  for (std::size_t i = 0; i < Backend::size(batch); ++i)
    Backend::data(batch)[i] = static_cast<typename Backend::scalar>(2 * random.uniform() - 1);
  return batch;
}

// Sets every value of the parameter `name` of `m` to `value`.
template <class Model>
void set_parameter(Model& m, const std::string& name, typename Model::scalar value) {
  bool found = false;
  m.visit_parameters(
      [&](const std::string& parameter, auto* data, auto*, const parameter_spec& spec) {
        if (parameter != name) return;
        std::fill_n(data, spec.size(), value);
        found = true;
      });
  REQUIRE_MESSAGE(found, "no parameter ", name);
}

template <class Model>
std::vector<double> parameters_of(Model& m) {
  return {m.parameters(), m.parameters() + Model::parameter_count};
}

// Returns the bytes of a checkpoint of `trainer`: its whole state.
template <class Trainer>
bytes checkpoint_bytes(Trainer& trainer, const fs::path& path) {
  trainer.save_checkpoint(path);
  return read_bytes(path);
}

// 8-d noise to 1x8x8 samples, with batch norm at layer 1.
using bn_generator = sequential<input<8, 1, 1>, conv_transpose2d<8, 4, 1, 0, 0, false>, batch_norm,
                                relu, conv_transpose2d<1, 4, 2, 1, 0, false>, tanh_activation>;

// 1x8x8 samples to a logit. Batch norm at layer 1 updates its statistics
// before the layers that reject a batch size: minibatch_stddev at layer 3
// (groups of 4) and batch norm over single values at layer 6.
using picky_discriminator =
    sequential<input<1, 8, 8>, conv2d<4, 4, 2, 1, false>, batch_norm, leaky_relu<>,
               minibatch_stddev<4>, flatten, dense<8>, batch_norm, leaky_relu<>, dense<1>>;

using picky_trainer = gan_trainer<bn_generator, picky_discriminator, non_saturating, backend>;

trainer_options picky_options() {
  trainer_options options;
  options.seed = 12;
  options.sample_count = 4;
  options.replay_capacity = 8;
  return options;
}

}  // namespace

// ---------------------------------------------------------------------------
// Bad batches
// ---------------------------------------------------------------------------

TEST_CASE("bad batch leaves the trainer unchanged") {
  temporary_folder folder;
  using sample = picky_discriminator::input_shape;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();

  picky_trainer trainer(picky_options());
  picky_trainer reference(picky_options());
  for (std::uint64_t i = 0; i < 2; ++i) {
    trainer.step(random_batch<sample>(4, i));
    reference.step(random_batch<sample>(4, i));
  }
  const bytes before = checkpoint_bytes(trainer, folder / "before.safetensors");

  struct batch_case {
    std::string label;
    backend::tensor batch;
    std::string expected_type;
    std::string words;
  };
  std::vector<batch_case> cases;
  {
    backend::tensor batch = random_batch<sample>(4, 7);
    backend::data(batch)[100] = nan;
    cases.push_back({"NaN", batch, "numeric_error", "non-finite value nan"});
  }
  {
    backend::tensor batch = random_batch<sample>(4, 7);
    backend::data(batch)[255] = -inf;
    cases.push_back({"-inf at the end", batch, "numeric_error", "index 255"});
  }
  {
    backend::tensor batch;
    backend::resize(batch, 4, 1, 7, 8);
    backend::fill(backend::data(batch), backend::size(batch), 0.5f);
    cases.push_back({"wrong height", batch, "shape_error", "(N >= 1, 1, 8, 8)"});
  }
  {
    backend::tensor batch;
    backend::resize(batch, 4, 3, 8, 8);
    backend::fill(backend::data(batch), backend::size(batch), 0.5f);
    cases.push_back({"three channels", batch, "shape_error", "(N >= 1, 1, 8, 8)"});
  }
  {
    backend::tensor batch;
    backend::resize(batch, 0, 1, 8, 8);
    cases.push_back({"empty batch", batch, "shape_error", "(N >= 1, 1, 8, 8)"});
  }
  cases.push_back({"batch of 6, not a multiple of the minibatch_stddev group",
                   random_batch<sample>(6, 7), "argument_error",
                   "minibatch_stddev: batch size 6 is not a multiple of the group size 4"});
  cases.push_back({"batch of 1, batch norm over one value", random_batch<sample>(1, 7),
                   "argument_error", "batch_norm: training needs more than one value"});

  for (const batch_case& bad : cases) {
    CAPTURE(bad.label);
    std::string thrown = "nothing";
    std::string message;
    try {
      trainer.step(bad.batch);
    } catch (const numeric_error& failure) {
      thrown = "numeric_error";
      message = failure.what();
    } catch (const shape_error& failure) {
      thrown = "shape_error";
      message = failure.what();
    } catch (const argument_error& failure) {
      thrown = "argument_error";
      message = failure.what();
    }
    CAPTURE(message);
    CHECK(thrown == bad.expected_type);
    CHECK(contains(message, bad.words));
    CHECK(trainer.iteration() == 2);
    CHECK_MESSAGE(checkpoint_bytes(trainer, folder / "after.safetensors") == before,
                  "the rejected batch changed the trainer's state");
  }

  // The next good step matches a trainer that never saw the bad batches.
  const step_record record = trainer.step(random_batch<sample>(4, 2));
  const step_record expected = reference.step(random_batch<sample>(4, 2));
  CHECK(record.iteration == 3);
  CHECK(record.discriminator_loss == expected.discriminator_loss);
  CHECK(checkpoint_bytes(trainer, folder / "trained.safetensors") ==
        checkpoint_bytes(reference, folder / "reference.safetensors"));
}

TEST_CASE("NaN inside a step leaves the documented state") {
  // A NaN weight in the discriminator fails the step in its first forward
  // pass. The failed step counts, the generator side stays as it was, and
  // the checkpoint on disk still restores the state from before the step.
  temporary_folder folder;
  using sample = picky_discriminator::input_shape;
  const fs::path checkpoint = folder / "checkpoint.safetensors";
  picky_trainer trainer(picky_options());
  trainer.step(random_batch<sample>(4, 1));
  trainer.step(random_batch<sample>(4, 2));
  const bytes saved = checkpoint_bytes(trainer, checkpoint);
  const std::vector<double> generator_before = parameters_of(trainer.generator());
  const std::int64_t generator_updates = trainer.generator_optimizer().step_count();
  const std::int64_t discriminator_updates = trainer.discriminator_optimizer().step_count();
  const std::int64_t average_updates = trainer.generator_average().update_count();

  set_parameter(trainer.discriminator(), "0.weight", std::numeric_limits<float>::quiet_NaN());
  const auto failure =
      expect_error<numeric_error>([&] { trainer.step(random_batch<sample>(4, 3)); });
  REQUIRE(failure);
  CHECK(failure->layer() == "discriminator layer 0 (conv2d)");
  CHECK(failure->iteration() == 3);
  CHECK(trainer.iteration() == 3);
  CHECK(parameters_of(trainer.generator()) == generator_before);
  CHECK(trainer.generator_optimizer().step_count() == generator_updates);
  CHECK(trainer.discriminator_optimizer().step_count() == discriminator_updates);
  CHECK(trainer.generator_average().update_count() == average_updates);

  CHECK(read_bytes(checkpoint) == saved);
  trainer.load_checkpoint(checkpoint);
  CHECK(trainer.iteration() == 2);
  CHECK(checkpoint_bytes(trainer, folder / "reloaded.safetensors") == saved);
}

// ---------------------------------------------------------------------------
// Non-finite hidden activations
// ---------------------------------------------------------------------------

namespace {

// Layer 0 outputs FLT_MAX (zero weights, bias FLT_MAX). Layer 1 sums four
// of those and overflows to +inf, and the tanh at layer 2 maps that to 1.
using overflowing_generator =
    sequential<input<4>, dense<4>, dense<4>, tanh_activation, reshape<1, 2, 2>>;
using small_critic = sequential<input<1, 2, 2>, flatten, dense<8>, leaky_relu<>, dense<1>>;

}  // namespace

TEST_CASE("infinity hidden by a later tanh is reported") {
  using trainer_type = gan_trainer<overflowing_generator, small_critic, non_saturating, backend>;
  trainer_options options;
  options.seed = 4;
  options.sample_count = 4;
  trainer_type trainer(options);
  trainer.step(random_batch<small_critic::input_shape>(4, 1));

  const float largest = std::numeric_limits<float>::max();
  set_parameter(trainer.generator(), "0.weight", 0.0f);
  set_parameter(trainer.generator(), "0.bias", largest);
  set_parameter(trainer.generator(), "1.weight", 1.0f);
  set_parameter(trainer.generator(), "1.bias", 0.0f);
  const auto failure = expect_error<numeric_error>(
      [&] { trainer.step(random_batch<small_critic::input_shape>(4, 2)); });
  REQUIRE(failure);
  CAPTURE(std::string(failure->what()));
  CHECK(failure->layer() == "generator layer 1 (dense)");
  CHECK(failure->tensor() == "output on the noise batch");
  CHECK(failure->iteration() == 2);
  CHECK(failure->index() == 0);
  CHECK(contains(failure->what(), "non-finite value inf"));

  // The model finds the same layer when asked directly, with the scan on
  // (as in the trainer) and off.
  trainer_type::generator_model& generator = trainer.generator();
  CHECK(generator.first_non_finite_activation().layer == 1);
  generator.check_non_finite(false);
  CHECK(generator.first_non_finite_activation().layer == 1);
  CHECK(backend::first_non_finite(backend::data(generator.output()),
                                  backend::size(generator.output())) ==
        backend::size(generator.output()));
}

// ---------------------------------------------------------------------------
// Corrupt regularizer state in checkpoints
// ---------------------------------------------------------------------------

namespace {

using dense_generator =
    sequential<input<4>, dense<8>, relu, dense<4>, reshape<1, 2, 2>, tanh_activation>;
using penalised_trainer =
    gan_trainer<dense_generator, small_critic, wasserstein, backend, gradient_penalty<>>;

trainer_options penalised_options() {
  trainer_options options;
  options.seed = 5;
  options.sample_count = 4;
  options.replay_capacity = 6;
  options.discriminator_optimizer = {1e-3, 0.0, 0.9};
  options.generator_optimizer = {1e-3, 0.0, 0.9};
  return options;
}

// A copy of `source` with the tensor `name` replaced by `data`.
io::safetensors replaced(const io::safetensors& source, const std::string& name,
                         io::tensor_data data) {
  io::safetensors copy;
  for (const auto& [key, value] : source.metadata()) copy.set_metadata(key, value);
  for (const std::string& other : source.names())
    copy.add(other, other == name ? data : source.at(other));
  return copy;
}

template <class T>
io::tensor_data tensor_of(std::vector<std::size_t> shape, const std::vector<T>& values) {
  io::safetensors holder;
  holder.add<T>("t", std::move(shape), values);
  return holder.at("t");
}

}  // namespace

TEST_CASE("corrupt regularizer state leaves the trainer unchanged") {
  temporary_folder folder;
  using sample = small_critic::input_shape;
  penalised_trainer trained(penalised_options());
  for (std::uint64_t i = 0; i < 3; ++i) trained.step(random_batch<sample>(4, 30 + i));
  trained.save_checkpoint(folder / "good.safetensors");
  const io::safetensors good = io::safetensors::load(folder / "good.safetensors");
  const io::tensor_data samples = good.at("replay.samples");
  REQUIRE(good.at("trainer.penalty_noise").to<std::int64_t>()[0] > 0);

  struct corrupt_case {
    std::string label;
    io::safetensors file;
    std::string field;
    std::string words;
  };
  std::vector<double> beyond_float = samples.to<double>();
  beyond_float.back() = 1e300;
  std::vector<float> with_nan = samples.to<float>();
  with_nan[5] = std::numeric_limits<float>::quiet_NaN();
  const std::vector<corrupt_case> cases = {
      {"replay sample beyond float's range",
       replaced(good, "replay.samples", tensor_of<double>(samples.shape, beyond_float)),
       "replay.samples", "cannot convert F64 value 1e+300 at index 23 to F32 exactly"},
      {"NaN replay sample", replaced(good, "replay.samples", tensor_of(samples.shape, with_nan)),
       "replay.samples", "value nan at index 5 is not finite"},
      {"replay count above the capacity",
       replaced(good, "replay.state", tensor_of<std::int64_t>({2}, {7, 3})), "replay.state",
       "stored count 7 is outside [0, 6], the replay capacity"},
      {"negative replay count",
       replaced(good, "replay.state", tensor_of<std::int64_t>({2}, {-1, 3})), "replay.state",
       "stored count -1 is outside [0, 6]"},
      {"negative replay generator position",
       replaced(good, "replay.state", tensor_of<std::int64_t>({2}, {6, -3})), "replay.state",
       "generator position -3 is negative"},
      {"negative penalty generator position",
       replaced(good, "trainer.penalty_noise", tensor_of<std::int64_t>({}, {-8})),
       "trainer.penalty_noise", "generator position -8 is negative"},
      {"fractional penalty generator position",
       replaced(good, "trainer.penalty_noise", tensor_of<double>({}, {1.5})),
       "trainer.penalty_noise", "cannot convert F64 value 1.5"},
      {"negative iteration",
       replaced(good, "trainer.counters", tensor_of<std::int64_t>({4}, {-1, 3, 0, 0})),
       "trainer.counters", "iteration -1 at index 0 is negative"},
      {"negative noise position",
       replaced(good, "trainer.counters", tensor_of<std::int64_t>({4}, {3, 3, -2, 0})),
       "trainer.counters", "noise generator position -2 at index 2 is negative"},
  };

  for (const corrupt_case& bad : cases) {
    CAPTURE(bad.label);
    const fs::path path = folder / "bad.safetensors";
    bad.file.save(path);
    penalised_trainer target(penalised_options());
    target.step(random_batch<sample>(4, 40));
    const bytes before = checkpoint_bytes(target, folder / "before.safetensors");
    const auto failure = expect_error<file_error>([&] { target.load_checkpoint(path); });
    if (failure) {
      CAPTURE(std::string(failure->what()));
      CHECK(failure->path() == path.string());
      CHECK(failure->field() == bad.field);
      CHECK(contains(failure->what(), bad.words));
    }
    CHECK_MESSAGE(checkpoint_bytes(target, folder / "after.safetensors") == before,
                  "a failed load changed the trainer");
  }

  // The unchanged checkpoint still loads whole.
  penalised_trainer target(penalised_options());
  target.load_checkpoint(folder / "good.safetensors");
  CHECK(checkpoint_bytes(target, folder / "reloaded.safetensors") ==
        read_bytes(folder / "good.safetensors"));
}

// ---------------------------------------------------------------------------
// Optimizer choice: RMSprop for the original WGAN
// ---------------------------------------------------------------------------

namespace {

using clipping = weight_clipping<std::ratio<1, 100>>;
using wgan_trainer =
    gan_trainer<dense_generator, small_critic, wasserstein, backend, clipping,
                optimize_discriminator_with<rmsprop>, optimize_generator_with<rmsprop>>;
using rmsprop_critic_trainer = gan_trainer<dense_generator, small_critic, wasserstein, backend,
                                           clipping, optimize_discriminator_with<rmsprop>>;

// The original WGAN recipe: RMSprop at lr 5e-5, clipping at 0.01 and five
// critic updates per generator update.
wgan_trainer::options_type wgan_options() {
  wgan_trainer::options_type options;
  options.seed = 6;
  options.sample_count = 4;
  options.n_critic = 5;
  options.init = init_scheme::pytorch;
  options.discriminator_optimizer.lr = 5e-5;
  options.generator_optimizer.lr = 5e-5;
  return options;
}

}  // namespace

TEST_CASE("wgan trains the critic with rmsprop") {
  static_assert(std::is_same_v<wgan_trainer::discriminator_optimizer_type, rmsprop<float>>);
  static_assert(std::is_same_v<wgan_trainer::generator_optimizer_type, rmsprop<float>>);
  static_assert(std::is_same_v<wgan_trainer::options_type,
                               basic_trainer_options<rmsprop_options, rmsprop_options>>);
  static_assert(std::is_same_v<rmsprop_critic_trainer::generator_optimizer_type, adam<float>>);
  static_assert(std::is_same_v<rmsprop_critic_trainer::options_type,
                               basic_trainer_options<adam_options, rmsprop_options>>);
  // Without a choice both stay Adam, with the same options type as before.
  using adam_trainer = gan_trainer<dense_generator, small_critic, wasserstein, backend, clipping>;
  static_assert(std::is_same_v<adam_trainer::discriminator_optimizer_type, adam<float>>);
  static_assert(std::is_same_v<adam_trainer::options_type, trainer_options>);

  using sample = small_critic::input_shape;
  wgan_trainer trainer(wgan_options());
  CHECK(trainer.discriminator_optimizer().learning_rate() == doctest::Approx(5e-5));
  CHECK(trainer.discriminator_optimizer().options().alpha == 0.99);

  // RMSprop's first update moves each parameter by lr * g / (sqrt(0.01 g^2)
  // + eps), about 10 * lr, where Adam's first update moves it by lr. Clipping
  // at 0.01 can only shorten a move.
  const std::vector<double> before = parameters_of(trainer.discriminator());
  trainer.step(random_batch<sample>(4, 1));
  const std::vector<double> after = parameters_of(trainer.discriminator());
  std::size_t full_moves = 0;
  for (std::size_t i = 0; i < before.size(); ++i) {
    const double move = std::abs(after[i] - before[i]);
    CHECK(move <= 10 * 5e-5 * (1 + 1e-3));
    CHECK(std::abs(after[i]) <= 0.01f);
    if (std::abs(move - 10 * 5e-5) < 1e-3 * 10 * 5e-5) ++full_moves;
  }
  CHECK(full_moves > before.size() / 4);

  for (std::uint64_t i = 2; i <= 10; ++i) trainer.step(random_batch<sample>(4, i));
  CHECK(trainer.discriminator_optimizer().step_count() == 10);
  CHECK(trainer.generator_optimizer().step_count() == 2);
  for (double p : parameters_of(trainer.discriminator())) CHECK(std::abs(p) <= 0.01f);
}

TEST_CASE("rmsprop trainer resumes exactly from its checkpoint") {
  temporary_folder folder;
  using sample = small_critic::input_shape;
  wgan_trainer straight(wgan_options());
  for (std::uint64_t i = 0; i < 12; ++i) straight.step(random_batch<sample>(4, 50 + i));

  wgan_trainer first(wgan_options());
  for (std::uint64_t i = 0; i < 6; ++i) first.step(random_batch<sample>(4, 50 + i));
  const fs::path path = folder / "wgan.safetensors";
  first.save_checkpoint(path);
  const io::safetensors file = io::safetensors::load(path);
  CHECK(file.contains("discriminator_optimizer.square_avg"));
  CHECK(file.contains("generator_optimizer.square_avg"));
  CHECK(file.at("discriminator_optimizer.step").to<std::int64_t>()[0] == 6);
  CHECK(file.at("generator_optimizer.step").to<std::int64_t>()[0] == 1);
  CHECK_FALSE(file.contains("discriminator_optimizer.exp_avg"));

  wgan_trainer resumed(wgan_options());
  resumed.load_checkpoint(path);
  for (std::uint64_t i = 6; i < 12; ++i) resumed.step(random_batch<sample>(4, 50 + i));
  CHECK(parameters_of(resumed.discriminator()) == parameters_of(straight.discriminator()));
  CHECK(parameters_of(resumed.generator()) == parameters_of(straight.generator()));
  CHECK(checkpoint_bytes(resumed, folder / "resumed.safetensors") ==
        checkpoint_bytes(straight, folder / "straight.safetensors"));

  // A checkpoint of an Adam critic does not load into an RMSprop critic.
  rmsprop_critic_trainer::options_type options;
  options.sample_count = 4;
  gan_trainer<dense_generator, small_critic, wasserstein, backend, clipping> adam_critic(
      trainer_options{.sample_count = 4});
  adam_critic.save_checkpoint(folder / "adam.safetensors");
  rmsprop_critic_trainer target(options);
  const auto failure =
      expect_error<file_error>([&] { target.load_checkpoint(folder / "adam.safetensors"); });
  REQUIRE(failure);
  CHECK(failure->field() == "discriminator_optimizer.square_avg");
  CHECK(contains(failure->what(), "tensor not found"));
}
