# Runs the fid tool on the Fashion-MNIST test images against themselves with
# --json. Identical sets must give a domain FID of 0 up to rounding and a
# precision and recall of exactly 1, since every sample has a copy at
# distance 0 in the other set. The classifier's class histogram of a set
# is the same on both sides, so mode coverage is 1 and its KL divergence 0.
execute_process(COMMAND ${FID} --json --classifier ${CLASSIFIER} ${IMAGES} ${IMAGES}
  RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "fid failed (${status}):\n${out}\n${err}")
endif()
message(STATUS "fid output: ${out}")
foreach(key fid kid kid_std precision recall mode_coverage min_class_share mode_kl)
  string(JSON ${key} ERROR_VARIABLE json_error GET "${out}" ${key})
  if(json_error)
    message(FATAL_ERROR "the JSON output lacks \"${key}\": ${json_error}\n${out}")
  endif()
endforeach()
# CMake compares numbers as doubles, so 1e-8 and 1.2e-13 compare correctly.
if(NOT fid GREATER_EQUAL 0 OR NOT fid LESS 1e-8)
  message(FATAL_ERROR "fid of the test set against itself is ${fid}, expected 0 within 1e-8")
endif()
if(NOT precision EQUAL 1 OR NOT recall EQUAL 1)
  message(FATAL_ERROR "precision ${precision} and recall ${recall} of identical sets, expected 1")
endif()
if(NOT mode_coverage EQUAL 1 OR NOT mode_kl EQUAL 0)
  message(FATAL_ERROR "mode coverage ${mode_coverage} and KL ${mode_kl} of identical sets, "
    "expected 1 and 0")
endif()
# The test set has 1,000 images per class and the classifier is 92% accurate,
# so its rarest predicted class holds well over 5% of them.
if(NOT min_class_share GREATER 0.05 OR NOT min_class_share LESS 0.1)
  message(FATAL_ERROR "smallest class share ${min_class_share}, expected in (0.05, 0.1)")
endif()
