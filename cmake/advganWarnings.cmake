# advgan_strict_warnings(TARGET) turns on the warning set that tests and
# examples must build cleanly under, with g++ and with clang++.
function(advgan_strict_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Werror)
endfunction()
