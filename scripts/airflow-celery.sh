#!/usr/bin/env bash
# The bucketed ingest DAG on Airflow's CeleryExecutor with two Celery workers on this machine
# (issue 31): the demonstration that a cluster executor runs it unchanged.
#   - PostgreSQL (Debian `postgresql`) as Airflow's metadata database and Celery's result
#     backend, Redis (Debian `redis-server`) as the broker, both on loopback only, in a
#     scratch directory;
#   - Airflow from PyPI (the venv scripts/airflow-buckets.sh makes) with the celery provider
#     (celery pinned below 5.6: the provider imports celery.backends.database.retry, gone in 5.7);
#   - api-server, scheduler, dag-processor and two workers (`w1`, `w2`); the ingest DAG
#     triggered once, the daily DAG started by the asset its audit commit updates, and on
#     success: which worker ran each bucket task, and the committed acquire, certify, labels
#     and embed hashes, the predictions score made on the gathered base root and calibrate's
#     state compared with one whole root's.
#
#   bash scripts/airflow-celery.sh        (needs root for apt-get, or the two packages present)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
cache="$HOME/.cache/t0-clip"
target="${CARGO_TARGET_DIR:-$cache/target}"
bin="$target/debug"
buckets="${T0CLIP_BUCKETS:-4}"
now="2026-06-01T00:00:00Z"
venv="$cache/airflow-venv"

