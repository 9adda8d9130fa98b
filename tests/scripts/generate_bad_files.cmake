# Feeds the generate tool files that are not valid generators: each must end
# with exit status 1 and a message naming the file, never a crash.
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK})
file(WRITE ${WORK}/empty.safetensors "")
file(WRITE ${WORK}/text.safetensors "this is not a safetensors file at all")
# A valid empty safetensors file: header "{}" padded to 8 bytes.
string(ASCII 8 0 0 0 0 0 0 0 header_length)
file(WRITE ${WORK}/no_tensors.safetensors "${header_length}{}      ")
file(WRITE ${WORK}/huge_header.safetensors "\xff\xff\xff\xff\xff\xff\xff\x7f{}")
set(cases empty text no_tensors huge_header missing)
foreach(case IN LISTS cases)
  set(path ${WORK}/${case}.safetensors)
  execute_process(COMMAND ${GENERATE} --generator ${path} --out ${WORK}/${case}.png
    RESULT_VARIABLE status ERROR_VARIABLE err)
  if(NOT status EQUAL 1)
    message(FATAL_ERROR "generate on ${case}: exit status ${status}, expected 1\n${err}")
  endif()
  string(FIND "${err}" "${path}" named)
  if(named EQUAL -1)
    message(FATAL_ERROR "generate on ${case}: message does not name the file: ${err}")
  endif()
  message(STATUS "${case}: ${err}")
endforeach()
