#!/usr/bin/env bash
# Entity buckets on one machine (issue 31): the data stages (acquire, audit, heal, re-audit,
# certify) on the generated panel with 1, 2 and 4 buckets, the buckets of each stage run in parallel;
# per stage the wall time of the slowest bucket and the peak RSS of each bucket, then the
# `commit` time. Release build; writes $BENCH_DIR/buckets-<ENTITIES>-<SNAPSHOTS>.json.
#
#   bash bench/buckets.sh [ENTITIES] [SNAPSHOTS] [BUCKET COUNTS...]   (defaults: 100000 30 1 2 4)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/t0-clip/target}"
work="${BENCH_DIR:-$HOME/.cache/t0-clip/bench}"
entities="${1:-100000}"
snapshots="${2:-30}"
shift 2 || true
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(1 2 4)
bin="$CARGO_TARGET_DIR/release"
# The re-audit's commit exports the population certify reads (lake/population).
[ -n "${T0CLIP_BENCH_BUILT:-}" ] || cargo build --release --workspace --bins
export T0CLIP_NOW=2028-01-01T00:00:00Z
data="$work/loop-data-$entities-$snapshots"
if [ ! -f "$data/observations.csv" ]; then
    "$bin/acquire" -q generate --out "$data" --entities "$entities" --snapshots "$snapshots"
fi
out="$work/buckets-$entities-$snapshots"
rm -rf "$out"
mkdir -p "$out"

# stage N NAME OK BINARY ARGS...: the stage on every bucket of N at once; prints the slowest
# bucket's wall time and each bucket's peak RSS.
stage() {
    local n=$1 name=$2 ok=$3 binary=$4
    shift 4
    local root="$out/root-$n" start end pids=() k
    start=$(date +%s.%N)
    for ((k = 0; k < n; k++)); do
        /usr/bin/time -f "%e %M" -o "$out/$n-$name-$k.time" \
            "$bin/$binary" -q --root "$root" --bucket "$k/$n" "$@" > /dev/null 2> "$out/$n-$name-$k.err" &
        pids+=($!)
    done
    for ((k = 0; k < n; k++)); do
        local rc=0
        wait "${pids[$k]}" || rc=$?
        local fine=0
        for c in 0 $ok; do [ "$rc" -eq "$c" ] && fine=1; done
        [ "$fine" = 1 ] || { echo "bench/buckets.sh: $binary --bucket $k/$n exited $rc" >&2; cat "$out/$n-$name-$k.err" >&2; exit 1; }
    done
    end=$(date +%s.%N)
    local mib
    mib=$(for ((k = 0; k < n; k++)); do echo $(($(tail -n 1 "$out/$n-$name-$k.time" | cut -d' ' -f2) / 1024)); done | paste -sd/)
    printf "  N=%s %-9s %7.1f s wall   peak RSS per bucket %s MiB\n" "$n" "$name" "$(echo "$end - $start" | bc)" "$mib"
    echo "{\"n\": $n, \"stage\": \"$name\", \"s\": $(echo "$end - $start" | bc), \"mib\": [${mib//\//, }]}" >> "$out/rows.jsonl"
}

commit() {
    local n=$1 stage=$2 ok=$3 start end rc=0
    start=$(date +%s.%N)
    /usr/bin/time -f "%e %M" -o "$out/$n-commit-$stage.time" "$bin/commit" -q --root "$out/root-$n" "$stage" > /dev/null || rc=$?
    end=$(date +%s.%N)
    local fine=0
    for c in 0 99 $ok; do [ "$rc" -eq "$c" ] && fine=1; done
    [ "$fine" = 1 ] || { echo "bench/buckets.sh: commit $stage exited $rc" >&2; exit 1; }
    printf "  N=%s commit %-7s %5.1f s\n" "$n" "$stage" "$(echo "$end - $start" | bc)"
    echo "{\"n\": $n, \"stage\": \"commit $stage\", \"s\": $(echo "$end - $start" | bc), \"mib\": [$(($(tail -n 1 "$out/$n-commit-$stage.time" | cut -d' ' -f2) / 1024))]}" >> "$out/rows.jsonl"
}

echo "buckets on $entities entities x $snapshots snapshots ($(($(wc -l < "$data/observations.csv") - 1)) snapshot rows), $(nproc) cores"
for n in "${counts[@]}"; do
    if [ "$n" = 1 ]; then
        # One whole root: today's path (no commit needed).
        stage 1 acquire "" acquire --input "$data" --chunk-rows 1000000
        stage 1 audit 1 audit
        stage 1 heal "99" heal --limit 0
        stage 1 re-audit "" audit
        stage 1 certify 1 certify
        continue
    fi
    stage "$n" acquire "" acquire --input "$data" --chunk-rows 1000000
    commit "$n" acquire ""
    stage "$n" audit 1 audit
    commit "$n" audit 1
    stage "$n" heal "99" heal --limit 0
    stage "$n" re-audit "" audit
    commit "$n" audit ""
    stage "$n" certify 1 certify
    commit "$n" certify 1
done
python3 -c "
import json, sys
rows = [json.loads(l) for l in open('$out/rows.jsonl')]
json.dump({'entities': $entities, 'snapshots': $snapshots, 'rows': rows}, open('$work/buckets-$entities-$snapshots.json', 'w'), indent=1)
print('wrote $work/buckets-$entities-$snapshots.json')
"
