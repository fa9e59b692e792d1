# The ctest `install.consumer`: qkv is installable and usable once installed.
#   1. `cmake --install` this build into a prefix inside the build tree, then move the prefix, so
#      that nothing can work only because of where it was first installed;
#   2. the installed `qkv` runs from there with no LD_LIBRARY_PATH (its RPATH is relative to itself,
#      and does not name the build tree), and reads the installed configs;
#   3. tests/consumer is configured against the installed CMake package (find_package(qkv)), built and
#      run; it checks that the SentencePiece shim was loaded from the prefix.
# Inputs (-D): QKV_BUILD_DIR, QKV_CONSUMER_DIR, QKV_CXX_COMPILER, QKV_BUILD_TYPE, Torch_DIR.
cmake_minimum_required(VERSION 3.18)

set(work "${QKV_BUILD_DIR}/install-test")
set(prefix "${work}/prefix")
file(REMOVE_RECURSE "${work}")
unset(ENV{LD_LIBRARY_PATH})   # the libraries must be found through RPATHs alone
unset(ENV{QKV_SPM_LIBRARY})   # ... and the shim beside libqkv_core.so
unset(ENV{QKV_TOOLS_DIR})

# Runs a command; stops the test with its output when it fails. The output is left in `output`.
function(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE out
                  WORKING_DIRECTORY "${work}")
  if(NOT code EQUAL 0)
    message(FATAL_ERROR "${what} failed (${code}):\n  ${ARGN}\n${out}")
  endif()
  message(STATUS "${what}: ok")
  set(output "${out}" PARENT_SCOPE)
endfunction()

function(expect text what)
  string(FIND "${output}" "${text}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "${what}: \"${text}\" not in the output:\n${output}")
  endif()
endfunction()

file(MAKE_DIRECTORY "${work}")
run("install" "${CMAKE_COMMAND}" --install "${QKV_BUILD_DIR}" --prefix "${work}/staged")
file(RENAME "${work}/staged" "${prefix}")

foreach(file bin/qkv lib/cmake/qkv/qkvConfig.cmake lib/cmake/qkv/qkvTargets.cmake
             include/qkv/model/transformer.h share/qkv/configs/toy.json share/qkv/tools/plot_curves.py
             share/qkv/tools/peer_train.py share/qkv/tools/peer_decode.py)
  if(NOT EXISTS "${prefix}/${file}")
    message(FATAL_ERROR "the install lacks ${file}")
  endif()
endforeach()
foreach(library qkv_core qkv_ops qkv_spm)
  if(NOT EXISTS "${prefix}/lib/lib${library}.so")
    message(FATAL_ERROR "the install lacks lib/lib${library}.so")
  endif()
endforeach()

find_program(READELF readelf)
if(READELF)
  foreach(binary bin/qkv lib/libqkv_core.so)
    run("readelf ${binary}" "${READELF}" -d "${prefix}/${binary}")
    expect("$ORIGIN" "the RPATH of ${binary}")
    string(FIND "${output}" "${QKV_BUILD_DIR}" at)
    if(NOT at EQUAL -1)
      message(FATAL_ERROR "${binary} still names the build tree in its RPATH:\n${output}")
    endif()
  endforeach()
endif()

# The installed program, from its moved prefix: big.json extends base.json, both installed.
run("installed qkv params" "${prefix}/bin/qkv" params --config "${prefix}/share/qkv/configs/aiayn/big.json"
    --vocab-size 37000)
expect("\"params\":214245376" "qkv params on the installed big.json")

set(consumer "${work}/consumer")
run("configure the consumer" "${CMAKE_COMMAND}" -S "${QKV_CONSUMER_DIR}" -B "${consumer}"
    "-DCMAKE_PREFIX_PATH=${prefix}" "-DCMAKE_BUILD_TYPE=${QKV_BUILD_TYPE}"
    "-DCMAKE_CXX_COMPILER=${QKV_CXX_COMPILER}" "-DTorch_DIR=${Torch_DIR}"
    -DCMAKE_FIND_PACKAGE_NO_PACKAGE_REGISTRY=ON)
file(STRINGS "${consumer}/CMakeCache.txt" qkv_dir REGEX "^qkv_DIR:")
if(NOT qkv_dir STREQUAL "qkv_DIR:PATH=${prefix}/lib/cmake/qkv")
  message(FATAL_ERROR "the consumer found qkv elsewhere: ${qkv_dir}")
endif()
run("build the consumer" "${CMAKE_COMMAND}" --build "${consumer}")
run("run the consumer" "${consumer}/qkv_consumer" "${prefix}" "${work}/scratch")
message(STATUS "${output}")
expect("[consumer] ok" "the consumer")
