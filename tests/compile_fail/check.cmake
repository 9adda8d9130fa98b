# Builds one compile-check target and judges the result. Run with cmake -P
# from the script that advgan_compile_fail() generates, which sets:
#   BUILD_DIR   the advgan build tree.
#   TARGET      the OBJECT library that compiles the snippet.
#   EXPECT      "reject": the build must fail and its output match every
#               regex in REGEXES; "accept": the build must succeed.
#   REGEXES     CMake regular expressions (EXPECT reject only).
# CONFIG, the build configuration, comes on the command line and may be empty.
cmake_minimum_required(VERSION 3.20)

set(build_args --build "${BUILD_DIR}" --target "${TARGET}")
if(NOT "${CONFIG}" STREQUAL "")
  list(APPEND build_args --config "${CONFIG}")
endif()
execute_process(COMMAND "${CMAKE_COMMAND}" ${build_args}
                RESULT_VARIABLE result OUTPUT_VARIABLE output ERROR_VARIABLE output)

# Colored diagnostics (CMAKE_COLOR_DIAGNOSTICS) would put escape sequences
# inside the text the regexes look for.
string(ASCII 27 escape)
string(REGEX REPLACE "${escape}\\[[0-9;]*[mK]" "" output "${output}")

# message(FATAL_ERROR) rewraps its text, so the build output goes out first,
# unchanged.
if(EXPECT STREQUAL "accept")
  if(NOT result EQUAL 0)
    message(NOTICE "${output}")
    message(FATAL_ERROR "${TARGET} must compile, but the build above failed")
  endif()
  return()
endif()

if(NOT EXPECT STREQUAL "reject")
  message(FATAL_ERROR "check.cmake: EXPECT must be accept or reject, got '${EXPECT}'")
endif()
if(result EQUAL 0)
  message(NOTICE "${output}")
  message(FATAL_ERROR "${TARGET} compiled, but advgan must reject it")
endif()
set(missing)
foreach(regex IN LISTS REGEXES)
  if(NOT output MATCHES "${regex}")
    string(APPEND missing "\n  ${regex}")
  endif()
endforeach()
if(missing)
  message(NOTICE "${output}")
  message(FATAL_ERROR "${TARGET} failed to compile, but the build output above lacks:${missing}")
endif()
message(STATUS "${TARGET} was rejected with the expected diagnostic")
