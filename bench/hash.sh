#!/usr/bin/env bash
# Content hash throughput against raw blake3 over the same bytes, in one run, same threads:
#   raw       blake3 of the rows' canonical encoding as one buffer (encoded beforehand, outside
#             the clock): single-threaded `hash`, and `update_rayon` on THREADS threads
#   content   t0_table::content_hash over the Arrow batches (encoding included), THREADS threads
# on ROWS rows shaped like an observations table (~118 bytes a row encoded).
# Usage: bench/hash.sh [THREADS] [ROWS] [RUNS]    (prints one JSON object; medians of RUNS)
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${1:-2}"
ROWS="${2:-2000000}"
RUNS="${3:-3}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/t0-clip/target}"
[ -n "${T0CLIP_BENCH_BUILT:-}" ] || cargo build -q --release --workspace --examples
RAYON_NUM_THREADS=$THREADS "$CARGO_TARGET_DIR/release/examples/hash_bench" "$ROWS" "$RUNS"
