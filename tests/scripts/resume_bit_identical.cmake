# Trains 2 epochs straight, and 1 epoch then 1 more after a restart with
# --resume, at 1 thread; the two final checkpoints must be equal byte for byte.
include(${CMAKE_CURRENT_LIST_DIR}/run_checked.cmake)
file(REMOVE_RECURSE ${WORK})
set(common --limit 384 --batch-size 32 --threads 1 --seed 5)
run_checked(${DEMO} --epochs 2 ${common} --out ${WORK}/straight)
run_checked(${DEMO} --epochs 1 ${common} --out ${WORK}/split)
run_checked(${DEMO} --epochs 2 ${common} --out ${WORK}/split --resume)
execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files
  ${WORK}/straight/checkpoint.safetensors ${WORK}/split/checkpoint.safetensors
  RESULT_VARIABLE different)
if(different)
  message(FATAL_ERROR "the resumed checkpoint differs from the straight run's")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files
  ${WORK}/straight/generator.safetensors ${WORK}/split/generator.safetensors
  RESULT_VARIABLE different)
if(different)
  message(FATAL_ERROR "the resumed generator file differs from the straight run's")
endif()
