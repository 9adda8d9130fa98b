# Trains 2 epochs straight, and 1 epoch then 1 more after a restart with
# --resume, at 1 thread; with CUT_SHORT, also a run cut short by
# --max-seconds in the middle of an epoch and then resumed. The final
# checkpoints and generator files must be equal byte for byte.
# DEMO_FLAGS adds options of the example under test, separated by commas.
include(${CMAKE_CURRENT_LIST_DIR}/run_checked.cmake)
string(REPLACE "," ";" DEMO_FLAGS "${DEMO_FLAGS}")
file(REMOVE_RECURSE ${WORK})
set(common --limit 384 --batch-size 32 --threads 1 --seed 5 ${DEMO_FLAGS})
set(runs split)
run_checked(${DEMO} --epochs 2 ${common} --out ${WORK}/straight)
run_checked(${DEMO} --epochs 1 ${common} --out ${WORK}/split)
run_checked(${DEMO} --epochs 2 ${common} --out ${WORK}/split --resume)
if(CUT_SHORT)
  # The last --max-seconds wins, so the first run stops after 1 second.
  run_checked(${DEMO} --epochs 2 ${common} --max-seconds 1 --out ${WORK}/cut)
  run_checked(${DEMO} --epochs 2 ${common} --out ${WORK}/cut --resume)
  list(APPEND runs cut)
endif()
foreach(run IN LISTS runs)
  foreach(file checkpoint.safetensors generator.safetensors)
    execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files
      ${WORK}/straight/${file} ${WORK}/${run}/${file} RESULT_VARIABLE different)
    if(different)
      message(FATAL_ERROR "${run}/${file} differs from the straight run's")
    endif()
  endforeach()
endforeach()
