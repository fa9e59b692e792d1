#!/bin/sh
# Runs one fuzz target as a test: a fixed number of iterations from its checked-in seeds with a fixed
# seed, new inputs and the targets' scratch files going to a fresh scratch directory (never into the
# seeds).
#   run_fuzz.sh TARGET_BINARY SCRATCH_DIR SEED_DIR RUNS
set -eu
binary="$1" work="$2" seeds="$3" runs="$4"
rm -rf "$work"
mkdir -p "$work"
# The targets' scratch files (fuzz_support.h) go there too, not into /tmp.
export TMPDIR="$work"
# -timeout: one input running a minute is a hang; -rss_limit_mb: ASan's shadow memory included.
exec "$binary" -runs="$runs" -seed=1 -timeout=60 -rss_limit_mb=4096 \
  -print_final_stats=1 -artifact_prefix="$work/" "$work" "$seeds"
