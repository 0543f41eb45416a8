#!/usr/bin/env bash
# The whole loop on generated data, every stage timed (wall seconds and peak RSS), as `just loop`
# runs it: acquire -> audit -> heal -> audit -> certify -> labels -> embed -> train-suite -> score
# -> calibrate -> verify. Release build, one run; writes $BENCH_DIR/loop-<ENTITIES>-result.json.
#
#   bash bench/loop.sh [ENTITIES] [SNAPSHOTS] [data]
#
# Defaults: 100000 clips x 30 snapshots (~3M snapshot rows), the generator's default defects
# (audit fails, heal answers it). With `data` as the third argument only the data half runs
# (acquire .. certify): bench/scale.sh uses it for the 1x/4x/16x runs.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/t0-clip/target}"
work="${BENCH_DIR:-$HOME/.cache/t0-clip/bench}"
entities="${1:-100000}"
snapshots="${2:-30}"
only="${3:-all}"
bin="$CARGO_TARGET_DIR/release"
[ -n "${T0CLIP_BENCH_BUILT:-}" ] || cargo build --release --workspace --bins
if [ "$only" = all ]; then
    T0CLIP_EMBED_BIN="$bin/embed" bash scripts/fetch-models.sh
fi
data="$work/loop-data-$entities-$snapshots"
root="$work/root-loop-$entities-$snapshots"
times="$work/loop-$entities-$snapshots"
export T0CLIP_NOW=2028-01-01T00:00:00Z  # 30 irregular snapshots reach into 2027
if [ ! -f "$data/observations.csv" ]; then
    "$bin/acquire" -q generate --out "$data" --entities "$entities" --snapshots "$snapshots"
fi
rm -rf "$root" "$times"
mkdir -p "$times"

# step NAME OK_CODES BINARY ARGS...: run one stage, its exit code must be 0 or in OK_CODES.
n=0
step() {
    local name=$1 ok=$2 stage=$3
    shift 3
    n=$((n + 1))
    local tag
    tag=$(printf "%02d-%s" "$n" "$name")
    set +e
    /usr/bin/time -f "%e %M" -o "$times/$tag.time" "$bin/$stage" -q --root "$root" "$@" --json > "$times/$tag.json"
    local rc=$?
    set -e
    echo "$rc" > "$times/$tag.rc"
    read -r s kb < <(tail -n 1 "$times/$tag.time")
    printf "  %-12s exit %-3s %7.1f s %7.0f MiB\n" "$name" "$rc" "$s" "$((kb / 1024))"
    for c in 0 $ok; do [ "$rc" -eq "$c" ] && return 0; done
    echo "bench/loop.sh: $stage $* exited $rc (see $times/$tag.json)" >&2
    exit 1
}

echo "loop on $entities entities x $snapshots snapshots ($(($(wc -l < "$data/observations.csv") - 1)) snapshot rows)"
step acquire "" acquire --input "$data" --chunk-rows 1000000
step audit 1 audit
step heal "" heal --limit 0
step re-audit "" audit
step certify "" certify
if [ "$only" = all ]; then
    step labels "" certify labels
    step embed "" embed
    step train-suite "" train-suite
    step score "" score
    step calibrate 1 calibrate
    step verify "" verify
fi

python3 - "$times" "$entities" "$snapshots" "$work/loop-$entities-$snapshots-result.json" <<'PY'
import glob, json, os, sys
times, entities, snapshots, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
stages = []
for p in sorted(glob.glob(f"{times}/*.time")):
    tag = os.path.basename(p)[:-5]
    s, kb = open(p).read().split()[-2:]
    rc = int(open(f"{times}/{tag}.rc").read())
    stages.append({"stage": tag.split("-", 1)[1], "s": float(s), "mib": int(kb) / 1024, "exit": rc})
read = json.load(open(f"{times}/01-acquire.json"))["rows_read"]
total = sum(x["s"] for x in stages)
peak = max(x["mib"] for x in stages)
print(f"total {total:.1f} s, peak RSS {peak:,.0f} MiB (largest stage), {read:,} rows read")
json.dump({"entities": entities, "snapshots": snapshots, "rows": read, "total_s": total, "peak_mib": peak,
           "stages": stages}, open(out, "w"))
PY
