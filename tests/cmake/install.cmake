# Installed-package tests. Each installs this build tree into its own scratch
# prefix under the build folder and builds tests/install/ against it:
#   install.downstream_project  through find_package(advgan), with only
#                               CMAKE_PREFIX_PATH pointing at the prefix;
#   install.pkg_config          through `pkg-config --cflags --libs advgan`.
if(NOT ADVGAN_INSTALL)
  message(STATUS "ADVGAN_INSTALL is off: the install.* tests are not registered")
  return()
endif()

find_package(PkgConfig QUIET)

set(advgan_install_check "${CMAKE_CURRENT_LIST_DIR}/../install/check.cmake")
set(advgan_install_common_args
  "-DBUILD_DIR=${PROJECT_BINARY_DIR}"
  "-DSOURCE_DIR=${PROJECT_SOURCE_DIR}"
  "-DINCLUDE_DIR=${CMAKE_INSTALL_INCLUDEDIR}"
  "-DCONFIG=$<CONFIG>"
  "-DCXX_COMPILER=${CMAKE_CXX_COMPILER}")

add_test(NAME install.downstream_project
  COMMAND "${CMAKE_COMMAND}" ${advgan_install_common_args}
    -DMODE=find_package
    "-DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/install/downstream_project"
    "-DGENERATOR=${CMAKE_GENERATOR}"
    "-DMAKE_PROGRAM=${CMAKE_MAKE_PROGRAM}"
    -P "${advgan_install_check}")

add_test(NAME install.pkg_config
  COMMAND "${CMAKE_COMMAND}" ${advgan_install_common_args}
    -DMODE=pkg_config
    "-DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/install/pkg_config"
    "-DPKG_CONFIG=${PKG_CONFIG_EXECUTABLE}"
    "-DVERSION=${PROJECT_VERSION}"
    -P "${advgan_install_check}")

# Each test compiles the whole library once; 600 s leaves room on a loaded
# two-core machine while still stopping a hung build.
set_tests_properties(install.downstream_project install.pkg_config PROPERTIES
  LABELS install
  TIMEOUT 600)
