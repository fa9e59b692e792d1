#!/usr/bin/env bash
# Soak test of qkv train's interruption and failure paths (issue 13; not part of CI: it takes ~30-60
# minutes at the full counts on a 2-core machine). Three parts, each printing its counts:
#
#   1. Ctrl-C: SIGINT at a random moment of a run, N times. Every run must end in one of the clean
#      ways: exit 0 after "interrupted at step K" with a loadable step-K checkpoint, or exit 130 with
#      one "received during set-up" line. A signal in the ~0.3 s before main() (the dynamic loader
#      loading libtorch) ends the process by the default action, as for any program: counted apart.
#      Anything else (an abort, a segfault, a second line, a missing checkpoint) is a failure.
#   2. kill -9: SIGKILL at a random moment, then `--resume` to the end, M times. The final checkpoint's
#      tensors (parameters, Adam's moments, generator states) must equal an uninterrupted run's, bit for
#      bit, and no temporary file may survive the resumed run.
#   3. Full disk (root only: a 3 MiB tmpfs): the run dir fills up mid-run, K times. Each must exit 1 with
#      one line naming the checkpoint and "No space left on device", leave no temporary, keep the
#      newest complete checkpoint loadable, and resume from it once the tmpfs is grown.
#
#   tools/soak.sh                       # 100 / 20 / 10
#   tools/soak.sh --sigint 10 --kill 3 --full-disk 2    # a short run
# Environment: QKV (the binary, default build/qkv), SOAK_DIR (scratch, default a new /tmp dir).
set -uo pipefail

sigint_runs=100 kill_runs=20 disk_runs=10
while (($#)); do
  case "$1" in
    --sigint) sigint_runs="$2"; shift 2 ;;
    --kill) kill_runs="$2"; shift 2 ;;
    --full-disk) disk_runs="$2"; shift 2 ;;
    *) echo "usage: tools/soak.sh [--sigint N] [--kill M] [--full-disk K]" >&2; exit 2 ;;
  esac
done

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
qkv="${QKV:-$root/build/qkv}"
work="${SOAK_DIR:-$(mktemp -d /tmp/qkv-soak.XXXXXX)}"
mkdir -p "$work"
[[ -x "$qkv" ]] || { echo "soak: $qkv is not built (bash tools/setup.sh test, or set QKV)" >&2; exit 2; }
cd "$root"
failures=0
fail() { echo "  FAIL: $*"; failures=$((failures + 1)); }

# One fixed small run; --threads 1 so that an interrupted and resumed run can match an uninterrupted
# one bit for bit (results depend on the thread count).
data="$work/data"
train=("$qkv" --threads 1 train --config configs/tiny.json --set "data.dir=$data" --no-final-eval
       --set train.steps=200 --set train.checkpoint_every=25 --set train.eval_every=100 --set train.keep_checkpoints=0)
"${train[@]}" --out "$work/reference" > "$work/reference.log" 2>&1 || { cat "$work/reference.log"; exit 1; }
reference="$work/reference/checkpoints/step-200.pt"

# Random milliseconds in [lo, hi).
random_ms() { echo $(( $1 + (RANDOM * 32768 + RANDOM) % ($2 - $1) )); }
sleep_ms() { sleep "$(printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)))"; }

# The tensors of two checkpoints (everything but the JSON record, which holds wall times) are equal,
# as a set of byte strings: libtorch stores Adam's state in an order that follows heap addresses, so
# the same tensors may be numbered differently in two processes.
same_tensors() {
  /usr/bin/python3 - "$1" "$2" <<'EOF'
import io, sys, zipfile
def tensors(path):
    body = open(path, "rb").read()[8:-24]  # the archive between qkv's head and tail
    with zipfile.ZipFile(io.BytesIO(body)) as z:
        return sorted(z.read(n) for n in z.namelist() if "/data/" in n)
a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
sys.exit(0 if a and a == b else 1)
EOF
}

# The error lines ("qkv: ...") of a log.
error_lines() { grep -c '^qkv: ' "$1"; }

echo "[soak] work dir $work; qkv $qkv"

