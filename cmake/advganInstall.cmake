# Installs the headers and makes the installed tree usable from CMake
# (find_package(advgan)) and from pkg-config (advgan.pc).
#
# Every file here is architecture-independent, so the CMake package and the
# .pc file go under share/. Both locate the prefix relative to their own
# path, so `cmake --install <build> --prefix <anywhere>` gives a working tree.
include(CMakePackageConfigHelpers)

set(ADVGAN_CMAKE_INSTALL_DIR "${CMAKE_INSTALL_DATADIR}/cmake/advgan"
    CACHE STRING "Folder, relative to the prefix, for advganConfig.cmake")
set(ADVGAN_PKGCONFIG_INSTALL_DIR "${CMAKE_INSTALL_DATADIR}/pkgconfig"
    CACHE STRING "Folder, relative to the prefix, for advgan.pc")

install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/advgan"
        DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")

# -- CMake package -------------------------------------------------------------

install(TARGETS advgan EXPORT advganTargets)
install(EXPORT advganTargets
        NAMESPACE advgan::
        DESTINATION "${ADVGAN_CMAKE_INSTALL_DIR}")

configure_package_config_file(
  "${CMAKE_CURRENT_LIST_DIR}/advganConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/advganConfig.cmake"
  INSTALL_DESTINATION "${ADVGAN_CMAKE_INSTALL_DIR}")
# A header-only package fits consumers of any pointer size, hence
# ARCH_INDEPENDENT. Before 1.0, SameMajorVersion accepts every 0.x release.
write_basic_package_version_file(
  "${PROJECT_BINARY_DIR}/advganConfigVersion.cmake"
  COMPATIBILITY SameMajorVersion
  ARCH_INDEPENDENT)
install(FILES
          "${PROJECT_BINARY_DIR}/advganConfig.cmake"
          "${PROJECT_BINARY_DIR}/advganConfigVersion.cmake"
        DESTINATION "${ADVGAN_CMAKE_INSTALL_DIR}")

# -- pkg-config ----------------------------------------------------------------

# pkg-config expands ${pcfiledir} to the folder holding the .pc file, so the
# prefix is written relative to it unless the install folders are absolute.
if(IS_ABSOLUTE "${ADVGAN_PKGCONFIG_INSTALL_DIR}")
  set(ADVGAN_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
  file(RELATIVE_PATH advgan_pc_to_prefix "/${ADVGAN_PKGCONFIG_INSTALL_DIR}" "/")
  string(REGEX REPLACE "/$" "" advgan_pc_to_prefix "${advgan_pc_to_prefix}")
  set(ADVGAN_PC_PREFIX "\${pcfiledir}/${advgan_pc_to_prefix}")
endif()
if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(ADVGAN_PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
else()
  set(ADVGAN_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
configure_file("${CMAKE_CURRENT_LIST_DIR}/advgan.pc.in" "${PROJECT_BINARY_DIR}/advgan.pc" @ONLY)
install(FILES "${PROJECT_BINARY_DIR}/advgan.pc" DESTINATION "${ADVGAN_PKGCONFIG_INSTALL_DIR}")
