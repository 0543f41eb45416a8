#!/usr/bin/env bash
# The train-suite learners against their Python peers, in one run, same data, same threads:
#   gbdt       t0 histogram GBDT (squared error) vs scikit-learn HistGradientBoostingRegressor,
#              at 100k and 1M rows (20 features, 4 with 5% missing): fit time and test RMSE
#   gbdt-aft   t0 GBDT with the AFT objective vs XGBoost survival:aft (normal, 100k rows):
#              fit time, test aft-nloglik and Harrell's C
#   aft-*      t0 parametric AFT (Newton) vs lifelines Weibull/LogNormal/LogLogistic AFT
#              (50k rows, 10 covariates, ~1/3 censored): fit time and log-likelihood
#   ridge      t0 exact leave-one-out ridge vs RidgeCV (50k rows, 100 features, 8 penalties)
# Settings are the same on both sides (bench/train_peers.py). Each case runs RUNS times,
# alternating t0 and peer; the report gives medians.
# Needs: a Python venv with scikit-learn, xgboost, lifelines, pandas
# ($PY, default ~/.cache/t0-clip/venv-ml/bin/python).
# Usage: bench/train.sh [THREADS] [RUNS]    (writes bench/train-report.md)
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${1:-2}"
RUNS="${2:-3}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/t0-clip/target}"
PY="${PY:-$HOME/.cache/t0-clip/venv-ml/bin/python}"
WORK="${BENCH_DIR:-$HOME/.cache/t0-clip/bench/train}"
mkdir -p "$WORK"
cargo build -q --release --workspace --examples
BIN="$CARGO_TARGET_DIR/release/examples/fit_bench"

CASES="gbdt:gbdt-100k:100000 gbdt:gbdt-1m:1000000 gbdt-aft:gbdt-aft:100000 aft-weibull:aft-weibull:50000 aft-lognormal:aft-lognormal:50000 aft-loglogistic:aft-loglogistic:50000 ridge:ridge:50000"
RESULTS="$WORK/results.jsonl"
: >"$RESULTS"
for c in $CASES; do
  IFS=: read -r kind name rows <<<"$c"
  [ -f "$WORK/$name/meta.json" ] || "$PY" bench/train_peers.py gen "$kind" "$WORK/$name" "$rows"
  for run in $(seq "$RUNS"); do
    t0=$(RAYON_NUM_THREADS=$THREADS "$BIN" "$kind" "$WORK/$name")
    peer=$(OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS \
      "$PY" bench/train_peers.py peer "$kind" "$WORK/$name" "$THREADS")
    echo "{\"case\": \"$name\", \"rows\": $rows, \"run\": $run, \"t0\": $t0, \"peer\": $peer}" >>"$RESULTS"
    echo "$name run $run: t0 $t0 | peer $peer" >&2
  done
done

python3 - "$RESULTS" "$THREADS" "$RUNS" >bench/train-report.md <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
threads, runs = sys.argv[2], sys.argv[3]
peer = {"gbdt": "scikit-learn HistGradientBoostingRegressor", "gbdt-aft": "XGBoost survival:aft (hist, lossguide)",
        "aft": "lifelines", "ridge": "scikit-learn RidgeCV"}
def med(case, side, key):
    return statistics.median(r[side][key] for r in rows if r["case"] == case)
print("# train-suite learners vs their Python peers\n")
print(f"`bench/train.sh {threads} {runs}`: release build, {threads} threads on both sides, same data,")
print(f"medians of {runs} runs alternating t0 and peer. Time ratio = peer fit time / t0 fit time")
print("(above 1: t0 faster). Fit time only: data loading and prediction are outside the clock.\n")
print("| case | rows | t0 fit | peer fit | speed ratio | t0 accuracy | peer accuracy |")
print("|---|---|---|---|---|---|---|")
seen = []
for r in rows:
    if r["case"] not in seen:
        seen.append(r["case"])
for case in seen:
    n = next(r["rows"] for r in rows if r["case"] == case)
    t, p = med(case, "t0", "fit_seconds"), med(case, "peer", "fit_seconds")
    if case.startswith("gbdt-aft"):
        acc = lambda s: f"nloglik {med(case, s, 'aft_nloglik'):.4f}, C {med(case, s, 'c_index'):.4f}"
        name = peer["gbdt-aft"]
    elif case.startswith("gbdt"):
        acc = lambda s: f"RMSE {med(case, s, 'rmse'):.4f}"
        name = peer["gbdt"]
    elif case.startswith("aft"):
        acc = lambda s: f"loglik {med(case, s, 'log_likelihood'):.6f}"
        name = peer["aft"]
    else:
        acc = lambda s: f"alpha {med(case, s, 'alpha'):g}, RMSE {med(case, s, 'rmse'):.6f}"
        name = peer["ridge"]
    print(f"| {case} vs {name} | {n:,} | {t:.3f} s | {p:.3f} s | {p / t:.2f}x | {acc('t0')} | {acc('peer')} |")
print()
for case in seen:
    if case.startswith("gbdt") and not case.startswith("gbdt-aft"):
        a, b = med(case, "t0", "rmse"), med(case, "peer", "rmse")
        print(f"- {case}: t0 RMSE is {100 * (a - b) / b:+.2f}% of the peer's.")
    if case.startswith("aft"):
        a, b = med(case, "t0", "log_likelihood"), med(case, "peer", "log_likelihood")
        print(f"- {case}: log-likelihood difference t0 - lifelines = {a - b:+.3e}.")
PY
cat bench/train-report.md