# ---- 1. Ctrl-C ---------------------------------------------------------------------------------------
saved=0 setup=0 loader=0
for ((i = 1; i <= sigint_runs; i++)); do
  run="$work/sigint-$i"
  "${train[@]}" --out "$run" > "$run.log" 2>&1 &
  pid=$!
  sleep_ms "$(random_ms 100 4000)"
  kill -INT "$pid" 2> /dev/null
  wait "$pid"
  code=$?
  if ((code == 0)) && grep -q "interrupted at step" "$run.log"; then
    step=$(sed -n 's/.*interrupted at step \([0-9]*\).*/\1/p' "$run.log" | head -1)
    if "$qkv" evaluate --checkpoint "$run/checkpoints/step-$step.pt" --split dev > "$run.eval" 2>&1; then
      saved=$((saved + 1))
    else
      fail "sigint $i: step-$step.pt does not load: $(tail -1 "$run.eval")"
    fi
  elif ((code == 0)); then
    saved=$((saved + 1))  # it finished before the signal arrived
  elif ((code == 130)) && (($(error_lines "$run.log") == 1)) && grep -q "received during set-up" "$run.log"; then
    setup=$((setup + 1))
  elif ((code == 130)) && [[ ! -s "$run.log" ]]; then
    loader=$((loader + 1))  # killed by the default action before main(): no output at all
  else
    fail "sigint $i: exit $code: $(tail -3 "$run.log" | tr '\n' '|')"
  fi
  rm -rf "$run"
done
echo "[soak] Ctrl-C x$sigint_runs: $saved saved a checkpoint and stopped, $setup stopped during set-up," \
     "$loader ended before main(), $((sigint_runs - saved - setup - loader)) failed"

# ---- 2. kill -9 and resume ---------------------------------------------------------------------------
identical=0
for ((i = 1; i <= kill_runs; i++)); do
  run="$work/kill-$i"
  "${train[@]}" --out "$run" > "$run.log" 2>&1 &
  pid=$!
  sleep_ms "$(random_ms 300 6000)"
  kill -KILL "$pid" 2> /dev/null
  wait "$pid" 2> /dev/null
  if ls "$run/checkpoints"/step-*.pt > /dev/null 2>&1; then
    "${train[@]}" --out "$run" --resume >> "$run.log" 2>&1 || { fail "kill $i: resume failed: $(tail -1 "$run.log")"; continue; }
  else
    rm -rf "$run"  # killed before its first checkpoint: start afresh, as a user would
    "${train[@]}" --out "$run" >> "$run.log" 2>&1 || { fail "kill $i: restart failed"; continue; }
  fi
  if ls -a "$run/checkpoints" | grep -q '\.tmp-'; then
    fail "kill $i: a temporary file survived the resumed run"
  elif same_tensors "$reference" "$run/checkpoints/step-200.pt"; then
    identical=$((identical + 1))
  else
    fail "kill $i: the resumed run's tensors differ from the uninterrupted run's"
  fi
  rm -rf "$run"
done
echo "[soak] kill -9 x$kill_runs: $identical resumed bit-identical, $((kill_runs - identical)) failed"

# ---- 3. full disk ------------------------------------------------------------------------------------
if ((disk_runs > 0)) && [[ $(id -u) -ne 0 ]]; then
  echo "[soak] full disk: skipped (mounting a tmpfs needs root)"
elif ((disk_runs > 0)); then
  clean=0
  for ((i = 1; i <= disk_runs; i++)); do
    disk="$work/disk-$i"
    mkdir -p "$disk"
    if ! mount -t tmpfs -o size=3m tmpfs "$disk"; then echo "[soak] full disk: cannot mount a tmpfs"; break; fi
    # A wider model than tiny's, so that a few checkpoints fill 3 MiB.
    "${train[@]}" --set model.d_model=64 --set model.d_ff=256 --out "$disk/run" > "$disk.log" 2>&1
    code=$?
    temporaries=$(ls -a "$disk/run/checkpoints" 2> /dev/null | grep -c '\.tmp-')
    newest=$(ls "$disk/run/checkpoints" | sed -n 's/^step-\([0-9]*\)\.pt$/\1/p' | sort -n | tail -1)
    if ((code != 1)) || (($(error_lines "$disk.log") != 1)) || ! grep -q "No space left on device" "$disk.log"; then
      fail "disk $i: exit $code: $(grep '^qkv: ' "$disk.log" | head -2 | tr '\n' '|')"
    elif ((temporaries > 0)); then
      fail "disk $i: $temporaries temporary file(s) left"
    elif [[ -z "$newest" ]] || ! "$qkv" evaluate --checkpoint "$disk/run/checkpoints/step-$newest.pt" --split dev > /dev/null 2>&1; then
      fail "disk $i: no loadable checkpoint left"
    else
      mount -o remount,size=64m "$disk"
      if "${train[@]}" --set model.d_model=64 --set model.d_ff=256 --out "$disk/run" --resume >> "$disk.log" 2>&1 &&
         grep -q "resumed from $disk/run/checkpoints/step-$newest.pt" "$disk.log"; then
        clean=$((clean + 1))
      else
        fail "disk $i: resuming after the disk was grown failed: $(tail -1 "$disk.log")"
      fi
    fi
    umount "$disk"
  done
  echo "[soak] full disk x$disk_runs: $clean failed cleanly and resumed, $((disk_runs - clean)) failed"
fi

echo "[soak] $failures failure(s); logs in $work"
((failures == 0))
