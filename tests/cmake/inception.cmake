# The FID InceptionV3 against PyTorch: tests/interop/inception_interop.py
# builds torchvision's inception_v3 with the FID blocks and random weights,
# converts its state_dict with scripts/convert_inception_weights.py, and
# compares the features of inception_features (this program) with PyTorch's.
add_executable(inception_features ${CMAKE_CURRENT_SOURCE_DIR}/interop/inception_features.cpp)
target_link_libraries(inception_features PRIVATE advgan::advgan)
advgan_strict_warnings(inception_features)

# Needs python3-torch and python3-torchvision; the script exits with 77 when
# either is missing, which CTest reports as skipped.
add_test(NAME inception.features_match_pytorch
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/scripts/inception_interop.sh
    $<TARGET_FILE:inception_features> ${CMAKE_CURRENT_SOURCE_DIR}/interop/inception_interop.py
    ${CMAKE_CURRENT_BINARY_DIR}/inception-work)
set_tests_properties(inception.features_match_pytorch PROPERTIES SKIP_RETURN_CODE 77 RUN_SERIAL TRUE)
