# Trains the demo for one short epoch on real data and checks that every
# promised output exists, then generates a grid from the saved generator.
include(${CMAKE_CURRENT_LIST_DIR}/run_checked.cmake)
file(REMOVE_RECURSE ${WORK})
run_checked(${DEMO} --epochs 1 --limit 640 --threads 2 --out ${WORK})
foreach(output epoch_1.png checkpoint.safetensors generator.safetensors metrics.jsonl)
  if(NOT EXISTS ${WORK}/${output})
    message(FATAL_ERROR "the demo did not write ${WORK}/${output}")
  endif()
endforeach()
file(STRINGS ${WORK}/metrics.jsonl lines)
list(LENGTH lines count)
if(count LESS 2)
  message(FATAL_ERROR "metrics.jsonl has ${count} lines, expected at least 2")
endif()
run_checked(${GENERATE} --generator ${WORK}/generator.safetensors --count 7
            --out ${WORK}/seven.png)
run_checked(${GENERATE} --generator ${WORK}/generator.safetensors --count 5
            --out ${WORK}/five.idx)
file(SIZE ${WORK}/five.idx idx_size)
# IDX header of 16 bytes, then 5 images of 28x28 bytes.
if(NOT idx_size EQUAL 3936)
  message(FATAL_ERROR "five.idx has ${idx_size} bytes, expected 3936")
endif()
