# Compile-failure pairs for gan_pair: a generator whose output does not fit
# the discriminator's input, and a discriminator without a single logit.
include(advganCompileFail)

advgan_compile_fail(NAME generator_does_not_fit_discriminator
  SOURCE generator_does_not_fit_discriminator.cpp
  TWIN generator_fits_discriminator.cpp
  REGEX "advgan: the generator's output shape differs from the discriminator's input shape"
        "check_generator_fits_discriminator<advgan::shape<1, 28, 28>, advgan::shape<1, 32, 32> ?>")

advgan_compile_fail(NAME discriminator_outputs_many_values
  SOURCE discriminator_outputs_many_values.cpp
  TWIN discriminator_outputs_one_logit.cpp
  REGEX "advgan: a discriminator must output one logit per sample"
        "check_discriminator_output<advgan::shape<4, 1, 1> ?>")
