# Compile-failure pairs for critic regularizers: gradient penalties on a
# critic with batch norm or with a layer that has no tangent pass, and
# weight clipping together with spectral normalization.
include(advganCompileFail)

advgan_compile_fail(NAME gradient_penalty_on_batch_norm_critic
  SOURCE gradient_penalty_on_batch_norm_critic.cpp
  TWIN gradient_penalty_on_layer_norm_critic.cpp
  REGEX "advgan: a gradient penalty needs each sample's own input gradient, but batch norm makes each sample's gradient depend on the batch"
        "use layer_norm or instance_norm in the critic"
        "check_penalty_without_batch_norm<1, advgan::batch_norm_with<[a-z0-9:<>, ]*>, false>")

advgan_compile_fail(NAME r1_penalty_on_layer_without_tangent
  SOURCE r1_penalty_on_layer_without_tangent.cpp
  TWIN r1_penalty_on_twice_differentiable_critic.cpp
  REGEX "advgan: a gradient penalty differentiates the critic twice, but this layer has no tangent pass"
        "check_twice_differentiable<2, advgan::dropout<[a-z0-9:<>, ]*>, false>")

advgan_compile_fail(NAME trainer_penalty_on_batch_norm_critic
  SOURCE trainer_penalty_on_batch_norm_critic.cpp
  TWIN trainer_penalty_on_instance_norm_critic.cpp
  REGEX "batch norm makes each sample's gradient depend on the batch"
        "check_penalty_without_batch_norm<1, advgan::batch_norm_with<[a-z0-9:<>, ]*>, false>")

advgan_compile_fail(NAME weight_clipping_with_spectral_norm
  SOURCE weight_clipping_with_spectral_norm.cpp
  TWIN weight_clipping_without_spectral_norm.cpp
  REGEX "advgan: weight clipping and spectral normalization both bound the critic's Lipschitz constant"
        "check_clipping_without_spectral_norm<0, advgan::spectral_norm<advgan::conv2d<2, 3(, 1, 0, true)?> ?>, false>")

advgan_compile_fail(NAME gradient_penalty_on_minibatch_discrimination_critic
  SOURCE gradient_penalty_on_minibatch_discrimination_critic.cpp
  TWIN gradient_penalty_on_critic_without_minibatch_discrimination.cpp
  REGEX "advgan: a gradient penalty differentiates the critic twice, but minibatch_discrimination is not twice differentiable"
        "bound the critic with spectral_norm instead of a penalty"
        "check_penalty_without_minibatch_discrimination<3, advgan::minibatch_discrimination<3, 2>, false>")
