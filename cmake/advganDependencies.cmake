# Finds every dependency of the advgan target. All come from Debian packages;
# scripts/setup installs them. cmake/advganConfig.cmake.in repeats this list
# for installed packages, so keep the two in step.
include(GNUInstallDirs)
find_package(xtl REQUIRED)
find_package(xtensor REQUIRED)
# advgan calls OpenBLAS's own thread control (openblas_set_num_threads), so
# BLAS must be OpenBLAS. The vendor is set before xtensor-blas because its
# package configuration looks for BLAS as well.
set(BLA_VENDOR OpenBLAS)
find_package(xtensor-blas REQUIRED)
find_package(BLAS REQUIRED)
find_package(LAPACK REQUIRED)
find_package(OpenMP REQUIRED COMPONENTS CXX)
find_package(ZLIB REQUIRED)
find_package(PNG REQUIRED)
find_package(nlohmann_json 3 REQUIRED)
