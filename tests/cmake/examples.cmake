# End-to-end tests of the examples on the real Fashion-MNIST files: a short
# training run, an exact resume, hostile generator files, and moving a
# generator between advgan and PyTorch.
if(NOT ADVGAN_BUILD_EXAMPLES)
  return()
endif()

set(advgan_example_work ${CMAKE_CURRENT_BINARY_DIR}/examples-work)

add_test(NAME examples.demo_outputs
  COMMAND ${CMAKE_COMMAND}
    -DDEMO=$<TARGET_FILE:dcgan_fashion_mnist> -DGENERATE=$<TARGET_FILE:generate>
    -DWORK=${advgan_example_work}/demo
    -P ${CMAKE_CURRENT_SOURCE_DIR}/scripts/demo_outputs.cmake)

add_test(NAME examples.resume_bit_identical
  COMMAND ${CMAKE_COMMAND} -DDEMO=$<TARGET_FILE:dcgan_fashion_mnist>
    -DDEMO_FLAGS=--no-metrics,--max-seconds,0 -DCUT_SHORT=ON
    -DWORK=${advgan_example_work}/resume
    -P ${CMAKE_CURRENT_SOURCE_DIR}/scripts/resume_bit_identical.cmake)

add_test(NAME examples.generate_rejects_bad_files
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/scripts/generate_bad_files.sh $<TARGET_FILE:generate>
    ${advgan_example_work}/hostile)

# Needs python3-torch; the script exits with 77 when it is missing, which
# CTest reports as skipped.
add_test(NAME examples.generator_interop_pytorch
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/scripts/generator_interop.sh
    $<TARGET_FILE:dcgan_fashion_mnist> $<TARGET_FILE:generate>
    ${CMAKE_CURRENT_SOURCE_DIR}/interop/generator_interop.py ${advgan_example_work}/interop)
set_tests_properties(examples.generator_interop_pytorch PROPERTIES SKIP_RETURN_CODE 77)

set_tests_properties(examples.demo_outputs examples.resume_bit_identical
  examples.generator_interop_pytorch PROPERTIES RUN_SERIAL TRUE)
