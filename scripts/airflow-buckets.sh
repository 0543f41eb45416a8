#!/usr/bin/env bash
# The bucketed ingest DAG (dags/t0clip_buckets.py) in real Apache Airflow (issue 31):
#   1. installs apache-airflow from PyPI into a virtual environment under the build cache
#      (once), with a SQLite metadata database in a fresh AIRFLOW_HOME;
#   2. checks that every DAG in dags/ imports with no error;
#   3. runs t0clip_ingest_buckets end to end over the clips fixture with T0CLIP_BUCKETS
#      buckets (default 4; `airflow dags test`: Airflow's own scheduler loop, mapped tasks and
#      all), then the same stages on one whole root with the binaries directly;
#      then t0clip_daily_buckets (certify, then certify labels, on every bucket, each committed
#      and gathered into the base root; then embed, train-suite, score and calibrate there);
#   4. compares: the acquire commit's joined hash of every canonical table and landing copy
#      with the whole root's acquire outputs, the final audit's gate and the hash of every
#      canonical table it passed, the certify and labels commits' joined surfaces and labels
#      with the whole root's, and what the model stages made on the gathered base root
#      (embeddings, fused vectors, predictions, the calibration state) with what they make on
#      the whole root; and that every stage run's OpenLineage events name the Airflow task
#      that ran it as their parent. Exit 1 on any difference.
#
#   bash scripts/airflow-buckets.sh            (release binaries: T0CLIP_PROFILE=release)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
cache="$HOME/.cache/t0-clip"
profile="${T0CLIP_PROFILE:-debug}"
target="${CARGO_TARGET_DIR:-$cache/target}"
bin="$target/$profile"
buckets="${T0CLIP_BUCKETS:-4}"
now="2026-06-01T00:00:00Z"

