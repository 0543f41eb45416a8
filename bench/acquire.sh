#!/usr/bin/env bash
# Ingest throughput of `acquire` on a ~10M-row observation CSV against DuckDB's own
# `read_csv` into a table on the same file, in one run, with peak memory of each.
#
#   bash bench/acquire.sh [ENTITIES]      (default 1300000 clips -> ~10M snapshot rows)
#
# Needs: a release build (built here), Python 3 (a venv with the duckdb wheel is made under
# the build cache). Data goes to $BENCH_DIR (default ~/.cache/t0-clip/bench).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/t0-clip/target}"
entities="${1:-1300000}"
work="${BENCH_DIR:-$HOME/.cache/t0-clip/bench}"
venv="$HOME/.cache/t0-clip/bench-venv"
bin="$CARGO_TARGET_DIR/release"

[ -n "${T0CLIP_BENCH_BUILT:-}" ] || cargo build --release --workspace --bins  # run.sh builds once
[ -x "$venv/bin/python" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install --quiet duckdb; }

data="$work/data-$entities"
if [ ! -f "$data/observations.csv" ]; then
    "$bin/acquire" -q generate --out "$data" --entities "$entities" --media 0 --late 0.02 --duplicates 0.001
fi
rows=$(($(wc -l < "$data/observations.csv") - 1))
size=$(du -h "$data/observations.csv" | cut -f1)
echo "observations.csv: $rows rows, $size"

cat > "$work/entities.yaml" <<'YAML'
sources:
  - {name: entities, table: entities, glob: entities.csv, availability: observed_time}
YAML
cat > "$work/observations.yaml" <<'YAML'
sources:
  - {name: observations, table: observations, glob: observations.csv, availability: column}
YAML

root="$work/root"
rm -rf "$root"
export T0CLIP_NOW=2026-04-01T00:00:00Z
"$bin/acquire" -q --root "$root" --input "$data" --config "$work/entities.yaml"
/usr/bin/time -f "%e %M" -o "$work/t0.time" \
    "$bin/acquire" -q --root "$root" --input "$data" --config "$work/observations.yaml" --chunk-rows 1000000
read -r t0_s t0_kb < <(tail -n 1 "$work/t0.time")

cat > "$work/duckdb_read_csv.py" <<'PY'
import sys, duckdb
con = duckdb.connect(sys.argv[1])
con.execute("SET autoinstall_known_extensions = false")
con.execute(f"CREATE TABLE observations AS SELECT * FROM read_csv('{sys.argv[2]}')")
print(con.execute("SELECT count(*) FROM observations").fetchone()[0])
PY
rm -f "$work/peer.duckdb"
/usr/bin/time -f "%e %M" -o "$work/peer.time" \
    "$venv/bin/python" "$work/duckdb_read_csv.py" "$work/peer.duckdb" "$data/observations.csv" > "$work/peer.rows"
read -r peer_s peer_kb < <(tail -n 1 "$work/peer.time")

python3 - "$rows" "$t0_s" "$t0_kb" "$peer_s" "$peer_kb" "$(cat "$work/peer.rows")" "$work" <<'PY'
import json, sys
rows, t0_s, t0_kb, peer_s, peer_kb, peer_rows = int(sys.argv[1]), *map(float, sys.argv[2:6]), int(sys.argv[6])
print(f"acquire (validate, quarantine, land Parquet, versioned insert): {t0_s:.1f} s, {rows / t0_s:,.0f} rows/s, peak RSS {t0_kb / 1024:.0f} MiB")
print(f"duckdb read_csv -> table (no validation, no versioning):      {peer_s:.1f} s, {peer_rows / peer_s:,.0f} rows/s, peak RSS {peer_kb / 1024:.0f} MiB")
print(f"ratio acquire / duckdb: time {t0_s / peer_s:.2f}x, memory {t0_kb / peer_kb:.2f}x")
json.dump({"rows": rows, "t0_s": t0_s, "t0_mib": t0_kb / 1024, "peer_s": peer_s, "peer_mib": peer_kb / 1024},
          open(sys.argv[7] + "/acquire-result.json", "w"))
PY
