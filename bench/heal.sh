#!/usr/bin/env bash
# `heal` patch throughput on a defect-rich generated dataset: generate (all defect knobs up),
# acquire, audit, then time `heal --dry-run` and `heal` (peak memory too), re-audit to show
# the answered findings closed, and a second heal (nothing to do). One run, release build.
#   bash bench/heal.sh [ENTITIES]   (default 1300000 clips, ~11M snapshot rows)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/t0-clip/target}"
work="${BENCH_DIR:-$HOME/.cache/t0-clip/bench}"
entities="${1:-1300000}"
bin="$CARGO_TARGET_DIR/release"
[ -n "${T0CLIP_BENCH_BUILT:-}" ] || cargo build --release --workspace --bins  # run.sh builds once
data="$work/defects-$entities"
root="$work/root-heal-$entities"
now=2026-12-01T00:00:00Z
export T0CLIP_NOW=$now
if [ ! -f "$data/observations.csv" ]; then
    "$bin/acquire" -q generate --out "$data" --entities "$entities" --media 0 \
        --regressions 0.10 --duplicates 0.001 --late 0.02 --future 0.002 \
        --near-duplicates 0.03 --revivals 0.5 --status-noise 0.03 --like-spikes 0.01
fi
rm -rf "$root"
"$bin/acquire" -q --root "$root" --input "$data" --chunk-rows 1000000
"$bin/audit" -q --root "$root" --as-of "$now" --json > "$work/heal-audit-before.json" || true

timed() { # name, command...: wall seconds and peak RSS (KiB) into $work/<name>.time
    local name=$1; shift
    /usr/bin/time -f "%e %M" -o "$work/$name.time" "$@" > "$work/$name.json" || true
}
timed heal-dry "$bin/heal" -q --root "$root" --dry-run --json --limit 0
timed heal "$bin/heal" -q --root "$root" --json --limit 0
"$bin/audit" -q --root "$root" --as-of "$now" --json > "$work/heal-audit-after.json" || true
set +e
"$bin/heal" -q --root "$root"; again=$?
"$bin/heal" -q --root "$root" verify-ledger; verify=$?
set -e

python3 - "$work" "$again" "$verify" <<'PY'
import json, sys
work, again, verify = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t = lambda n: tuple(map(float, open(f"{work}/{n}.time").read().split()[-2:]))
rep = json.load(open(f"{work}/heal.json"))
dry = json.load(open(f"{work}/heal-dry.json"))
before = {f"{f['table']}.{f['check']}": f["failing"] for f in json.load(open(f"{work}/heal-audit-before.json"))["findings"]}
after = {f"{f['table']}.{f['check']}": f["failing"] for f in json.load(open(f"{work}/heal-audit-after.json"))["findings"]}
(s, kb), (ds, dkb) = t("heal"), t("heal-dry")
cells, rows = rep["cells_patched"], rep["rows_repaired"]
print(f"heal:           {s:.1f} s, {cells:,} cells in {rows:,} rows ({rep['quarantined']:,} quarantined) = {cells / s:,.0f} cells/s, {rows / s:,.0f} rows/s, peak RSS {kb / 1024:.0f} MiB")
print(f"heal --dry-run: {ds:.1f} s, {dry['cells_patched']:,} cells planned, peak RSS {dkb / 1024:.0f} MiB")
for r in rep["rules"]:
    key = f"observations.{r['answers']}"
    state = r["skipped"] or f"{r['cells']:,} cells, {r['rows']:,} rows, {r['tombstones']:,} removed"
    print(f"  {r['id']:22s} {key:42s} failing before {before.get(key, '-')!s:>8} after {after.get(key, '-')!s:>5}  {state}")
print(f"second heal exit {again} (99 = nothing to do); verify-ledger exit {verify}")
json.dump({"cells": cells, "rows": rows, "t0_s": s, "t0_mib": kb / 1024, "dry_s": ds, "dry_mib": dkb / 1024,
           "again": again, "verify": verify}, open(f"{work}/heal-result.json", "w"))
PY
