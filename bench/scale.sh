#!/usr/bin/env bash
# Scaling of the data half: bench/loop.sh's data stages (acquire, audit, heal, re-audit,
# certify) at 1x, 4x and 16x the entities, same snapshots per entity. For each stage the time
# growth per 4x of data is reported (target: no worse than 4.5x). Release build, one run each;
# writes $BENCH_DIR/scale-result.json.
#
#   bash bench/scale.sh [BASE_ENTITIES] [SNAPSHOTS]     (defaults: 20000 x 30 -> 0.6M, 2.4M, 9.6M rows)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/t0-clip/target}"
work="${BENCH_DIR:-$HOME/.cache/t0-clip/bench}"
base="${1:-20000}"
snapshots="${2:-30}"
[ -n "${T0CLIP_BENCH_BUILT:-}" ] || cargo build --release --workspace --bins
export T0CLIP_BENCH_BUILT=1
for f in 1 4 16; do
    bash bench/loop.sh $((base * f)) "$snapshots" data
done
python3 - "$work" "$base" "$snapshots" <<'PY'
import json, sys
work, base, snapshots = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
runs = {f: json.load(open(f"{work}/loop-{base * f}-{snapshots}-result.json")) for f in (1, 4, 16)}
names = [s["stage"] for s in runs[1]["stages"]]
stages = []
for i, name in enumerate(names):
    s = [runs[f]["stages"][i]["s"] for f in (1, 4, 16)]
    mib = [runs[f]["stages"][i]["mib"] for f in (1, 4, 16)]
    growth = [s[1] / s[0], s[2] / s[1]]
    stages.append({"stage": name, "s": s, "mib": mib, "growth_per_4x": growth})
    print(f"{name:10s} " + "  ".join(f"{x:6.1f} s" for x in s) + "   growth per 4x: " + ", ".join(f"{g:.2f}x" for g in growth))
json.dump({"base": base, "snapshots": snapshots, "rows": [runs[f]["rows"] for f in (1, 4, 16)], "stages": stages},
          open(f"{work}/scale-result.json", "w"))
PY
