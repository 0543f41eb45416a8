#!/usr/bin/env bash
# The data-half benchmark harness (`just bench`): runs bench/acquire.sh, audit.sh, heal.sh,
# certify.sh and hash.sh RUNS times each (same machine, same thread count for both sides),
# then writes bench/report.md with the median of every figure and the ratios against each
# peer, and regenerates the README's benchmark table from it.
#
#   bash bench/run.sh [RUNS] [ENTITIES]      (defaults: 3 runs, 1300000 clips ~ 10.4M rows)
#
# Everything it needs is built or installed here: a release build, a Python venv with duckdb,
# pandas and pyarrow under the build cache, generated data under $BENCH_DIR
# (~/.cache/t0-clip/bench). Each run's raw results stay in $BENCH_DIR/runs/.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/t0-clip/target}"
runs="${1:-3}"
entities="${2:-1300000}"
work="${BENCH_DIR:-$HOME/.cache/t0-clip/bench}"
mkdir -p "$work/runs"
rm -f "$work"/runs/*.json
cargo build --release --workspace --bins --examples
for i in $(seq 1 "$runs"); do
    echo "== run $i of $runs"
    bash bench/acquire.sh "$entities" && cp "$work/acquire-result.json" "$work/runs/acquire-$i.json"
    bash bench/audit.sh && cp "$work/audit-result.json" "$work/runs/audit-$i.json"
    bash bench/heal.sh "$entities" && cp "$work/heal-result.json" "$work/runs/heal-$i.json"
    bash bench/certify.sh && cp "$work/certify-result.json" "$work/runs/certify-$i.json"
    bash bench/hash.sh 2 2000000 1 | tail -n 1 > "$work/runs/hash-$i.json"
done
python3 bench/report.py "$work/runs" "$(nproc)" bench/report.md README.md
cat bench/report.md
