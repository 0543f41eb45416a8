#!/usr/bin/env bash
# `audit` over the ~10M-row observations of bench/acquire.sh against a pandas implementation of
# the same 16 checks (bench/audit_pandas.py; `audit --contracts bench/contracts` runs exactly
# those), in one run; then `audit` with all the clips project's contracts (30 checks, drift
# and history included). Prints wall time, rows/s, peak memory, the ratio, and whether the
# failing counts agree; writes $BENCH_DIR/audit-result.json for bench/run.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/t0-clip/target}"
work="${BENCH_DIR:-$HOME/.cache/t0-clip/bench}"
venv="$HOME/.cache/t0-clip/bench-venv"
bin="$CARGO_TARGET_DIR/release"
[ -d "$work/root" ] || bash bench/acquire.sh
[ -n "${T0CLIP_BENCH_BUILT:-}" ] || cargo build --release --workspace --bins  # run.sh builds once
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import duckdb, pandas, pyarrow" 2>/dev/null || "$venv/bin/pip" install --quiet duckdb pandas pyarrow

root="$work/root-audit"
rm -rf "$root" && cp -r "$work/root" "$root"
as_of=2026-12-01T00:00:00Z
export T0CLIP_NOW=$as_of
rows=$("$venv/bin/python" -c "import duckdb,sys; c=duckdb.connect(sys.argv[1], read_only=True); print(c.execute('select (select count(*) from observations)+(select count(*) from entities)').fetchone()[0])" "$root/catalog.duckdb")
/usr/bin/time -f "%e %M" -o "$work/audit.time" "$bin/audit" -q --root "$root" --as-of "$as_of" \
    --contracts bench/contracts --json > "$work/audit.json" || true
read -r a_s a_kb < <(tail -n 1 "$work/audit.time")
rm -rf "$root" && cp -r "$work/root" "$root"
/usr/bin/time -f "%e %M" -o "$work/audit-all.time" "$bin/audit" -q --root "$root" --as-of "$as_of" --json > "$work/audit-all.json" || true
read -r all_s all_kb < <(tail -n 1 "$work/audit-all.time")

"$venv/bin/python" - "$root/catalog.duckdb" "$work" <<'PY'
import duckdb, sys
c = duckdb.connect(sys.argv[1], read_only=True)
for t in ["observations", "entities"]:
    c.execute(f"COPY {t} TO '{sys.argv[2]}/{t}.parquet' (FORMAT parquet)")
PY
/usr/bin/time -f "%e %M" -o "$work/pandas.time" "$venv/bin/python" bench/audit_pandas.py \
    "$work/observations.parquet" "$work/entities.parquet" "2026-12-01 00:00:00" > "$work/pandas.json"
read -r p_s p_kb < <(tail -n 1 "$work/pandas.time")

python3 - "$rows" "$a_s" "$a_kb" "$p_s" "$p_kb" "$work/audit.json" "$work/pandas.json" "$all_s" "$all_kb" "$work" <<'PY'
import json, sys
rows, a_s, a_kb, p_s, p_kb = int(sys.argv[1]), *map(float, sys.argv[2:6])
ours = json.load(open(sys.argv[6]))
peer = json.load(open(sys.argv[7]))
all_s, all_kb, work = float(sys.argv[8]), float(sys.argv[9]), sys.argv[10]
print(f"audit, the 16 peer checks (incl. input hash verification): {a_s:.1f} s, {rows / a_s:,.0f} rows/s, peak RSS {a_kb / 1024:.0f} MiB, verdict {ours['verdict']}")
print(f"audit, all 30 clips checks:                                 {all_s:.1f} s, peak RSS {all_kb / 1024:.0f} MiB")
print(f"pandas (load Parquet + same checks):                      {p_s:.1f} s wall ({peer['seconds']:.1f} s in script), {rows / p_s:,.0f} rows/s, peak RSS {p_kb / 1024:.0f} MiB")
print(f"ratio audit / pandas: time {a_s / p_s:.2f}x, memory {a_kb / p_kb:.2f}x")
found = {f"{f['table']}.{f['check']}": f["failing"] for f in ours["findings"]}
agree = 0
for k, v in peer["failing"].items():
    mine = found.get(k)
    flag = "ok" if mine == v else "DIFFERS"
    agree += mine == v
    print(f"  {k:58s} audit {mine!s:>8}  pandas {v:>8}  {flag}")
print(f"{agree}/{len(peer['failing'])} failing counts agree")
json.dump({"rows": rows, "t0_s": a_s, "t0_mib": a_kb / 1024, "peer_s": p_s, "peer_mib": p_kb / 1024,
           "all_s": all_s, "all_mib": all_kb / 1024, "agree": agree, "checks": len(peer["failing"])},
          open(f"{work}/audit-result.json", "w"))
PY
