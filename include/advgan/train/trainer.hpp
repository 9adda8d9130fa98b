#pragma once
// gan_trainer: the adversarial training loop for one generator and one
// discriminator on one backend.
//
// One call to step(real) is one discriminator update and, every n_critic
// discriminator updates, one generator update, in the order of PyTorch's
// DCGAN example:
//   1. D on the real batch; 2. G on fresh noise; 3. D on the fake batch,
//   detached from G; 4. D optimizer step; 5. D on the same fake batch, now
//   for G's loss, backpropagated through D without D's parameter gradients
//   and then through G; 6. G optimizer step.
//
// Regularizers of the critic follow as extra template arguments:
// gradient penalties (gradient_penalty, r1_penalty, r2_penalty) add their
// parameter gradients after step 3, each with its own forward pass, and
// weight_clipping clamps D's parameters after step 4. A replay buffer of
// past fakes (trainer_options::replay_capacity) can stand in for part of
// each fake batch that D gets in step 3.
//
// A relativistic objective (relativistic_average<...>) couples the real and
// fake logits, so its real-logit gradient is known only after step 3. D
// caches one batch, so after backpropagating the fake batch the trainer
// runs D on the real batch again. That pass starts from the layer-noise
// position and the buffers (batch-norm statistics, spectral-norm vectors)
// of the first real pass. The trainer backpropagates the real gradient and
// then restores the buffers as they were after the fake pass. The result
// equals one backward pass through both batches, at the cost of a second
// forward pass on the real batch. Step 5 then also runs D on the real
// batch, whose logits enter the generator loss, and backpropagates only the
// fake logits' gradient to G.

#include <algorithm>    // std::copy_n, std::min
#include <cmath>        // std::lround
#include <concepts>     // std::floating_point
#include <cstddef>      // std::size_t
#include <cstdint>      // std::int64_t, std::uint64_t
#include <filesystem>   // std::filesystem::path
#include <functional>   // std::function
#include <optional>     // std::optional
#include <span>         // std::span
#include <string>       // std::string
#include <type_traits>  // std::is_same_v
#include <vector>       // std::vector

#include "advgan/compose/gan.hpp"
#include "advgan/core/error.hpp"
#include "advgan/core/finite.hpp"
#include "advgan/core/philox.hpp"
#include "advgan/io/safetensors.hpp"
#include "advgan/objectives.hpp"
#include "advgan/optim.hpp"
#include "advgan/train/model_state.hpp"
#include "advgan/train/replay_buffer.hpp"

