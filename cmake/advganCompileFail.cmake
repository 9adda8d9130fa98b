# advgan_compile_fail: compile-failure tests in pairs.
#
#   include(advganCompileFail)
#   advgan_compile_fail(NAME <name> SOURCE <snippet.cpp> TWIN <twin.cpp>
#                       REGEX <regex> [<regex>...])
#
# registers two CTest tests:
#   compile_fail.<name>        passes only when SOURCE fails to compile and the
#                              build output matches every REGEX;
#   compile_fail.<name>.twin   passes only when TWIN compiles.
# TWIN is SOURCE with the mistake corrected, so a check that stops rejecting
# the mistake fails the first test, and a check that rejects too much fails
# the second. A test that only expected failure would also pass on a typo, so
# REGEX is required: match the text of advgan's static_assert message and the
# template arguments of the failing check. g++ 12 and clang++ 14 both print
# those, but clang++ also prints defaulted template arguments, so allow for
# them, for example "advgan::conv2d<4, 5, 1, 0(, true)?>".
# Regexes are CMake regular expressions and must not contain ';'.
#
# Relative SOURCE and TWIN paths are taken from tests/compile_fail/. Each file
# is compiled by the build system at test time, as an OBJECT library excluded
# from `all` that links advgan::advgan and uses the strict warning set, so it
# sees exactly the flags that tests and examples get. The tests share one
# RESOURCE_LOCK because concurrent builds of one tree can race.
include_guard(GLOBAL)

set(ADVGAN_COMPILE_CHECK_SCRIPT "${CMAKE_CURRENT_LIST_DIR}/../tests/compile_fail/check.cmake")

function(advgan_compile_fail)
  cmake_parse_arguments(PARSE_ARGV 0 arg "" "NAME;SOURCE;TWIN" "REGEX")
  if(arg_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "advgan_compile_fail: unknown arguments: ${arg_UNPARSED_ARGUMENTS}")
  endif()
  foreach(required NAME SOURCE TWIN REGEX)
    if(NOT arg_${required})
      message(FATAL_ERROR "advgan_compile_fail(${arg_NAME}): ${required} is missing")
    endif()
  endforeach()

  foreach(expect reject accept)
    if(expect STREQUAL "reject")
      set(source "${arg_SOURCE}")
      set(target "advgan_compile_fail_${arg_NAME}")
      set(test "compile_fail.${arg_NAME}")
    else()
      set(source "${arg_TWIN}")
      set(target "advgan_compile_fail_${arg_NAME}_twin")
      set(test "compile_fail.${arg_NAME}.twin")
    endif()
    cmake_path(ABSOLUTE_PATH source BASE_DIRECTORY "${PROJECT_SOURCE_DIR}/tests/compile_fail")
    if(NOT EXISTS "${source}")
      message(FATAL_ERROR "advgan_compile_fail(${arg_NAME}): ${source} does not exist")
    endif()

    add_library(${target} OBJECT EXCLUDE_FROM_ALL "${source}")
    target_link_libraries(${target} PRIVATE advgan::advgan)
    advgan_strict_warnings(${target})

    # The settings go into a generated script, so regexes reach the checker
    # without command-line quoting.
    set(script "${CMAKE_CURRENT_BINARY_DIR}/compile_fail/${test}.cmake")
    set(content "set(BUILD_DIR [==[${PROJECT_BINARY_DIR}]==])\n")
    string(APPEND content "set(TARGET [==[${target}]==])\n")
    string(APPEND content "set(EXPECT ${expect})\n")
    string(APPEND content "set(REGEXES)\n")
    foreach(regex IN LISTS arg_REGEX)
      string(APPEND content "list(APPEND REGEXES [==[${regex}]==])\n")
    endforeach()
    string(APPEND content "include([==[${ADVGAN_COMPILE_CHECK_SCRIPT}]==])\n")
    file(WRITE "${script}" "${content}")

    add_test(NAME ${test} COMMAND "${CMAKE_COMMAND}" "-DCONFIG=$<CONFIG>" -P "${script}")
    set_tests_properties(${test} PROPERTIES
      LABELS compile_fail
      RESOURCE_LOCK advgan_build_tree)
  endforeach()
endfunction()
