// gan_trainer with critic regularizers: a WGAN-GP step reproduced by hand,
// n_critic with penalties, lazy R1, weight clipping, the replay buffer of
// past fakes, and exact resumption from checkpoints that carry their state.

#include <doctest/doctest.h>

#include <algorithm>   // std::fill_n
#include <cmath>       // std::abs, std::isfinite
#include <cstddef>     // std::size_t
#include <filesystem>  // std::filesystem::path
#include <memory>      // std::make_unique
#include <ratio>       // std::ratio
#include <string>      // std::string
#include <vector>      // std::vector

#include "advgan/advgan.hpp"
#include "gradient_check.hpp"
#include "temporary_folder.hpp"

using namespace advgan;
using advgan::testing::cpu64;
using advgan::testing::random_tensor;
using advgan::testing::temporary_folder;
using advgan::testing::tensor64;

namespace {

using tiny_generator =
    sequential<input<4>, dense<8>, relu, dense<4>, reshape<1, 2, 2>, tanh_activation>;
using tiny_critic =
    sequential<input<1, 2, 2>, flatten, dense<8>, leaky_relu<>, layer_norm, dense<1>>;

trainer_options wgan_options() {
  trainer_options options;
  options.seed = 3;
  options.discriminator_optimizer = {1e-3, 0.0, 0.9};
  options.generator_optimizer = {1e-3, 0.0, 0.9};
  options.sample_count = 4;
  return options;
}

template <class Model>
std::vector<double> parameters_of(Model& m) {
  return {m.parameters(), m.parameters() + Model::parameter_count};
}

}  // namespace

TEST_CASE("wgan-gp step matches a hand-written step") {
  const trainer_options options = wgan_options();
  using trainer_type =
      gan_trainer<tiny_generator, tiny_critic, wasserstein, cpu64, gradient_penalty<>>;
  auto trainer = std::make_unique<trainer_type>(options);
  const tensor64 real = random_tensor(4, 1, 2, 2, 12);
  const step_record record = trainer->step(real);

  // The same critic step by hand: Wasserstein gradients -1/n on real and
  // +1/n on fake, then the penalty with the trainer's mix-factor stream.
  model<tiny_generator, cpu64> g(options.seed, options.init);
  model<tiny_critic, cpu64> d(options.seed + 1, options.init);
  adam<double> optimizer(decltype(d)::parameter_count, options.discriminator_optimizer);
  philox noise(options.seed, 1);
  philox penalty_noise(options.seed, 4);
  d.zero_grad();
  tensor64 grad;
  cpu64::resize(grad, 4, 1, 1, 1);
  std::fill_n(grad.data(), 4, -0.25);
  d.forward(real);
  d.backward(grad, nullptr);
  tensor64 latent;
  cpu64::resize(latent, 4, 4, 1, 1);
  cpu64::fill_normal(latent.data(), latent.size(), noise, 0, 1);
  const tensor64 fake = g.forward(latent);
  d.forward(fake);
  std::fill_n(grad.data(), 4, 0.25);
  d.backward(grad, nullptr);
  const penalty_record penalty = gradient_penalty<>::apply(d, real, fake, penalty_noise);
  optimizer.step({d.parameters(), decltype(d)::parameter_count},
                 {d.gradients(), decltype(d)::parameter_count});

  CHECK(record.penalty == penalty.value);
  CHECK(record.penalty > 0);
  CHECK(record.penalty_gradient_norm == penalty.mean_gradient_norm);
  CHECK(parameters_of(trainer->discriminator()) == parameters_of(d));
}

TEST_CASE("penalties run on every critic step with n_critic") {
  trainer_options options = wgan_options();
  options.n_critic = 5;
  gan_trainer<tiny_generator, tiny_critic, wasserstein, cpu64, gradient_penalty<>> trainer(options);
  for (int i = 1; i <= 10; ++i) {
    const step_record record = trainer.step(random_tensor(4, 1, 2, 2, 100 + i));
    INFO("step " << i);
    CHECK(record.generator_updated == (i % 5 == 0));
    CHECK(record.penalty > 0);
    CHECK(std::isfinite(record.penalty));
  }
}

