# Trains 2 epochs straight, 1 epoch then 1 more after a restart with
# --resume, and a run cut short by --max-seconds in the middle of an epoch
# then resumed, all at 1 thread; the final checkpoints and generator files
# must be equal byte for byte.
include(${CMAKE_CURRENT_LIST_DIR}/run_checked.cmake)
file(REMOVE_RECURSE ${WORK})
set(common --limit 384 --batch-size 32 --threads 1 --seed 5 --no-metrics)
run_checked(${DEMO} --epochs 2 ${common} --max-seconds 0 --out ${WORK}/straight)
run_checked(${DEMO} --epochs 1 ${common} --max-seconds 0 --out ${WORK}/split)
run_checked(${DEMO} --epochs 2 ${common} --max-seconds 0 --out ${WORK}/split --resume)
run_checked(${DEMO} --epochs 2 ${common} --max-seconds 1 --out ${WORK}/cut)
run_checked(${DEMO} --epochs 2 ${common} --max-seconds 0 --out ${WORK}/cut --resume)
foreach(run split cut)
  foreach(file checkpoint.safetensors generator.safetensors)
    execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files
      ${WORK}/straight/${file} ${WORK}/${run}/${file} RESULT_VARIABLE different)
    if(different)
      message(FATAL_ERROR "${run}/${file} differs from the straight run's")
    endif()
  endforeach()
endforeach()
