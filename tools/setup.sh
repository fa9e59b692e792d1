#!/usr/bin/env bash
# One-step set-up for a fresh Debian 12 machine: installs what is missing, builds, then either runs the
# main job or the whole test suite. Idempotent: with everything in place it only rebuilds what changed.
#
#   bash tools/setup.sh run    # build the qkv program, then train configs/toy.json end to end (BLEU +
#                              # sample translations); the test suite is not compiled
#   bash tools/setup.sh test   # build everything, then run every test (ctest)
set -euo pipefail

mode="${1:-run}"
case "$mode" in
  run) targets=(--target qkv) ;;  # what the run needs: the program and its libraries
  test) targets=() ;;             # everything: the program, the tests, the install test's inputs
  *)
    echo "usage: bash tools/setup.sh run|test" >&2
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
    cd "$build"
    ctest --output-on-failure -j "$jobs"
    ;;
esac
