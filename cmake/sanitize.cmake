# Sanitizer and fuzzing builds: CI builds a second tree with both (tools/setup.sh test; see
# docs/reliability.md). Included before any target is defined, so that the flags reach every one.
#
#   -DQKV_SANITIZE=ON  AddressSanitizer + UndefinedBehaviorSanitizer on all of qkv's code (libtorch and
#                      the other system libraries stay uninstrumented), frame pointers kept and line
#                      tables emitted for readable reports; any UBSan report is fatal. The runtime
#                      options (and the suppressions for libraries we do not build) are compiled into
#                      every executable by tests/sanitize/defaults.cpp, so a test binary run by hand
#                      behaves as under ctest.
#   -DQKV_FUZZ=ON      (clang only) libFuzzer's coverage instrumentation on all of qkv's code, and the
#                      fuzz targets of tests/fuzz/, each a ctest test of QKV_FUZZ_RUNS iterations.
#
#   cmake -S . -B build-sanitize -DCMAKE_CXX_COMPILER=clang++-14 -DQKV_SANITIZE=ON -DQKV_FUZZ=ON
option(QKV_SANITIZE "Build with AddressSanitizer and UndefinedBehaviorSanitizer" OFF)
option(QKV_FUZZ "Build the libFuzzer targets of tests/fuzz (needs clang)" OFF)

if(QKV_FUZZ AND NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  message(FATAL_ERROR "QKV_FUZZ needs clang's libFuzzer: configure with -DCMAKE_CXX_COMPILER=clang++-14")
endif()

if(QKV_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
                      -fno-optimize-sibling-calls $<IF:$<CXX_COMPILER_ID:Clang>,-gline-tables-only,-g1>)
  add_link_options(-fsanitize=address,undefined)
  add_library(qkv_sanitizer_defaults OBJECT ${CMAKE_CURRENT_LIST_DIR}/../tests/sanitize/defaults.cpp)
  link_libraries(qkv_sanitizer_defaults)
endif()

if(QKV_FUZZ)
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()
