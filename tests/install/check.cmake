# Installs an advgan build tree into a scratch prefix and builds the downstream
# project in this folder against it. Run with cmake -P and these variables:
#   MODE            find_package: configure and build with CMake, using only
#                   CMAKE_PREFIX_PATH=<prefix>;
#                   pkg_config: compile main.cpp with the flags of
#                   `pkg-config --cflags --libs advgan`.
#   BUILD_DIR       the configured advgan build tree to install.
#   WORK_DIR        scratch folder, emptied first; holds prefix/ and build/.
#   SOURCE_DIR      the advgan source tree, only to check that nothing uses it.
#   CONFIG          build configuration, may be empty.
#   INCLUDE_DIR     CMAKE_INSTALL_INCLUDEDIR of the advgan build.
#   CXX_COMPILER    the C++ compiler of the advgan build.
#   GENERATOR, MAKE_PROGRAM   the CMake generator and build tool (find_package).
#   PKG_CONFIG      the pkg-config program (pkg_config).
#   VERSION         the advgan version that pkg-config must report (pkg_config).
cmake_minimum_required(VERSION 3.20)

foreach(required MODE BUILD_DIR WORK_DIR SOURCE_DIR INCLUDE_DIR CXX_COMPILER)
  if(NOT DEFINED ${required} OR "${${required}}" STREQUAL "")
    message(FATAL_ERROR "check.cmake: ${required} is not set")
  endif()
endforeach()

set(project_dir "${CMAKE_CURRENT_LIST_DIR}")
set(prefix "${WORK_DIR}/prefix")
set(source_include "${SOURCE_DIR}/include")
set(config_args)
if(NOT "${CONFIG}" STREQUAL "")
  set(config_args --config "${CONFIG}")
endif()

# Runs a command, prints it, and stops the check with its output when it fails.
# message(FATAL_ERROR) rewraps its text, so the output goes out first, unchanged.
function(run_step description)
  message(STATUS "${description}: ${ARGN}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE result OUTPUT_VARIABLE output
                  ERROR_VARIABLE output)
  if(NOT result EQUAL 0)
    message(NOTICE "${output}")
    message(FATAL_ERROR "${description} failed with exit status ${result}")
  endif()
  set(step_output "${output}" PARENT_SCOPE)
endfunction()

# -- Install -------------------------------------------------------------------

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
run_step("install" "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${prefix}" ${config_args})
if(IS_ABSOLUTE "${INCLUDE_DIR}")
  message(FATAL_ERROR "CMAKE_INSTALL_INCLUDEDIR is absolute (${INCLUDE_DIR}), so the install "
                      "cannot be moved to a scratch prefix")
endif()
set(prefix_include "${prefix}/${INCLUDE_DIR}")
if(NOT EXISTS "${prefix_include}/advgan/advgan.hpp")
  message(FATAL_ERROR "the install tree lacks ${INCLUDE_DIR}/advgan/advgan.hpp")
endif()
foreach(installed advganConfig.cmake advganConfigVersion.cmake advganTargets.cmake advgan.pc)
  file(GLOB_RECURSE found "${prefix}/*/${installed}")
  if(NOT found)
    message(FATAL_ERROR "the install tree lacks ${installed}")
  endif()
endforeach()

# -- find_package --------------------------------------------------------------

if(MODE STREQUAL "find_package")
  set(build "${WORK_DIR}/build")
  set(generator_args)
  if(NOT "${GENERATOR}" STREQUAL "")
    list(APPEND generator_args -G "${GENERATOR}")
  endif()
  if(NOT "${MAKE_PROGRAM}" STREQUAL "")
    list(APPEND generator_args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
  endif()
  set(build_type "${CONFIG}")
  if(build_type STREQUAL "")
    set(build_type Release)
  endif()
  # The package registry could point back at a build tree, so it is off.
  run_step("configure downstream project"
    "${CMAKE_COMMAND}" -S "${project_dir}" -B "${build}" ${generator_args}
    "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}" "-DCMAKE_BUILD_TYPE=${build_type}"
    "-DCMAKE_PREFIX_PATH=${prefix}" "-DADVGAN_EXPECTED_PREFIX=${prefix}"
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DCMAKE_EXPORT_COMPILE_COMMANDS=ON)

  # Makefile and Ninja generators write the exact compile commands: none may
  # name the source tree's include folder.
  if(EXISTS "${build}/compile_commands.json")
    file(READ "${build}/compile_commands.json" commands)
    string(FIND "${commands}" "${source_include}" position)
    if(NOT position EQUAL -1)
      message(NOTICE "${commands}")
      message(FATAL_ERROR "the downstream compile commands above use ${source_include}")
    endif()
  endif()

  run_step("build downstream project" "${CMAKE_COMMAND}" --build "${build}" ${config_args})
  run_step("run downstream program" "${build}/bin/advgan_downstream")
  message(STATUS "${step_output}")
  return()
endif()

# -- pkg-config ----------------------------------------------------------------

if(NOT MODE STREQUAL "pkg_config")
  message(FATAL_ERROR "check.cmake: MODE must be find_package or pkg_config, got '${MODE}'")
endif()
if("${PKG_CONFIG}" STREQUAL "" OR NOT EXISTS "${PKG_CONFIG}")
  message(FATAL_ERROR "pkg-config not found; install the Debian package pkg-config "
                      "(scripts/setup does) and configure again")
endif()

file(GLOB_RECURSE pc_file "${prefix}/*/advgan.pc")
list(GET pc_file 0 pc_file)
cmake_path(GET pc_file PARENT_PATH pc_dir)
set(ENV{PKG_CONFIG_PATH} "${pc_dir}")
run_step("read the package version" "${PKG_CONFIG}" --modversion advgan)
string(STRIP "${step_output}" reported_version)
if(NOT reported_version STREQUAL VERSION)
  message(FATAL_ERROR "pkg-config reports advgan ${reported_version}, expected ${VERSION}")
endif()

run_step("read the compile and link flags" "${PKG_CONFIG}" --cflags --libs advgan)
string(STRIP "${step_output}" flags_text)
message(STATUS "pkg-config flags: ${flags_text}")
separate_arguments(flags UNIX_COMMAND "${flags_text}")
set(prefix_include_found FALSE)
foreach(flag IN LISTS flags)
  if(flag MATCHES "^-I(.+)$")
    set(dir "${CMAKE_MATCH_1}")
    file(REAL_PATH "${dir}" real_dir)
    file(REAL_PATH "${source_include}" real_source_include)
    if(real_dir STREQUAL real_source_include)
      message(FATAL_ERROR "pkg-config names the source include folder ${dir}")
    endif()
    file(REAL_PATH "${prefix_include}" real_prefix_include)
    if(real_dir STREQUAL real_prefix_include)
      set(prefix_include_found TRUE)
    endif()
  endif()
endforeach()
if(NOT prefix_include_found)
  message(FATAL_ERROR "pkg-config flags lack -I for ${prefix_include}: ${flags_text}")
endif()

set(program "${WORK_DIR}/advgan_downstream")
run_step("compile with pkg-config flags"
  "${CXX_COMPILER}" -std=c++20 "${project_dir}/main.cpp" -o "${program}" ${flags})
run_step("run downstream program" "${program}")
message(STATUS "${step_output}")
