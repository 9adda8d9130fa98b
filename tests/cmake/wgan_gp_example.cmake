# End-to-end tests of the WGAN-GP example on the real Fashion-MNIST files,
# with the DCGAN example's scripts: a short run that writes every promised
# output, and an exact resume, which covers the gradient penalty's random
# stream in the checkpoint.
if(NOT ADVGAN_BUILD_EXAMPLES)
  return()
endif()

set(advgan_wgan_gp_work ${CMAKE_CURRENT_BINARY_DIR}/wgan-gp-work)

add_test(NAME wgan_gp.example_outputs
  COMMAND ${CMAKE_COMMAND}
    -DDEMO=$<TARGET_FILE:wgan_gp_fashion_mnist> -DGENERATE=$<TARGET_FILE:generate>
    -DWORK=${advgan_wgan_gp_work}/demo
    -P ${CMAKE_CURRENT_SOURCE_DIR}/scripts/demo_outputs.cmake)

add_test(NAME wgan_gp.example_resume_bit_identical
  COMMAND ${CMAKE_COMMAND} -DDEMO=$<TARGET_FILE:wgan_gp_fashion_mnist>
    -DDEMO_FLAGS=--no-metrics,--max-seconds,0 -DCUT_SHORT=ON
    -DWORK=${advgan_wgan_gp_work}/resume
    -P ${CMAKE_CURRENT_SOURCE_DIR}/scripts/resume_bit_identical.cmake)

set_tests_properties(wgan_gp.example_outputs wgan_gp.example_resume_bit_identical
  PROPERTIES RUN_SERIAL TRUE)
