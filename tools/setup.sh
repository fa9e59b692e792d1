#!/usr/bin/env bash
# One-step set-up for a fresh Debian 12 machine: installs what is missing, builds, then either runs the
# main job or the whole test suite. Idempotent: with everything in place it only rebuilds what changed.
#
#   bash tools/setup.sh run       # build the qkv program, then train configs/toy.json end to end (BLEU +
#                                 # sample translations); the test suite is not compiled
#   bash tools/setup.sh test      # build everything, run every test (ctest), then the sanitizer stage
#   bash tools/setup.sh sanitize  # only the sanitizer stage: the suite under AddressSanitizer and
#                                 # UndefinedBehaviorSanitizer, and the fuzz targets (docs/reliability.md)
set -euo pipefail

mode="${1:-run}"
case "$mode" in
  run) targets=(--target qkv) ;;  # what the run needs: the program and its libraries
  test) targets=() ;;             # everything: the program, the tests, the install test's inputs
  sanitize) ;;                    # its own tree (below)
  *)
    echo "usage: bash tools/setup.sh run|test|sanitize" >&2
    exit 2
    ;;
esac
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${QKV_BUILD_DIR:-$root/build}"

packages=(
  build-essential cmake pkg-config
  libtorch-dev libfmt-dev nlohmann-json3-dev libcli11-dev libgtest-dev googletest
  libsentencepiece-dev libgloo-dev
  libopenblas0-openmp    # BLAS at run time, sharing libtorch's OpenMP pool: docs/speed.md, "Threads and BLAS"
  python3-torch python3-matplotlib python3-nltk   # the PyTorch peer, plots and BLEU cross-checks
  clang-14 libclang-rt-14-dev llvm-14   # the sanitizer stage: clang, its ASan/UBSan/libFuzzer runtimes, llvm-symbolizer
)

sudo_cmd=()
[[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "[setup] installing: ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# OpenBLAS's OpenMP build ranks below the pthread build among Debian's alternatives, so choose it
# explicitly (all three libraries, so that BLAS and LAPACK never load two different builds).
for lib in libblas.so.3 liblapack.so.3 libopenblas.so.0; do
  want="/usr/lib/x86_64-linux-gnu/openblas-openmp/$lib"
  have="$(update-alternatives --query "$lib-x86_64-linux-gnu" | sed -n 's/^Value: //p')"
  [[ "$have" == "$want" ]] || "${sudo_cmd[@]}" update-alternatives --set "$lib-x86_64-linux-gnu" "$want"
done

jobs="$(nproc)"

# --- the sanitizer stage (CI) ------------------------------------------------------------------------
# A second tree built by clang with AddressSanitizer + UndefinedBehaviorSanitizer and libFuzzer's
# instrumentation (cmake/sanitize.cmake) runs the suite and the fuzz targets (tests/fuzz/, a fixed
# number of iterations each). Left out, each for its reason:
#   python.*         the interpreter is not instrumented: it cannot load an ASan-built libqkv_ops.so
#   SentencePiece*   the shim is loaded with RTLD_DEEPBIND (data/sentencepiece.cpp), which ASan refuses
#                    (google/sanitizers#611)
sanitizer_excluded='^python\.|SentencePiece|Spm'
sanitize() {
  local tree="${QKV_SANITIZE_BUILD_DIR:-$root/build-sanitize}"
  if [[ ! -f "$tree/CMakeCache.txt" ]]; then
    cmake -S "$root" -B "$tree" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=clang++-14 \
      -DQKV_SANITIZE=ON -DQKV_FUZZ=ON
  fi
  cmake --build "$tree" -j "$jobs"
  (cd "$tree" && ASAN_SYMBOLIZER_PATH=/usr/bin/llvm-symbolizer-14 \
    ctest --output-on-failure -j "$jobs" -E "$sanitizer_excluded")
}
if [[ "$mode" == sanitize ]]; then
  sanitize
  exit 0
fi

if [[ ! -f "$build/CMakeCache.txt" ]]; then
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release
fi
cmake --build "$build" -j "$jobs" "${targets[@]}"

case "$mode" in
  run)
    cd "$root"
    "$build/qkv" train --config configs/toy.json --out runs/toy --overwrite
    ;;
  test)
    (cd "$build" && ctest --output-on-failure -j "$jobs")
    sanitize
    ;;
esac