cargo build -q --workspace --bins
command -v redis-server > /dev/null || apt-get install -y -q redis-server > /dev/null
pg=$(ls -d /usr/lib/postgresql/*/bin 2> /dev/null | sort -V | tail -n 1)
[ -n "$pg" ] || { apt-get install -y -q postgresql > /dev/null; pg=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1); }
[ -x "$venv/bin/airflow" ] || { python3 -m venv "$venv"; "$venv/bin/pip" install -q "apache-airflow==3.3.2"; }
"$venv/bin/pip" install -q "apache-airflow-providers-celery" "celery>=5.5,<5.6" "psycopg2-binary" "asyncpg" "redis" > /dev/null

work=$(mktemp -d /tmp/t0clip-celery.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2> /dev/null || true; done
    sleep 2
    su postgres -c "$pg/pg_ctl -D $work/pg -m fast stop" > /dev/null 2>&1 || true
    [ -n "${T0CLIP_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

# PostgreSQL and Redis on loopback.
mkdir -p "$work/pg" && chown postgres "$work/pg"
su postgres -c "$pg/initdb -D $work/pg -A trust -U postgres" > "$work/initdb.log"
su postgres -c "$pg/pg_ctl -D $work/pg -l $work/pg/server.log -o '-h 127.0.0.1 -p 54329 -k $work/pg' start" > /dev/null
for _ in $(seq 50); do "$pg/pg_isready" -h 127.0.0.1 -p 54329 > /dev/null 2>&1 && break; sleep 0.2; done
"$pg/psql" -h 127.0.0.1 -p 54329 -U postgres -q -c "CREATE DATABASE airflow"
redis-server --bind 127.0.0.1 --port 6399 --save "" --daemonize no > "$work/redis.log" 2>&1 &
pids+=($!)

export AIRFLOW_HOME="$work/airflow"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__DAGS_FOLDER="$repo/dags"
export AIRFLOW__CORE__EXECUTOR=CeleryExecutor
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="postgresql+psycopg2://postgres@127.0.0.1:54329/airflow"
export AIRFLOW__CELERY__BROKER_URL="redis://127.0.0.1:6399/0"
export AIRFLOW__CELERY__RESULT_BACKEND="db+postgresql+psycopg2://postgres@127.0.0.1:54329/airflow"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://127.0.0.1:8797/execution/"
export AIRFLOW__API__PORT=8797
export AIRFLOW__API_AUTH__JWT_SECRET="t0clip-celery-demo-$(date +%s%N)"
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False
export AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL=5
export T0CLIP_BIN="$bin" T0CLIP_INPUT="$repo/fixtures/clips" T0CLIP_NOW="$now" T0CLIP_BUCKETS="$buckets"
export T0CLIP_ROOT="$work/bucketed"
af="$venv/bin/airflow"
"$af" db migrate > "$work/migrate.log" 2>&1 || { tail -30 "$work/migrate.log"; exit 1; }

"$af" api-server --host 127.0.0.1 --port 8797 > "$work/api.log" 2>&1 & pids+=($!)
"$af" scheduler > "$work/scheduler.log" 2>&1 & pids+=($!)
"$af" dag-processor > "$work/dag-processor.log" 2>&1 & pids+=($!)
# Each worker serves its task logs on a port of its own.
AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=8794 "$af" celery worker --celery-hostname w1 --concurrency 2 > "$work/w1.log" 2>&1 & pids+=($!)
AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=8795 "$af" celery worker --celery-hostname w2 --concurrency 2 > "$work/w2.log" 2>&1 & pids+=($!)

# Wait for the DAG to be parsed, then run it once.
for _ in $(seq 120); do
    "$af" dags list -o plain 2> /dev/null | grep -q t0clip_ingest_buckets && break
    sleep 2
done
start=$(date +%s)
"$af" dags unpause t0clip_ingest_buckets > /dev/null 2>&1 || true
"$af" dags trigger t0clip_ingest_buckets --run-id celery-demo > /dev/null
# finished TRIES SQL: poll a run's state (SQL selects it) every 2 s until it succeeds or fails.
finished() {
    local state=""
    for _ in $(seq "$1"); do
        state=$("$pg/psql" -h 127.0.0.1 -p 54329 -U postgres -d airflow -tA -c "$2")
        [ "$state" = success ] || [ "$state" = failed ] && break
        sleep 2
    done
    echo "$state"
}
state=$(finished 450 "SELECT state FROM dag_run WHERE dag_id = 't0clip_ingest_buckets' AND run_id = 'celery-demo'")
took=$(($(date +%s) - start))
echo "t0clip_ingest_buckets on CeleryExecutor, 2 workers, $buckets buckets: $state in $took s"
# The passing audit's commit updated the asset t0clip_daily_buckets is scheduled on: the
# scheduler starts it (certify, certify labels and embed on every bucket, each committed and
# gathered; then train-suite, score and calibrate on the base root).
daily=""
if [ "$state" = success ]; then
    daily=$(finished 600 "SELECT state FROM dag_run WHERE dag_id = 't0clip_daily_buckets' ORDER BY id DESC LIMIT 1")
    echo "t0clip_daily_buckets, started by the audit commit's asset: $daily after $(($(date +%s) - start)) s in all"
    [ "$daily" = success ] || state="daily: ${daily:-never started}"
fi
"$pg/psql" -h 127.0.0.1 -p 54329 -U postgres -d airflow -A -F ' ' -c \
    "SELECT dag_id, task_id, map_index, state, hostname FROM task_instance
     WHERE dag_id LIKE 't0clip_%' ORDER BY dag_id, task_id, map_index" \
    > "$work/tasks.txt"
if [ "$state" != success ]; then
    cat "$work/tasks.txt"; tail -40 "$work/scheduler.log"; tail -20 "$work/w1.log"; exit 1
fi
# Which worker ran what: Airflow records the machine's hostname (the same for both here), so
# each worker's own log of the workloads it executed says.
python3 - "$work/w1.log" "$work/w2.log" <<'EOF'
import re, sys
pattern = re.compile(r"Executing workload in Celery:.*?task_id='([^']+)'.*?map_index=(-?\d+)")
ran = {}
for path in sys.argv[1:]:
    worker = path.rsplit("/", 1)[-1][:-4]
    ran[worker] = [(t, int(m)) for t, m in pattern.findall(open(path).read())]
mapped = {w: [f"{t}[{m}]" for t, m in r if m >= 0] for w, r in ran.items()}
for w in sorted(ran):
    print(f"  {w}: {len(ran[w])} tasks, {len(mapped[w])} bucket tasks: {' '.join(sorted(mapped[w]))}")
busy = [w for w in mapped if mapped[w]]
assert len(busy) >= 2, f"bucket tasks ran on {busy} only, want both workers"
EOF

# The committed acquire, certify, labels and embed, and what the model stages made on the
# gathered base root, equal one whole root's.
whole="$work/whole"
w() { "$bin/$1" --root "$whole" --now "$now" --quiet "${@:2}" || { rc=$?; [ $rc -eq 1 ] || [ $rc -eq 99 ]; }; }
w acquire --input "$repo/fixtures/clips" && w audit && w heal && w audit && w certify && w certify labels
w embed && w train-suite && w score && w calibrate
python3 - "$T0CLIP_ROOT" "$whole" <<'EOF'
import glob, json, sys
bucketed, whole = sys.argv[1], sys.argv[2]
def latest(root, stage):
    runs = sorted(glob.glob(f"{root}/manifests/{stage}/*.json"), key=lambda p: json.load(open(p))["finished_at"])
    return json.load(open(runs[-1]))
for stage, prefix in [("acquire", ""), ("certify", "surface."), ("labels", "labels"), ("embed", ("embeddings.", "fused."))]:
    commit = json.load(open(glob.glob(f"{bucketed}/commits/{stage}/*.json")[0]))
    manifest = latest(whole, stage)
    want = {o["name"]: o["content_hash"] for o in manifest["outputs"] if o["name"].startswith(prefix)}
    got = {o["name"]: o["content_hash"] for o in commit["outputs"] if o["name"].startswith(prefix)}
    assert want and want == got, f"committed {stage} differs from one whole root's"
    print(f"{stage} committed over {commit['buckets']} buckets: {len(got)} outputs hash as on one root")
want, got = (next(o["content_hash"] for o in latest(r, "score")["outputs"] if o["name"] == "predictions") for r in (whole, bucketed))
assert want == got, f"predictions on the gathered base root differ: {got} vs {want}"
states = [latest(r, "calibrate")["summary"]["state"] for r in (whole, bucketed)]
assert states[0] == states[1], f"calibrate: {states}"
print(f"score and calibrate on the gathered base root: predictions hash as on one root; state {states[0]} on both")
EOF
echo "airflow-celery: passed"