cargo build -q --profile "$([ "$profile" = debug ] && echo dev || echo "$profile")" --workspace --bins
venv="$cache/airflow-venv"
if [ ! -x "$venv/bin/airflow" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "apache-airflow==3.3.2"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export AIRFLOW_HOME="$work/airflow"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__DAGS_FOLDER="$repo/dags"
export AIRFLOW__CORE__UNIT_TEST_MODE=False
"$venv/bin/airflow" db migrate > "$work/migrate.log" 2>&1 || { cat "$work/migrate.log"; exit 1; }

errors=$("$venv/bin/airflow" dags list-import-errors -l -o plain 2>&1 || true)
if ! grep -q "No data found" <<< "$errors" && [ -n "$(grep -v '^filepath' <<< "$errors" | tr -d '[:space:]')" ]; then
    echo "DAG import errors:"; echo "$errors"; exit 1
fi
echo "dags import cleanly: $("$venv/bin/airflow" dags list -l -o plain 2>/dev/null | grep -c t0clip) t0clip DAGs"

export T0CLIP_BIN="$bin" T0CLIP_INPUT="$repo/fixtures/clips" T0CLIP_NOW="$now" T0CLIP_BUCKETS="$buckets"
export T0CLIP_ROOT="$work/bucketed"
start=$(date +%s.%N)
"$venv/bin/airflow" dags test t0clip_ingest_buckets > "$work/dag.log" 2>&1 || { tail -80 "$work/dag.log"; exit 1; }
dag_s=$(echo "$(date +%s.%N) - $start" | bc)
echo "t0clip_ingest_buckets with $buckets buckets: ${dag_s%.*} s in Airflow"
start=$(date +%s.%N)
"$venv/bin/airflow" dags test t0clip_daily_buckets > "$work/daily.log" 2>&1 || { tail -80 "$work/daily.log"; exit 1; }
daily_s=$(echo "$(date +%s.%N) - $start" | bc)
echo "t0clip_daily_buckets (certify, labels; embed, train-suite, score, calibrate) with $buckets buckets: ${daily_s%.*} s in Airflow"

# The same stages on one whole root.
whole="$work/whole"
run() { local rc=0; "$bin/$1" --root "$whole" --now "$now" --quiet "${@:2}" || rc=$?; echo "$rc"; }
[ "$(run acquire --input "$repo/fixtures/clips")" = 0 ]
[[ "$(run audit)" =~ ^[01]$ ]]
[[ "$(run heal)" =~ ^(0|99)$ ]]
"$bin/audit" --root "$whole" --now "$now" --quiet --json > "$work/audit.json"
[ "$(run certify)" = 0 ]
[ "$(run certify labels)" = 0 ]
for s in embed train-suite score calibrate; do [ "$(run $s)" = 0 ]; done

python3 - "$T0CLIP_ROOT" "$whole" "$buckets" "$work/audit.json" <<'EOF'
import glob, json, sys
bucketed, whole, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
final_audit = json.load(open(sys.argv[4]))["run_id"]

def files(root, pattern):
    return [json.load(open(p)) for p in sorted(glob.glob(f"{root}/{pattern}/*.json"))]

# One acquire commit; two audit commits: the first FAIL (heal's input), the last PASS.
acq_commits, audit_commits = files(bucketed, "commits/acquire"), files(bucketed, "commits/audit")
assert len(acq_commits) == 1 and len(audit_commits) == 2, (len(acq_commits), len(audit_commits))
acq_commit = acq_commits[0]
assert acq_commit["buckets"] == n, acq_commit["buckets"]
whole_acq = files(whole, "manifests/acquire")[0]
want = {o["name"]: (o["content_hash"], o["rows"]) for o in whole_acq["outputs"]}
got = {o["name"]: (o["content_hash"], o["rows"]) for o in acq_commit["outputs"]}
bad = [k for k in want if want[k] != got.get(k)]
assert not bad and set(want) == set(got), f"acquire: joined outputs differ from the whole root's: {bad}"
print(f"acquire: {len(want)} outputs joined over {n} buckets hash as on one root")
assert sorted(c["gate"] for c in audit_commits) == ["FAIL", "PASS"], [c["gate"] for c in audit_commits]
audit_commit = next(c for c in audit_commits if c["gate"] == "PASS")
whole_audit = json.load(open(f"{whole}/manifests/audit/{final_audit}.json"))
assert audit_commit["gate"] == whole_audit["gate"] == "PASS", (audit_commit["gate"], whole_audit["gate"])
rows = {i["name"]: i["rows"] for i in whole_audit["inputs"] if i["name"].startswith("canonical.")}
joined = {o["name"]: o.get("rows") for o in audit_commit["outputs"] if o["name"].startswith("canonical.")}
assert rows == joined, f"audited canonical rows differ: whole {rows}, joined {joined}"
same = [k for k in rows if next(i["content_hash"] for i in whole_audit["inputs"] if i["name"] == k)
        == next(o["content_hash"] for o in audit_commit["outputs"] if o["name"] == k)]
assert len(same) == len(rows), f"audited canonical hashes differ after heal: equal only {sorted(same)}"
print(f"audit: gate PASS on both; the audited canonical tables hash the same ({rows})")

# The daily DAG: one certify commit whose joined surfaces are the whole root's.
certify_commits = files(bucketed, "commits/certify")
assert len(certify_commits) == 1, len(certify_commits)
whole_certify = files(whole, "manifests/certify")[0]
want = {o["name"]: (o["content_hash"], o["rows"]) for o in whole_certify["outputs"] if o["name"].startswith("surface.")}
got = {o["name"]: (o["content_hash"], o["rows"]) for o in certify_commits[0]["outputs"] if o["name"].startswith("surface.")}
assert want and want == got, f"certify: joined surfaces differ from the whole root's: {want} vs {got}"
print(f"certify: {len(want)} surfaces joined over {n} buckets hash as on one root ({sum(r for _, r in want.values())} rows)")
labels_commits = files(bucketed, "commits/labels")
assert len(labels_commits) == 1, len(labels_commits)
whole_labels = files(whole, "manifests/labels")[0]
want = {o["name"]: (o["content_hash"], o["rows"]) for o in whole_labels["outputs"]}
got = {o["name"]: (o["content_hash"], o["rows"]) for o in labels_commits[0]["outputs"] if o["name"] in want}
assert want and want == got, f"labels: joined labels differ from the whole root's: {want} vs {got}"
print(f"labels: joined over {n} buckets hash as on one root ({want['labels'][1]} rows)")

# The model stages on the base root, after the gathered certify and labels runs.
def latest(root, stage):
    runs = sorted(glob.glob(f"{root}/manifests/{stage}/*.json"), key=lambda p: json.load(open(p))["finished_at"])
    return json.load(open(runs[-1]))

for stage, names in (("embed", ("embeddings.", "fused.")), ("score", ("predictions",))):
    want = {o["name"]: o["content_hash"] for o in latest(whole, stage)["outputs"] if o["name"].startswith(names)}
    got = {o["name"]: o["content_hash"] for o in latest(bucketed, stage)["outputs"] if o["name"].startswith(names)}
    assert want and want == got, f"{stage} on the gathered base root differs from the whole root's: {want} vs {got}"
    print(f"{stage}: {len(want)} outputs on the gathered base root hash as on one root")
states = [latest(r, "calibrate")["summary"]["state"] for r in (whole, bucketed)]
assert states[0] == states[1], f"calibrate: {states}"
print(f"calibrate: {states[0]} on both")

# Lineage: every stage run the DAGs started names its Airflow task as its parent run; the
# mapped bucket tasks are each their own parent run.
events = [json.loads(l) for p in glob.glob(f"{bucketed}/**/lineage/events.jsonl", recursive=True) for l in open(p)]
assert events, "no lineage events under the bucketed root"
orphans = [e["job"]["name"] for e in events if "parent" not in e["run"]["facets"]]
assert not orphans, f"stage runs without their Airflow task as parent: {orphans[:5]}"
parents = {e["run"]["facets"]["parent"]["job"]["name"] for e in events}
assert all(p.startswith(("t0clip_ingest_buckets.", "t0clip_daily_buckets.")) for p in parents), parents
acquire_runs = {e["run"]["facets"]["parent"]["run"]["runId"] for e in events if e["job"]["name"].startswith("acquire.bucket-")}
assert len(acquire_runs) == n, f"{n} mapped acquire tasks, {len(acquire_runs)} parent runs"
print(f"lineage: {len(events)} events, each with its Airflow task as parent ({len(parents)} tasks)")
EOF
echo "airflow-buckets: passed"