namespace advgan {

namespace detail {

/// The default optimizer options of gan_trainer: the DCGAN paper's Adam
/// settings (lr 2e-4, beta1 0.5), and another optimizer's own defaults.
template <class OptimizerOptions>
constexpr OptimizerOptions default_trainer_optimizer_options() {
  if constexpr (std::is_same_v<OptimizerOptions, adam_options>)
    return {2e-4, 0.5, 0.999};
  else
    return {};
}

}  // namespace detail

/// Settings of gan_trainer, with the DCGAN paper's values as defaults. The
/// two optimizer option types are those of the optimizers that the trainer
/// uses (see optimize_generator_with), Adam's unless chosen otherwise.
template <class GeneratorOptimizerOptions = adam_options,
          class DiscriminatorOptimizerOptions = adam_options>
struct basic_trainer_options {
  std::uint64_t seed = 0;
  /// Discriminator updates per generator update (5 for WGAN).
  std::size_t n_critic = 1;
  GeneratorOptimizerOptions generator_optimizer =
      detail::default_trainer_optimizer_options<GeneratorOptimizerOptions>();
  DiscriminatorOptimizerOptions discriminator_optimizer =
      detail::default_trainer_optimizer_options<DiscriminatorOptimizerOptions>();
  /// Decay of the generator's exponential moving average. Early updates use
  /// the smaller (1 + t) / (10 + t) after t updates, so the average follows
  /// the fast-changing weights of the first steps instead of staying near
  /// the initial ones.
  double ema_decay = 0.999;
  init_scheme init = init_scheme::dcgan;
  /// Samples in the fixed noise batch used for sample grids.
  std::size_t sample_count = 64;
  /// Past fakes kept for the discriminator; 0 turns the replay buffer off.
  std::size_t replay_capacity = 0;
  /// The share of each fake batch that the discriminator gets from the
  /// replay buffer once it contains samples, in [0, 1]. SimGAN uses 0.5.
  double replay_fraction = 0.5;
};

/// Settings of a gan_trainer that trains both networks with Adam.
using trainer_options = basic_trainer_options<>;

/// The outcome of one call to step().
struct step_record {
  std::int64_t iteration = 0;
  double discriminator_loss = 0;
  double generator_loss = 0;  // of the last generator update
  /// Mean sigmoid of the discriminator's logits on the real and fake
  /// batches, D(x) and D(G(z)) in the DCGAN paper's notation.
  double real_score = 0;
  double fake_score = 0;
  bool generator_updated = false;
  /// The sum of the gradient penalties evaluated in this step, before any
  /// lazy-regularization scale; 0 when none ran. discriminator_loss does not
  /// include it.
  double penalty = 0;
  /// The mean norm of D's input gradient at the last penalty's points.
  double penalty_gradient_norm = 0;
};

/// A critic regularizer that gan_trainer accepts as an extra template
/// argument: a gradient penalty or a parameter constraint.
template <class Regularizer>
concept regularizer = penalty<Regularizer> || parameter_constraint<Regularizer>;

/// The network whose optimizer an optimizer_choice selects.
enum class optimized_network { generator, discriminator };

/// An extra template argument of gan_trainer that trains one network with
/// Optimizer<scalar> in place of Adam, such as rmsprop for a WGAN critic.
/// Use it through optimize_generator_with and optimize_discriminator_with.
template <optimized_network Network, template <class> class Optimizer>
struct optimizer_choice {
  static constexpr optimized_network network = Network;
};

/// Trains the generator with Optimizer, as in gan_trainer<G, D, Objective,
/// Backend, optimize_generator_with<rmsprop>>.
template <template <class> class Optimizer>
using optimize_generator_with = optimizer_choice<optimized_network::generator, Optimizer>;

/// Trains the discriminator with Optimizer, as in gan_trainer<G, D,
/// wasserstein, Backend, weight_clipping<>, optimize_discriminator_with<rmsprop>>.
template <template <class> class Optimizer>
using optimize_discriminator_with = optimizer_choice<optimized_network::discriminator, Optimizer>;

namespace detail {

template <class T>
inline constexpr bool is_optimizer_choice = false;
template <optimized_network Network, template <class> class Optimizer>
inline constexpr bool is_optimizer_choice<optimizer_choice<Network, Optimizer>> = true;

/// Whether Argument is an optimizer_choice for Network.
template <optimized_network Network, class Argument>
constexpr bool chooses_optimizer_for() {
  if constexpr (is_optimizer_choice<Argument>)
    return Argument::network == Network;
  else
    return false;
}

/// The optimizer of Network for Scalar parameters: the one the first
/// optimizer_choice for Network among Arguments selects, else adam.
template <optimized_network Network, class Scalar, class... Arguments>
struct selected_optimizer {
  using type = adam<Scalar>;
};
template <optimized_network Network, class Scalar, class First, class... Rest>
struct selected_optimizer<Network, Scalar, First, Rest...>
    : selected_optimizer<Network, Scalar, Rest...> {};
template <optimized_network Network, class Scalar, template <class> class Optimizer, class... Rest>
struct selected_optimizer<Network, Scalar, optimizer_choice<Network, Optimizer>, Rest...> {
  using type = Optimizer<Scalar>;
};

/// Checks one regularizer against the critic at compile time: a penalty
/// needs a twice-differentiable critic without batch norm, and weight
/// clipping a critic without spectral_norm.
template <class CriticModel, class Regularizer>
constexpr bool check_regularizer() {
  if constexpr (penalty<Regularizer>)
    return check_penalisable_critic<CriticModel>();
  else if constexpr (parameter_constraint<Regularizer>)
    return check_clipping_critic<typename CriticModel::spec>();
  else
    return true;  // an optimizer_choice
}

}  // namespace detail

template <class Generator, class Discriminator, class Objective, class Backend,
          class... Regularizers>
requires(objective<Objective> || relativistic_objective<Objective>) &&
    ((regularizer<Regularizers> ||
      detail::is_optimizer_choice<Regularizers>)&&...) class gan_trainer {
  static_assert(gan_pair<Generator, Discriminator>::fits);
  static_assert((detail::check_regularizer<model<Discriminator, Backend>, Regularizers>() && ...));
  static_assert((detail::chooses_optimizer_for<optimized_network::generator, Regularizers>() + ... +
                 0) <= 1,
                "gan_trainer: optimize_generator_with appears more than once");
  static_assert((detail::chooses_optimizer_for<optimized_network::discriminator, Regularizers>() +
                 ... + 0) <= 1,
                "gan_trainer: optimize_discriminator_with appears more than once");

 public:
  using scalar = typename Backend::scalar;
  using tensor = typename Backend::tensor;
  using generator_model = model<Generator, Backend>;
  using discriminator_model = model<Discriminator, Backend>;
  using latent_shape = typename Generator::input_shape;
  using sample_shape = typename Generator::output_shape;
  /// The optimizers, adam<scalar> unless an optimize_generator_with or
  /// optimize_discriminator_with argument selects another.
  using generator_optimizer_type =
      typename detail::selected_optimizer<optimized_network::generator, scalar,
                                          Regularizers...>::type;
  using discriminator_optimizer_type =
      typename detail::selected_optimizer<optimized_network::discriminator, scalar,
                                          Regularizers...>::type;
  static_assert(optimizer<generator_optimizer_type> && optimizer<discriminator_optimizer_type>);
  using options_type = basic_trainer_options<typename generator_optimizer_type::options_type,
                                             typename discriminator_optimizer_type::options_type>;

  static constexpr const char* checkpoint_format = "advgan.checkpoint";
  static constexpr const char* checkpoint_version = "1";

  explicit gan_trainer(const options_type& options = {})
      : options_(options),
        generator_(options.seed, options.init),
        discriminator_(options.seed + 1, options.init),
        generator_optimizer_(generator_model::parameter_count, options.generator_optimizer),
        discriminator_optimizer_(discriminator_model::parameter_count,
                                 options.discriminator_optimizer),
        average_(std::span<const scalar>(generator_.parameters(), generator_model::parameter_count),
                 options.ema_decay),
        noise_(options.seed, 1),
        layer_noise_(options.seed, 2),
        penalty_noise_(options.seed, 4),
        replay_noise_(options.seed, 5) {
    if (options.n_critic == 0) throw argument_error("trainer: n_critic must be >= 1, got 0");
    if (options.sample_count == 0) throw argument_error("trainer: sample_count must be >= 1");
    if (!(options.replay_fraction >= 0 && options.replay_fraction <= 1))
      throw argument_error(detail::concat("trainer: replay_fraction must be in [0, 1], got ",
                                          options.replay_fraction));
    if (options.replay_capacity > 0) replay_.emplace(options.replay_capacity, sample_shape::size);
    generator_.check_non_finite(true);
    discriminator_.check_non_finite(true);
    constrain_discriminator();
    philox fixed(options.seed, 3);
    Backend::resize(fixed_noise_, options.sample_count, latent_shape::channels,
                    latent_shape::height, latent_shape::width);
    Backend::fill_normal(Backend::data(fixed_noise_), Backend::size(fixed_noise_), fixed, 0, 1);
  }

  /// Runs one discriminator update on `real` (N samples of sample_shape,
  /// NCHW) and, every n_critic calls, one generator update.
  ///
  /// A bad batch leaves the trainer unchanged. A batch that is empty or not
  /// of sample_shape (shape_error) or contains a NaN or infinity (numeric_error)
  /// is rejected before anything changes. A batch size that a layer cannot
  /// take raises argument_error in a forward pass, for example batch norm
  /// over a single value or a minibatch_stddev group that does not divide
  /// the batch. step() then restores the iteration, the generator positions
  /// and both models' buffers before it rethrows.
  ///
  /// A NaN or infinity that arises during the step, in a layer output, a
  /// loss or a gradient, throws numeric_error and leaves the step half done:
  /// iteration() counts the failed step, the noise generators and the
  /// batch-norm statistics have moved on, and the replay buffer may hold the
  /// step's fakes. When the failure is in the generator update, the
  /// discriminator has also taken its update and the critic step counter
  /// has advanced. The generator's weights, its optimizer and its average
  /// change only after every check of the generator update has passed, so
  /// they stay as they were. step() writes no file, so the last checkpoint
  /// that save_checkpoint() wrote is intact: load_checkpoint() returns the
  /// trainer to it.
  step_record step(const tensor& real) {
    check_input(real);
    const std::size_t batch = Backend::shape(real)[0];
    save_step_start();
    step_record record;
    record.iteration = ++iteration_;
    try {
      discriminator_step(real, batch, record);
    } catch (const argument_error&) {
      restore_step_start();
      throw;
    } catch (const shape_error&) {
      restore_step_start();
      throw;
    }
    if (++critic_steps_ % options_.n_critic == 0) {
      generator_step(real, batch, record);
      record.generator_updated = true;
    }
    record.generator_loss = last_generator_loss_;
    return record;
  }

  /// Generates images from the fixed noise batch with the averaged
  /// generator weights, in evaluation mode, into `out`.
  void sample_fixed(tensor& out, bool use_average = true) {
    generate(fixed_noise_, out, use_average);
  }

  /// Generates from `latent` in evaluation mode into `out`.
  void generate(const tensor& latent, tensor& out, bool use_average = true) {
    const bool was_training = generator_.training();
    generator_.eval();
    auto run = [&] { out = generator_.forward(latent); };
    if (use_average) {
      auto applied = average_.apply(generator_parameters());
      run();
    } else {
      run();
    }
    generator_.train(was_training);
  }

  /// Writes the whole training state to `path` atomically: both models,
  /// both optimizers, the generator average, the generators' positions and
  /// the iteration. `extra` adds caller state (a data position) as int64.
  void save_checkpoint(const std::filesystem::path& path,
                       const std::map<std::string, std::int64_t>& extra = {}) {
    io::safetensors file;
    file.set_metadata("format", checkpoint_format);
    file.set_metadata("version", checkpoint_version);
    store_model(file, "generator.", generator_);
    store_model(file, "discriminator.", discriminator_);
    store_optimizer(file, "generator_optimizer.", generator_optimizer_);
    store_optimizer(file, "discriminator_optimizer.", discriminator_optimizer_);
    store_optimizer(file, "generator_ema.", average_);
    const std::int64_t counters[] = {iteration_, static_cast<std::int64_t>(critic_steps_),
                                     static_cast<std::int64_t>(noise_.offset()),
                                     static_cast<std::int64_t>(layer_noise_.offset())};
    file.add<std::int64_t>("trainer.counters", {4}, counters);
    file.add<double>("trainer.last_generator_loss", {},
                     std::span<const double>(&last_generator_loss_, 1));
    for (const auto& [name, value] : extra)
      file.add<std::int64_t>("extra." + name, {}, std::span<const std::int64_t>(&value, 1));
    store_regularization_state(file);
    file.save(path);
  }

  /// Restores the state written by save_checkpoint. Every tensor is checked
  /// before anything changes, and a checkpoint without optimizer state is
  /// rejected rather than resumed with cold optimizers.
  std::map<std::string, std::int64_t> load_checkpoint(const std::filesystem::path& path) {
    const io::safetensors file = io::safetensors::load(path);
    check_checkpoint_format(file);
    check_model(file, "generator.", generator_);
    check_model(file, "discriminator.", discriminator_);
    check_optimizer(file, "generator_optimizer.", generator_optimizer_);
    check_optimizer(file, "discriminator_optimizer.", discriminator_optimizer_);
    check_optimizer(file, "generator_ema.", average_);
    detail::check_tensor_shape(file, "trainer.counters", {4});
    detail::check_tensor_shape(file, "trainer.last_generator_loss", {});
    check_regularization_state(file);

    // Every value is read and converted into staging buffers first, so one
    // that does not convert (1e300 into a float weight) leaves the trainer
    // as it was.
    detail::staged_values generator_values = detail::stage_model(file, "generator.", generator_);
    detail::staged_values discriminator_values =
        detail::stage_model(file, "discriminator.", discriminator_);
    detail::staged_values optimizer_values;
    generator_optimizer_.visit_state(
        optimizer_state_stage{file, "generator_optimizer.", optimizer_values});
    discriminator_optimizer_.visit_state(
        optimizer_state_stage{file, "discriminator_optimizer.", optimizer_values});
    average_.visit_state(optimizer_state_stage{file, "generator_ema.", optimizer_values});
    std::int64_t counters[4];
    file.read_into<std::int64_t>("trainer.counters", {4}, counters);
    check_counters(file, counters);
    double last_generator_loss = 0;
    file.read_into<double>("trainer.last_generator_loss", {},
                           std::span<double>(&last_generator_loss, 1));
    std::map<std::string, std::int64_t> extra;
    for (const std::string& name : file.names()) {
      if (name.rfind("extra.", 0) != 0) continue;
      std::int64_t value = 0;
      file.read_into<std::int64_t>(name, {}, std::span<std::int64_t>(&value, 1));
      extra[name.substr(6)] = value;
    }
    staged_regularization regularization = stage_regularization_state(file);

    detail::commit_model(generator_values, generator_);
    detail::commit_model(discriminator_values, discriminator_);
    generator_optimizer_.visit_state(optimizer_state_commit{optimizer_values});
    discriminator_optimizer_.visit_state(optimizer_state_commit{optimizer_values});
    average_.visit_state(optimizer_state_commit{optimizer_values});
    last_generator_loss_ = last_generator_loss;
    iteration_ = counters[0];
    critic_steps_ = static_cast<std::size_t>(counters[1]);
    noise_.seek(static_cast<std::uint64_t>(counters[2]));
    layer_noise_.seek(static_cast<std::uint64_t>(counters[3]));
    commit_regularization_state(regularization);
    return extra;
  }

  /// Writes the generator alone, with the averaged weights when
  /// `use_average`, as a safetensors file with PyTorch's state_dict names.
  void save_generator(const std::filesystem::path& path, bool use_average = true) {
    const std::map<std::string, std::string> metadata{
        {"format", "advgan.generator"},
        {"latent_shape", detail::concat(latent_shape::channels, ",", latent_shape::height, ",",
                                        latent_shape::width)},
        {"sample_shape", detail::concat(sample_shape::channels, ",", sample_shape::height, ",",
                                        sample_shape::width)}};
    if (!use_average) {
      save_model(path, generator_, metadata);
      return;
    }
    auto applied = average_.apply(generator_parameters());
    save_model(path, generator_, metadata);
  }

  generator_model& generator() { return generator_; }
  discriminator_model& discriminator() { return discriminator_; }
  generator_optimizer_type& generator_optimizer() { return generator_optimizer_; }
  discriminator_optimizer_type& discriminator_optimizer() { return discriminator_optimizer_; }
  ema<scalar>& generator_average() { return average_; }
  std::int64_t iteration() const { return iteration_; }
  const options_type& options() const { return options_; }
  /// The replay buffer, or null when options().replay_capacity is 0.
  replay_buffer<Backend>* replay() { return replay_ ? &*replay_ : nullptr; }

 private:
  std::span<scalar> generator_parameters() {
    return {generator_.parameters(), generator_model::parameter_count};
  }

  /// The state that a step's forward passes change before any update: the
  /// iteration, the generator positions and both models' buffers.
  struct step_start_state {
    std::int64_t iteration = 0;
    std::uint64_t noise_offset = 0;
    std::uint64_t layer_noise_offset = 0;
    std::uint64_t penalty_noise_offset = 0;
    std::uint64_t replay_noise_offset = 0;
    std::vector<scalar> buffer_values;
    std::vector<std::int64_t> buffer_counters;
  };

  /// Records the step start; allocates nothing after the first step.
  void save_step_start() {
    step_start_.iteration = iteration_;
    step_start_.noise_offset = noise_.offset();
    step_start_.layer_noise_offset = layer_noise_.offset();
    step_start_.penalty_noise_offset = penalty_noise_.offset();
    step_start_.replay_noise_offset = replay_noise_.offset();
    step_start_.buffer_values.clear();
    step_start_.buffer_counters.clear();
    generator_.save_buffers(step_start_.buffer_values, step_start_.buffer_counters);
    discriminator_.save_buffers(step_start_.buffer_values, step_start_.buffer_counters);
  }

  // NOTE: the replay buffer is not restored. Its samples change only after
  // the generator's forward pass, and the passes after that take the same
  // batch size, so a batch size that a layer rejects fails before it.
  void restore_step_start() {
    iteration_ = step_start_.iteration;
    noise_.seek(step_start_.noise_offset);
    layer_noise_.seek(step_start_.layer_noise_offset);
    penalty_noise_.seek(step_start_.penalty_noise_offset);
    replay_noise_.seek(step_start_.replay_noise_offset);
    std::size_t value_position = 0;
    std::size_t counter_position = 0;
    generator_.restore_buffers(step_start_.buffer_values, value_position,
                               step_start_.buffer_counters, counter_position);
    discriminator_.restore_buffers(step_start_.buffer_values, value_position,
                                   step_start_.buffer_counters, counter_position);
  }

  /// Throws shape_error for a batch that is empty or not of sample_shape,
  /// and numeric_error for a NaN or infinity in it.
  void check_input(const tensor& real) {
    detail::expect_sample_shape<sample_shape, Backend>("sequential input", real);
    const std::size_t at = Backend::first_non_finite(Backend::data(real), Backend::size(real));
    if (at < Backend::size(real))
      throw numeric_error("input batch", iteration_ + 1, "real samples", at,
                          static_cast<double>(Backend::data(real)[at]));
  }

  /// Throws numeric_error naming the first layer of `m` whose output in the
  /// last forward pass is not finite, if any, also when a later layer such
  /// as tanh maps the value back to a finite one. The models scan each
  /// layer's output inside forward() (check_non_finite), so this reads the
  /// result of that scan.
  template <class Model>
  void check_finite_activations(Model& m, const char* model_name, const char* pass) {
    const non_finite_location where = m.first_non_finite_activation();
    if (where.layer == Model::layer_count) return;
    throw numeric_error(detail::concat(model_name, " layer ", where.layer, " (",
                                       Model::layer_kind(where.layer), ")"),
                        iteration_, detail::concat("output on the ", pass), where.index,
                        where.value);
  }

  /// Throws numeric_error naming the first parameter of `m` whose gradient
  /// is not finite, if any.
  template <class Model>
  void check_finite_gradients(Model& m, const char* model_name) {
    const std::size_t count = Model::parameter_count;
    if (Backend::first_non_finite(m.gradients(), count) == count) return;
    m.visit_parameters(
        [&](const std::string& name, scalar*, scalar* grad, const parameter_spec& spec) {
          const std::size_t at = Backend::first_non_finite(grad, spec.size());
          if (at < spec.size())
            throw numeric_error(detail::concat(model_name, " parameter ", name), iteration_,
                                "gradient", at, static_cast<double>(grad[at]));
        });
  }

  static void check_finite_loss(double loss, const char* which, std::int64_t iteration) {
    if (!detail::is_finite(loss)) throw numeric_error(which, iteration, "loss", 0, loss);
  }

  static double mean_sigmoid(const tensor& logits) {
    double total = 0;
    const scalar* x = Backend::data(logits);
    for (std::size_t i = 0; i < Backend::size(logits); ++i)
      total += activation::sigmoid_function::value(static_cast<double>(x[i]));
    return total / static_cast<double>(Backend::size(logits));
  }

  void draw_noise(std::size_t batch) {
    Backend::resize(latent_, batch, latent_shape::channels, latent_shape::height,
                    latent_shape::width);
    Backend::fill_normal(Backend::data(latent_), Backend::size(latent_), noise_, 0, 1);
  }

  void discriminator_step(const tensor& real, std::size_t batch, step_record& record) {
    discriminator_.train();
    generator_.train();
    discriminator_.zero_grad();

    // 1. The real batch. The objectives here are sums of a real and a fake
    // term, so the real term's gradient does not depend on the fake logits
    // and can be backpropagated before the fake pass overwrites D's cache.
    // A relativistic objective's real gradient is known only after step 3.
    [[maybe_unused]] const discriminator_snapshot before_real = snapshot_discriminator();
    real_logits_ = discriminator_.forward(real, &layer_noise_);
    check_finite_activations(discriminator_, "discriminator", "real batch");
    Backend::resize(real_grad_, Backend::shape(real_logits_));
    Backend::resize(fake_grad_, Backend::shape(real_logits_));
    if constexpr (!relativistic) {
      Backend::fill(Backend::data(fake_logits_scratch()), batch, scalar(0));
      Objective::discriminator_loss(logits_span(real_logits_), logits_span(fake_logits_),
                                    grad_span(real_grad_), grad_span(fake_grad_));
      discriminator_.backward(real_grad_, nullptr);
    }

    // 2-3. A fake batch from fresh noise, detached from the generator, in
    // part replaced by past fakes when the replay buffer is on.
    draw_noise(batch);
    const tensor& generated = generator_.forward(latent_, &layer_noise_);
    check_finite_activations(generator_, "generator", "noise batch");
    const tensor& fake = replay_ ? mix_replayed_fakes(generated, batch) : generated;
    fake_logits_ = discriminator_.forward(fake, &layer_noise_);
    check_finite_activations(discriminator_, "discriminator", "fake batch");
    const double loss =
        Objective::discriminator_loss(logits_span(real_logits_), logits_span(fake_logits_),
                                      grad_span(real_grad_), grad_span(fake_grad_));
    check_finite_loss(loss, "discriminator", iteration_);
    discriminator_.backward(fake_grad_, nullptr);
    if constexpr (relativistic) backward_real_again(real, before_real);
    (apply_penalty<Regularizers>(real, fake, record), ...);
    check_finite_gradients(discriminator_, "discriminator");

    // 4. The update, then any parameter constraint.
    discriminator_optimizer_.step(
        {discriminator_.parameters(), discriminator_model::parameter_count},
        {discriminator_.gradients(), discriminator_model::parameter_count});
    constrain_discriminator();
    record.discriminator_loss = loss;
    record.real_score = mean_sigmoid(real_logits_);
    record.fake_score = mean_sigmoid(fake_logits_);
  }

  void generator_step([[maybe_unused]] const tensor& real, std::size_t batch, step_record&) {
    (void)batch;
    generator_.zero_grad();
    // 5. D on the same fake batch, now updated, for the generator's loss.
    // The generator's activations still hold the fake batch of step 2. A
    // relativistic loss also needs D's logits on the real batch; their
    // gradient goes nowhere, because real data does not depend on G.
    if constexpr (relativistic) {
      generator_real_logits_ = discriminator_.forward(real, &layer_noise_);
      check_finite_activations(discriminator_, "discriminator", "generator step real batch");
    }
    const tensor& fake = generator_.output();
    const tensor& logits = discriminator_.forward(fake, &layer_noise_);
    check_finite_activations(discriminator_, "discriminator", "generator step");
    const double loss = generator_loss(logits);
    check_finite_loss(loss, "generator", iteration_);
    discriminator_.backward(fake_grad_, &sample_grad_, backward_context{false});
    generator_.backward(sample_grad_, nullptr);
    check_finite_gradients(generator_, "generator");

    // 6. The update, then the running average of the generator's weights.
    generator_optimizer_.step({generator_.parameters(), generator_model::parameter_count},
                              {generator_.gradients(), generator_model::parameter_count});
    const auto updates = static_cast<double>(average_.update_count());
    average_.set_decay(std::min(options_.ema_decay, (1.0 + updates) / (10.0 + updates)));
    average_.update(
        std::span<const scalar>(generator_.parameters(), generator_model::parameter_count));
    last_generator_loss_ = loss;
  }

  static constexpr bool relativistic = relativistic_objective<Objective>;

  /// Returns the generator loss at D's logits on the fake batch and assigns
  /// its gradient with respect to them to fake_grad_.
  double generator_loss(const tensor& fake_logits) {
    if constexpr (relativistic)
      return Objective::generator_loss(logits_span(generator_real_logits_),
                                       logits_span(fake_logits), grad_span(real_grad_),
                                       grad_span(fake_grad_));
    else
      return Objective::generator_loss(logits_span(fake_logits), grad_span(fake_grad_));
  }

  /// D's layer-noise position and buffers, from which a forward pass can be
  /// run again exactly.
  struct discriminator_snapshot {
    std::uint64_t noise_offset = 0;
    std::vector<scalar> values;
    std::vector<std::int64_t> counters;
  };

  /// Appends D's buffers to a snapshot, in visit_buffers order.
  struct buffer_save {
    discriminator_snapshot& snapshot;
    void operator()(const std::string&, scalar* data, const parameter_spec& spec) const {
      snapshot.values.insert(snapshot.values.end(), data, data + spec.size());
    }
    void operator()(const std::string&, std::int64_t& counter) const {
      snapshot.counters.push_back(counter);
    }
  };

  /// Writes a snapshot back into D's buffers, in visit_buffers order.
  struct buffer_restore {
    const discriminator_snapshot& snapshot;
    std::size_t value_index = 0;
    std::size_t counter_index = 0;
    void operator()(const std::string&, scalar* data, const parameter_spec& spec) {
      std::copy_n(snapshot.values.begin() + static_cast<std::ptrdiff_t>(value_index), spec.size(),
                  data);
      value_index += spec.size();
    }
    void operator()(const std::string&, std::int64_t& counter) {
      counter = snapshot.counters[counter_index++];
    }
  };

  /// Saves D's buffers and the layer-noise position; a no-op returning an
  /// empty snapshot unless the objective is relativistic.
  discriminator_snapshot snapshot_discriminator() {
    discriminator_snapshot snapshot;
    if constexpr (relativistic) {
      snapshot.noise_offset = layer_noise_.offset();
      discriminator_.visit_buffers(buffer_save{snapshot});
    }
    return snapshot;
  }

  void restore_discriminator(const discriminator_snapshot& snapshot) {
    layer_noise_.seek(snapshot.noise_offset);
    discriminator_.visit_buffers(buffer_restore{snapshot});
  }

  /// Runs D on the real batch again from the state before its first real
  /// pass, backpropagates real_grad_, and restores the state after the fake
  /// pass, so the step ends as if D had run once on each batch.
  void backward_real_again(const tensor& real, const discriminator_snapshot& before_real) {
    const discriminator_snapshot after_fake = snapshot_discriminator();
    restore_discriminator(before_real);
    discriminator_.forward(real, &layer_noise_);
    discriminator_.backward(real_grad_, nullptr);
    restore_discriminator(after_fake);
  }

  /// Adds one gradient penalty's parameter gradient to D's, on the critic
  /// steps its interval selects, scaled by that interval.
  template <class Regularizer>
  void apply_penalty(const tensor& real, const tensor& fake, step_record& record) {
    if constexpr (penalty<Regularizer>) {
      if (critic_steps_ % Regularizer::interval != 0) return;
      const penalty_record result = Regularizer::apply(discriminator_, real, fake, penalty_noise_,
                                                       static_cast<double>(Regularizer::interval));
      check_finite_loss(result.value, Regularizer::kind, iteration_);
      record.penalty += result.value;
      record.penalty_gradient_norm = result.mean_gradient_norm;
    }
  }

  /// Applies every parameter constraint to D.
  void constrain_discriminator() {
    [[maybe_unused]] auto apply = [this]<class Regularizer>() {
      if constexpr (parameter_constraint<Regularizer>)
        Regularizer::constrain(
            std::span<scalar>(discriminator_.parameters(), discriminator_model::parameter_count));
    };
    (apply.template operator()<Regularizers>(), ...);
  }

  /// Returns the fake batch for D: `generated` with its first
  /// round(replay_fraction * batch) samples replaced by past fakes once the
  /// buffer contains any. The generated samples then enter the buffer.
  const tensor& mix_replayed_fakes(const tensor& generated, std::size_t batch) {
    replayed_fake_ = generated;
    const auto replayed = static_cast<std::size_t>(
        std::lround(options_.replay_fraction * static_cast<double>(batch)));
    if (replay_->size() > 0) replay_->draw(Backend::data(replayed_fake_), replayed, replay_noise_);
    replay_->push(Backend::data(generated), batch, replay_noise_);
    return replayed_fake_;
  }

  /// Penalties draw mix factors and the replay buffer draws slots, so their
  /// generator positions and the buffer go into checkpoints. Trainers with
  /// neither write nothing extra, so their checkpoints stay as before.
  static constexpr bool has_penalty = (penalty<Regularizers> || ...);

  void store_regularization_state(io::safetensors& file) {
    if constexpr (has_penalty) {
      const auto offset = static_cast<std::int64_t>(penalty_noise_.offset());
      file.add<std::int64_t>("trainer.penalty_noise", {},
                             std::span<const std::int64_t>(&offset, 1));
    }
    if (!replay_) return;
    const std::int64_t state[] = {static_cast<std::int64_t>(replay_->size()),
                                  static_cast<std::int64_t>(replay_noise_.offset())};
    file.add<std::int64_t>("replay.state", {2}, state);
    file.add<scalar>("replay.samples", replay_shape(), std::span<const scalar>(replay_->storage()));
  }

  void check_regularization_state(const io::safetensors& file) const {
    if constexpr (has_penalty) detail::check_tensor_shape(file, "trainer.penalty_noise", {});
    if (!replay_) return;
    detail::check_tensor_shape(file, "replay.state", {2});
    detail::check_tensor_shape(file, "replay.samples", replay_shape());
  }

  /// The regularizers' state read from a checkpoint and checked, kept
  /// apart from the trainer until every other tensor has converted.
  struct staged_regularization {
    std::uint64_t penalty_offset = 0;
    std::size_t replay_size = 0;
    std::uint64_t replay_offset = 0;
    std::vector<scalar> replay_samples;
  };

  /// Reads and checks the regularizers' state without changing the trainer.
  /// Throws file_error naming the tensor for a value that does not convert,
  /// a negative generator position, a replay count above the capacity, or a
  /// replay sample that is NaN or infinite.
  staged_regularization stage_regularization_state(const io::safetensors& file) const {
    staged_regularization staged;
    if constexpr (has_penalty) {
      std::int64_t offset = 0;
      file.read_into<std::int64_t>("trainer.penalty_noise", {},
                                   std::span<std::int64_t>(&offset, 1));
      if (offset < 0)
        throw file_error(file.source(), "trainer.penalty_noise",
                         detail::concat("generator position ", offset, " is negative"));
      staged.penalty_offset = static_cast<std::uint64_t>(offset);
    }
    if (!replay_) return staged;
    std::int64_t state[2];
    file.read_into<std::int64_t>("replay.state", {2}, state);
    if (state[0] < 0 || static_cast<std::uint64_t>(state[0]) > options_.replay_capacity)
      throw file_error(file.source(), "replay.state",
                       detail::concat("stored count ", state[0], " is outside [0, ",
                                      options_.replay_capacity, "], the replay capacity"));
    if (state[1] < 0)
      throw file_error(file.source(), "replay.state",
                       detail::concat("generator position ", state[1], " is negative"));
    staged.replay_size = static_cast<std::size_t>(state[0]);
    staged.replay_offset = static_cast<std::uint64_t>(state[1]);
    staged.replay_samples.resize(replay_shape_size());
    file.read_into<scalar>("replay.samples", replay_shape(),
                           std::span<scalar>(staged.replay_samples));
    const std::size_t bad =
        Backend::first_non_finite(staged.replay_samples.data(), staged.replay_samples.size());
    if (bad < staged.replay_samples.size())
      throw file_error(file.source(), "replay.samples",
                       detail::concat("value ", staged.replay_samples[bad], " at index ", bad,
                                      " is not finite"));
    return staged;
  }

  /// Moves staged regularizer state into place. Nothing here throws,
  /// because stage_regularization_state() checked every value.
  void commit_regularization_state(staged_regularization& staged) {
    if constexpr (has_penalty) penalty_noise_.seek(staged.penalty_offset);
    if (!replay_) return;
    std::copy(staged.replay_samples.begin(), staged.replay_samples.end(),
              replay_->storage().begin());
    replay_->restore_size(staged.replay_size);
    replay_noise_.seek(staged.replay_offset);
  }

  /// Throws file_error unless every trainer counter (iteration, critic
  /// steps, two generator positions) is non-negative.
  static void check_counters(const io::safetensors& file, const std::int64_t (&counters)[4]) {
    constexpr const char* names[] = {"iteration", "critic step count", "noise generator position",
                                     "layer-noise generator position"};
    for (std::size_t i = 0; i < 4; ++i)
      if (counters[i] < 0)
        throw file_error(
            file.source(), "trainer.counters",
            detail::concat(names[i], " ", counters[i], " at index ", i, " is negative"));
  }

  std::size_t replay_shape_size() const { return options_.replay_capacity * sample_shape::size; }

  std::vector<std::size_t> replay_shape() const {
    return {options_.replay_capacity, sample_shape::channels, sample_shape::height,
            sample_shape::width};
  }

  tensor& fake_logits_scratch() {
    Backend::resize(fake_logits_, Backend::shape(real_logits_));
    return fake_logits_;
  }
  static std::span<const scalar> logits_span(const tensor& t) {
    return {Backend::data(t), Backend::size(t)};
  }
  static std::span<scalar> grad_span(tensor& t) { return {Backend::data(t), Backend::size(t)}; }

  void check_checkpoint_format(const io::safetensors& file) const {
    const auto& metadata = file.metadata();
    const auto format = metadata.find("format");
    if (format == metadata.end() || format->second != checkpoint_format)
      throw file_error(
          file.source(), "__metadata__.format",
          detail::concat("not an advgan checkpoint (expected format \"", checkpoint_format, "\")"));
    const auto version = metadata.find("version");
    if (version == metadata.end() || version->second != checkpoint_version)
      throw file_error(file.source(), "__metadata__.version",
                       detail::concat("unsupported checkpoint version \"",
                                      version == metadata.end() ? "" : version->second,
                                      "\"; this build reads version ", checkpoint_version));
  }

  template <class Optimizer>
  static void store_optimizer(io::safetensors& file, const std::string& prefix, Optimizer& o) {
    o.visit_state(optimizer_state_store{file, prefix});
  }
  template <class Optimizer>
  static void check_optimizer(const io::safetensors& file, const std::string& prefix,
                              Optimizer& o) {
    o.visit_state(optimizer_state_check{file, prefix});
  }

  struct optimizer_state_store {
    io::safetensors& file;
    const std::string& prefix;
    void operator()(const std::string& name, std::span<scalar> values) const {
      file.add<scalar>(prefix + name, {values.size()}, std::span<const scalar>(values));
    }
    void operator()(const std::string& name, std::int64_t& counter) const {
      file.add<std::int64_t>(prefix + name, {}, std::span<const std::int64_t>(&counter, 1));
    }
  };
  struct optimizer_state_check {
    const io::safetensors& file;
    const std::string& prefix;
    void operator()(const std::string& name, std::span<scalar> values) const {
      detail::check_tensor_shape(file, prefix + name, {values.size()});
    }
    void operator()(const std::string& name, std::int64_t&) const {
      detail::check_tensor_shape(file, prefix + name, {});
    }
  };
  struct optimizer_state_stage {
    const io::safetensors& file;
    const char* prefix;
    detail::staged_values& staged;
    void operator()(const std::string& name, std::span<scalar> values) const {
      staged.read<scalar>(file, std::string(prefix) + name, {values.size()}, values.size());
    }
    void operator()(const std::string& name, std::int64_t&) const {
      staged.read<std::int64_t>(file, std::string(prefix) + name, {}, 1);
    }
  };
  struct optimizer_state_commit {
    detail::staged_values& staged;
    void operator()(const std::string&, std::span<scalar> values) const {
      staged.commit(values.data());
    }
    void operator()(const std::string&, std::int64_t& counter) const { staged.commit(&counter); }
  };

  options_type options_;
  generator_model generator_;
  discriminator_model discriminator_;
  generator_optimizer_type generator_optimizer_;
  discriminator_optimizer_type discriminator_optimizer_;
  ema<scalar> average_;
  philox noise_;          // latent samples
  philox layer_noise_;    // stochastic layers such as dropout
  philox penalty_noise_;  // mix factors of gradient penalties
  philox replay_noise_;   // replay buffer slots
  std::optional<replay_buffer<Backend>> replay_;
  tensor replayed_fake_;
  tensor fixed_noise_;
  tensor latent_;
  tensor real_logits_;
  tensor fake_logits_;
  tensor real_grad_;
  tensor fake_grad_;
  tensor sample_grad_;
  tensor generator_real_logits_;  // D on the real batch in a relativistic generator step
  step_start_state step_start_;
  std::int64_t iteration_ = 0;
  std::size_t critic_steps_ = 0;
  double last_generator_loss_ = 0;
};

}  // namespace advgan
