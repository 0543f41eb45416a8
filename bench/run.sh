#!/usr/bin/env bash
# The data-half benchmark harness (`just bench`): runs bench/acquire.sh, audit.sh, heal.sh,
# certify.sh, hash.sh and loop.sh (the whole loop on 100k clips x 30 snapshots) RUNS times
# each (same machine, same thread count for both sides), then bench/scale.sh once (the data
# stages at 1x, 4x and 16x), and writes bench/report.md with the median of every figure and
# the ratios against each peer, and regenerates the README's benchmark table from it.
#
#   bash bench/run.sh [RUNS] [ENTITIES]      (defaults: 3 runs, 1300000 clips ~ 10.4M rows)
#
# The release build happens once, here (T0CLIP_BENCH_BUILT tells the scripts): editing the
# sources while it runs does not change what is measured.
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
[ -n "${T0CLIP_BENCH_BUILT:-}" ] || cargo build --release --workspace --bins --examples
export T0CLIP_BENCH_BUILT=1
for i in $(seq 1 "$runs"); do
    echo "== run $i of $runs"
    bash bench/acquire.sh "$entities" && cp "$work/acquire-result.json" "$work/runs/acquire-$i.json"
    bash bench/audit.sh && cp "$work/audit-result.json" "$work/runs/audit-$i.json"
    bash bench/heal.sh "$entities" && cp "$work/heal-result.json" "$work/runs/heal-$i.json"
    bash bench/certify.sh && cp "$work/certify-result.json" "$work/runs/certify-$i.json"
    bash bench/hash.sh 2 2000000 1 | tail -n 1 > "$work/runs/hash-$i.json"
    bash bench/loop.sh 100000 30 && cp "$work/loop-100000-30-result.json" "$work/runs/loop-$i.json"
done
# Bad days: the same heal bench with every stage under a 1 GB DuckDB memory limit.
T0CLIP_MEMORY_LIMIT=1GB bash bench/heal.sh "$entities" && cp "$work/heal-result.json" "$work/runs/heal1g-1.json"
bash bench/scale.sh 20000 30 && cp "$work/scale-result.json" "$work/runs/scale-1.json"
python3 bench/report.py "$work/runs" "$(nproc)" bench/report.md README.md
cat bench/report.md
