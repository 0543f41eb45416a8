#!/usr/bin/env bash
# `certify` on 100k clips x 30 snapshots: time and memory of all five stores, and of the `base`
# store alone against the same point-in-time features in pandas (merge_asof on the availability
# clock, bench/certify_pandas.py), with the values compared row by row; then all five stores on
# the every_k_days grid (weekly T0s, at most 12 per clip: ~1.17M (entity, T0) rows at 100k
# clips). One run, release build.
#   bash bench/certify.sh [ENTITIES] [SNAPSHOTS]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/t0-clip/target}"
work="${BENCH_DIR:-$HOME/.cache/t0-clip/bench}"
venv="$HOME/.cache/t0-clip/bench-venv"
entities="${1:-100000}"
snapshots="${2:-30}"
bin="$CARGO_TARGET_DIR/release"
[ -n "${T0CLIP_BENCH_BUILT:-}" ] || cargo build --release --workspace --bins  # run.sh builds once
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import duckdb, pandas, pyarrow" 2>/dev/null || "$venv/bin/pip" install --quiet duckdb pandas pyarrow
data="$work/certify-$entities-$snapshots"
root="$work/root-certify-$entities-$snapshots"
now=2028-01-01T00:00:00Z  # 30 irregular snapshots reach into 2027
export T0CLIP_NOW=$now
if [ ! -f "$data/observations.csv" ]; then
    # Late rows (two clocks matter) but no defects that need heal.
    "$bin/acquire" -q generate --out "$data" --entities "$entities" --snapshots "$snapshots" --media 0 \
        --regressions 0 --duplicates 0 --near-duplicates 0 --revivals 0 --status-noise 0 --like-spikes 0 --late 0.05
fi
rm -rf "$root" "$root-base" "$root-k"
"$bin/acquire" -q --root "$root" --input "$data" --chunk-rows 1000000
"$bin/audit" -q --root "$root" --as-of "$now"
cp -r "$root" "$root-base"
cp -r "$root" "$root-k"

/usr/bin/time -f "%e %M" -o "$work/certify-all.time" "$bin/certify" -q --root "$root" --json > "$work/certify-all.json"
cat > "$work/certify-base.yaml" <<'YAML'
t0: {mode: first_seen, offset_hours: 24, entity_kind: clip}
stores:
  - {entrypoint: base, files: [asof.sql, base.sql], strict: true}
YAML
/usr/bin/time -f "%e %M" -o "$work/certify-base.time" "$bin/certify" -q --root "$root-base" --config "$work/certify-base.yaml" --json > "$work/certify-base.json"
sed 's/mode: first_seen/mode: every_k_days/' projects/clips/certify.yaml > "$work/certify-k.yaml"
/usr/bin/time -f "%e %M" -o "$work/certify-k.time" "$bin/certify" -q --root "$root-k" --config "$work/certify-k.yaml" --json > "$work/certify-k.json"
# The same again as a new run (--rebaseline): every store replays the first run's 1.17M rows.
/usr/bin/time -f "%e %M" -o "$work/certify-k2.time" "$bin/certify" --root "$root-k" --config "$work/certify-k.yaml" \
    --rebaseline --json > "$work/certify-k2.json" 2> "$work/certify-k2.err"