TEST_CASE("lazy r1 runs every interval steps") {
  using lazy_r1 = r1_penalty<std::ratio<10>, 4>;
  gan_trainer<tiny_generator, tiny_critic, non_saturating, cpu64, lazy_r1> trainer(wgan_options());
  for (int i = 0; i < 9; ++i) {
    const step_record record = trainer.step(random_tensor(4, 1, 2, 2, 200 + i));
    INFO("critic step " << i);
    if (i % 4 == 0)
      CHECK(record.penalty > 0);
    else
      CHECK(record.penalty == 0);
  }
}

TEST_CASE("lazy r1 scales its gradient by the interval") {
  // The trainer passes the interval as the scale: the value stays R1, and
  // the critic gradient is 4 times R1's.
  const tensor64 real = random_tensor(4, 1, 2, 2, 31);
  model<tiny_critic, cpu64> plain(9);
  model<tiny_critic, cpu64> lazy(9);
  plain.zero_grad();
  lazy.zero_grad();
  philox rng(0);
  const double value = r1_penalty<>::apply(plain, real, real, rng).value;
  using lazy_r1 = r1_penalty<std::ratio<10>, 4>;
  CHECK(lazy_r1::apply(lazy, real, real, rng, lazy_r1::interval).value == value);
  for (std::size_t i = 0; i < decltype(plain)::parameter_count; ++i)
    CHECK(lazy.gradients()[i] == doctest::Approx(4 * plain.gradients()[i]).epsilon(1e-14));
}

TEST_CASE("weight clipping bounds every critic parameter") {
  using clipped = gan_trainer<tiny_generator, tiny_critic, wasserstein, cpu64,
                              weight_clipping<std::ratio<1, 100>>>;
  trainer_options options = wgan_options();
  options.init = init_scheme::pytorch;  // most initial weights exceed 0.01
  clipped trainer(options);
  auto within = [&] {
    for (double p : parameters_of(trainer.discriminator()))
      if (std::abs(p) > 0.01) return false;
    return true;
  };
  CHECK(within());
  bool some_at_limit = false;
  for (int i = 0; i < 3; ++i) {
    trainer.step(random_tensor(4, 1, 2, 2, 300 + i));
    CHECK(within());
  }
  for (double p : parameters_of(trainer.discriminator()))
    some_at_limit = some_at_limit || std::abs(p) == 0.01;
  CHECK(some_at_limit);
  static_assert(parameter_constraint<weight_clipping<>>);
  static_assert(!penalty<weight_clipping<>>);
  static_assert(penalty<gradient_penalty<>>);
}

TEST_CASE("replay buffer keeps and draws past samples") {
  replay_buffer<cpu64> buffer(3, 2);
  philox rng(1);
  std::vector<double> out(2);
  CHECK_THROWS_AS(buffer.draw(out.data(), 1, rng), argument_error);
  const std::vector<double> first = {1, 1, 2, 2};
  buffer.push(first.data(), 2, rng);
  CHECK(buffer.size() == 2);
  CHECK(rng.offset() == 0);  // appending draws nothing
  for (int i = 0; i < 20; ++i) {
    buffer.draw(out.data(), 1, rng);
    CHECK(out[0] == out[1]);
    CHECK((out[0] == 1 || out[0] == 2));
  }
  const std::vector<double> more = {3, 3, 4, 4, 5, 5};
  buffer.push(more.data(), 3, rng);
  CHECK(buffer.size() == 3);
  // Slot 2 took 3; then 4 and 5 each replaced a random slot.
  std::vector<double> stored(buffer.storage().begin(), buffer.storage().end());
  int fives = 0;
  for (std::size_t slot = 0; slot < 3; ++slot) {
    CHECK(stored[2 * slot] == stored[2 * slot + 1]);
    fives += stored[2 * slot] == 5;
  }
  CHECK(fives == 1);
  CHECK_THROWS_AS(buffer.restore_size(4), argument_error);
  CHECK_THROWS_AS(replay_buffer<cpu64>(0, 2), argument_error);
}

