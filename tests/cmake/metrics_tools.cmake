# End-to-end tests of the fid tool on the real Fashion-MNIST test set and on
# folders of PNG files that it must reject, with the committed classifier.
if(NOT ADVGAN_BUILD_EXAMPLES)
  return()
endif()

set(advgan_metrics_work ${CMAKE_CURRENT_BINARY_DIR}/metrics-work)
set(advgan_classifier
  ${PROJECT_SOURCE_DIR}/examples/weights/fashion_mnist_classifier.safetensors)

add_test(NAME metrics_tools.fid_test_set_against_itself
  COMMAND ${CMAKE_COMMAND} -DFID=$<TARGET_FILE:fid> -DCLASSIFIER=${advgan_classifier}
    -DIMAGES=/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
    -P ${CMAKE_CURRENT_SOURCE_DIR}/scripts/fid_self.cmake)

# Writes its PNG files with Python's standard library; the script exits with
# 77 when no python3 is found, which CTest reports as skipped.
add_test(NAME metrics_tools.fid_rejects_bad_folders
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/scripts/fid_bad_folders.sh
    $<TARGET_FILE:fid> ${advgan_classifier} ${advgan_metrics_work}/bad-folders)
set_tests_properties(metrics_tools.fid_rejects_bad_folders PROPERTIES SKIP_RETURN_CODE 77)
