# Runs the fid tool on the Fashion-MNIST test images against themselves with
# --json. Identical sets must give a domain FID of 0 up to rounding and a
# precision and recall of exactly 1, since every sample has a copy at
# distance 0 in the other set.
execute_process(COMMAND ${FID} --json --classifier ${CLASSIFIER} ${IMAGES} ${IMAGES}
  RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "fid failed (${status}):\n${out}\n${err}")
endif()
message(STATUS "fid output: ${out}")
foreach(key fid kid kid_std precision recall)
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