rm -rf "$root-k"
surface=$(ls "$root-base"/lake/surfaces/base/*/surface.parquet)
"$venv/bin/python" - "$root-base/catalog.duckdb" "$work/certify-obs.parquet" <<'PY'
import duckdb, sys
c = duckdb.connect(sys.argv[1], read_only=True)
c.execute(f"COPY (SELECT entity_id, observed_at, available_at, views, likes, comments, version, deleted FROM observations) TO '{sys.argv[2]}' (FORMAT parquet)")
PY
/usr/bin/time -f "%e %M" -o "$work/certify-pandas.time" "$venv/bin/python" bench/certify_pandas.py \
    "$work/certify-obs.parquet" "$surface" "$work/certify-pandas.parquet" > "$work/certify-pandas.json"

"$venv/bin/python" - "$work" "$surface" "$entities" "$snapshots" <<'PY'
import duckdb, json, sys
work, surface, entities, snapshots = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
t = lambda n: tuple(map(float, open(f"{work}/{n}.time").read().split()[-2:]))
(a_s, a_kb), (b_s, b_kb), (p_s, p_kb), (k_s, k_kb) = t("certify-all"), t("certify-base"), t("certify-pandas"), t("certify-k")
k2_s, k2_kb = t("certify-k2")
import re
replay = [float(m) for m in re.findall(r"replay of \d+ rows against run \w+ in ([0-9.]+) s", open(f"{work}/certify-k2.err").read())]
k2 = json.load(open(f"{work}/certify-k2.json"))
replayed = sum(s["replay"]["compared"] for s in k2["stores"] if s.get("replay"))
k_grid = json.load(open(f"{work}/certify-k.json"))["stores"][0]["rows"]
rep = json.load(open(f"{work}/certify-all.json"))
peer = json.load(open(f"{work}/certify-pandas.json"))
c = duckdb.connect()
obs = c.execute(f"SELECT count(*) FROM '{work}/certify-obs.parquet'").fetchone()[0]
cols = ["views_t0", "likes_t0", "comments_t0", "n_snapshots", "hours_since_last"]
cmp = " OR ".join(f"(a.{x} IS DISTINCT FROM b.{x} AND NOT (abs(a.{x} - b.{x}) <= 1e-9))" for x in cols)
rows, differ = c.execute(f"""SELECT count(*), count(*) FILTER (WHERE {cmp})
    FROM '{surface}' a JOIN '{work}/certify-pandas.parquet' b USING (entity_id, t0)""").fetchone()
print(f"data: {entities:,} clips x {snapshots} snapshots = {obs:,} observation rows; grid {rep['stores'][0]['rows']:,} (entity, T0) rows")
print(f"certify, all 5 stores:        {a_s:.1f} s, peak RSS {a_kb / 1024:.0f} MiB  ({rep['status']}: " + ", ".join(f"{s['entrypoint']} {s['rows']:,}" for s in rep["stores"]) + ")")
print(f"certify, base store only:     {b_s:.1f} s, peak RSS {b_kb / 1024:.0f} MiB")
print(f"pandas merge_asof (base):     {p_s:.1f} s wall ({peer['seconds']:.1f} s in script), peak RSS {p_kb / 1024:.0f} MiB")
print(f"ratio certify(base) / pandas: time {b_s / p_s:.2f}x, memory {b_kb / p_kb:.2f}x")
print(f"certify every_k_days, 5 stores: {k_s:.1f} s, peak RSS {k_kb / 1024:.0f} MiB, grid {k_grid:,} (entity, T0) rows")
print(f"every_k_days again (replay check of {len(replay)} stores, {replayed:,} rows): {k2_s:.1f} s, peak RSS {k2_kb / 1024:.0f} MiB; "
      f"the comparisons took {sum(replay):.1f} s ({100 * sum(replay) / k2_s:.0f}% of the run)")
print(f"values: {rows:,} rows joined, {differ:,} differ in {', '.join(cols)}")
json.dump({"grid": rep["stores"][0]["rows"], "all_s": a_s, "all_mib": a_kb / 1024, "t0_s": b_s, "t0_mib": b_kb / 1024,
           "peer_s": p_s, "peer_mib": p_kb / 1024, "joined": rows, "differ": differ,
           "k_grid": k_grid, "k_s": k_s, "k_mib": k_kb / 1024,
           "k2_s": k2_s, "k2_mib": k2_kb / 1024, "replay_s": sum(replay), "replay_rows": replayed},
          open(f"{work}/certify-result.json", "w"))
PY
