# Builds tests/fast_math/non_finite_checks.cpp with -O2 -ffast-math and runs
# it. Under fast math, GCC and Clang fold std::isfinite and std::isnan to
# constants, so this checks that the library's NaN and infinity checks (the
# trainer's input, activation and loss checks, first_non_finite, the
# objectives, the metrics' input checks) still reject such values.
if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  add_executable(advgan_fast_math_checks ${CMAKE_CURRENT_SOURCE_DIR}/fast_math/non_finite_checks.cpp)
  target_link_libraries(advgan_fast_math_checks PRIVATE advgan::advgan)
  target_compile_options(advgan_fast_math_checks PRIVATE -O2 -ffast-math)
  advgan_strict_warnings(advgan_fast_math_checks)
  add_test(NAME robustness.fast_math_non_finite_checks COMMAND advgan_fast_math_checks)
endif()