TEST_CASE("trainer fills its replay buffer") {
  trainer_options options = wgan_options();
  options.replay_capacity = 10;
  gan_trainer<tiny_generator, tiny_critic, wasserstein, cpu64, gradient_penalty<>> trainer(options);
  REQUIRE(trainer.replay() != nullptr);
  trainer.step(random_tensor(4, 1, 2, 2, 1));
  CHECK(trainer.replay()->size() == 4);
  trainer.step(random_tensor(4, 1, 2, 2, 2));
  trainer.step(random_tensor(4, 1, 2, 2, 3));
  CHECK(trainer.replay()->size() == 10);

  trainer_options bad = wgan_options();
  bad.replay_fraction = 1.5;
  using plain = gan_trainer<tiny_generator, tiny_critic, wasserstein, cpu64>;
  CHECK_THROWS_AS(plain{bad}, argument_error);
  CHECK(plain{wgan_options()}.replay() == nullptr);
}

TEST_CASE("regularized trainer resumes exactly") {
  trainer_options options = wgan_options();
  options.replay_capacity = 6;
  using trainer_type = gan_trainer<tiny_generator, tiny_critic, wasserstein, cpu64,
                                   gradient_penalty<>, r1_penalty<std::ratio<1>, 2>>;
  std::vector<tensor64> batches;
  for (int i = 0; i < 6; ++i) batches.push_back(random_tensor(4, 1, 2, 2, 400 + i));

  auto straight = std::make_unique<trainer_type>(options);
  for (const auto& batch : batches) straight->step(batch);

  const temporary_folder folder;
  const auto path = folder / "resume.safetensors";
  auto first = std::make_unique<trainer_type>(options);
  for (int i = 0; i < 3; ++i) first->step(batches[i]);
  first->save_checkpoint(path);
  const io::safetensors file = io::safetensors::load(path);
  CHECK(file.at("trainer.penalty_noise").shape.empty());
  CHECK(file.at("replay.samples").shape == std::vector<std::size_t>{6, 1, 2, 2});

  auto resumed = std::make_unique<trainer_type>(options);
  resumed->load_checkpoint(path);
  CHECK(resumed->replay()->size() == 6);
  for (int i = 3; i < 6; ++i) resumed->step(batches[i]);
  CHECK(parameters_of(resumed->discriminator()) == parameters_of(straight->discriminator()));
  CHECK(parameters_of(resumed->generator()) == parameters_of(straight->generator()));
}

TEST_CASE("plain trainer checkpoints carry no regularizer state") {
  const temporary_folder folder;
  const auto path = folder / "plain.safetensors";
  gan_trainer<tiny_generator, tiny_critic, wasserstein, cpu64> trainer(wgan_options());
  trainer.step(random_tensor(4, 1, 2, 2, 5));
  trainer.save_checkpoint(path);
  const io::safetensors file = io::safetensors::load(path);
  for (const std::string& name : file.names()) {
    INFO(name);
    CHECK(name.rfind("replay.", 0) != 0);
    CHECK(name != "trainer.penalty_noise");
  }
}

TEST_CASE("checkpoint without penalty state is rejected") {
  const temporary_folder folder;
  const auto path = folder / "no_penalty_state.safetensors";
  gan_trainer<tiny_generator, tiny_critic, wasserstein, cpu64> plain(wgan_options());
  plain.step(random_tensor(4, 1, 2, 2, 5));
  plain.save_checkpoint(path);
  gan_trainer<tiny_generator, tiny_critic, wasserstein, cpu64, gradient_penalty<>> penalised(
      wgan_options());
  const std::vector<double> before = parameters_of(penalised.discriminator());
  CHECK_THROWS_AS(penalised.load_checkpoint(path), file_error);
  CHECK(parameters_of(penalised.discriminator()) == before);
}
