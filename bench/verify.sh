#!/usr/bin/env bash
# `verify` on the bench root of bench/heal.sh (~10.6M snapshot rows acquired, healed, with a
# 1.3M-entry ledger): wall time and peak memory, and how much of it is the content hashing
# any verification needs (every canonical table, the ledger, the findings). One run, release.
#   bash bench/heal.sh && bash bench/verify.sh [ENTITIES]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/t0-clip/target}"
work="${BENCH_DIR:-$HOME/.cache/t0-clip/bench}"
entities="${1:-1300000}"
bin="$CARGO_TARGET_DIR/release"
cargo build --release --workspace --bins
root="$work/root-heal-$entities"
[ -d "$root" ] || { echo "no $root: run bash bench/heal.sh $entities first" >&2; exit 2; }
/usr/bin/time -f "%e %M" -o "$work/verify.time" "$bin/verify" -q --root "$root" --json > "$work/verify.json" || true
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
r = json.load(open(f"{work}/verify.json"))
wall, kb = open(f"{work}/verify.time").read().split()[-2:]
print(f"verify: {len(r['problems'])} problems; {r['manifests']} manifests, {r['outputs_verified']} outputs, "
      f"{r['ledger_entries']:,} ledger entries, {r['files_seen']} files")
print(f"wall {float(wall):.1f} s, peak RSS {int(kb) / 1024:.0f} MiB; content hashing {r['seconds_hashing']:.1f} s "
      f"of {r['seconds_total']:.1f} s in verify ({r['seconds_hashing'] / r['seconds_total']:.0%})")
PY
