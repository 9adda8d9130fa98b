#pragma once
// Concepts for the roles of a GAN's two models, and the compile-time check
// that a generator's output fits a discriminator's input.

#include <concepts>  // std::convertible_to

#include "advgan/compose/sequential.hpp"

namespace advgan {

/// Concepts for the roles in a GAN. They live in their own namespace
/// because user code that says `using namespace advgan;` naturally names
/// its own types `generator` and `discriminator`, and advgan::model is the
/// class template that binds a spec to a backend.
namespace concepts {

/// A model spec: sequential<input<...>, layers...> whose layers fit together.
template <class Spec>
concept model = is_sequential_v<Spec> && Spec::chain::valid;

/// A model spec that maps a latent sample to a generated one.
template <class Spec>
concept generator = model<Spec>;

/// A model spec that maps a sample to one logit.
template <class Spec>
concept discriminator = model<Spec> && Spec::output_shape::size == 1;

/// A bound layer (see layers/layer.hpp for the contract).
template <class Layer>
concept layer = advgan::layer<Layer>;

}  // namespace concepts

namespace detail {

/// Fails to compile when the generator's output shape differs from the
/// discriminator's input shape; the template arguments show both shapes.
template <class GeneratorOutput, class DiscriminatorInput>
struct check_generator_fits_discriminator {
  static constexpr bool value = std::is_same_v<GeneratorOutput, DiscriminatorInput>;
  static_assert(value,
                "advgan: the generator's output shape differs from the discriminator's input "
                "shape; see GeneratorOutput and DiscriminatorInput");
};

/// Fails to compile when the discriminator does not end in one value per
/// sample; a final flatten after a 1x1 convolution, or a dense<1>, fixes it.
template <class DiscriminatorOutput>
struct check_discriminator_output {
  static constexpr bool value = DiscriminatorOutput::size == 1;
  static_assert(value,
                "advgan: a discriminator must output one logit per sample; end it with "
                "dense<1> or with a convolution to 1x1x1; see DiscriminatorOutput");
};

}  // namespace detail

/// A generator and a discriminator that fit together. Naming this type for
/// a pair that does not fit is a compile error that shows both shapes.
template <class Generator, class Discriminator>
struct gan_pair {
  static_assert(concepts::model<Generator>, "advgan: the generator must be a sequential model");
  static_assert(concepts::model<Discriminator>,
                "advgan: the discriminator must be a sequential model");
  static constexpr bool fits =
      detail::check_generator_fits_discriminator<typename Generator::output_shape,
                                                 typename Discriminator::input_shape>::value &&
      detail::check_discriminator_output<typename Discriminator::output_shape>::value;

  using generator_type = Generator;
  using discriminator_type = Discriminator;
  using latent_shape = typename Generator::input_shape;
  using sample_shape = typename Generator::output_shape;
};

}  // namespace advgan
