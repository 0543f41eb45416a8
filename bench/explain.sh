#!/usr/bin/env bash
# Explanation throughput, in one run: t0-clip's GBDT prediction and exact TreeSHAP over ROWS
# rows against XGBoost's predict and pred_contribs on a model of the same number of trees and
# leaves with the same threads, and against shap.TreeExplainer (bench/explain_peer.py).
#
#   bash bench/explain.sh [ROWS] [THREADS]     (default 1000000 rows, every core)
#
# Builds the `bench-explain` profile (our code as in release, the unused DuckDB at -O0) and a
# Python venv with xgboost and shap under the build cache; data under $BENCH_DIR/explain.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/t0-clip/target}"
rows="${1:-1000000}"
threads="${2:-$(nproc)}"
work="${BENCH_DIR:-$HOME/.cache/t0-clip/bench}/explain"
venv="${BENCH_VENV:-$HOME/.cache/t0-clip/bench-venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import xgboost, shap" 2>/dev/null || "$venv/bin/pip" install --quiet xgboost shap
cargo build --profile bench-explain -p t0-train --example explain_bench
RAYON_NUM_THREADS="$threads" "$CARGO_TARGET_DIR/bench-explain/examples/explain_bench" "$work" "$rows"
"$venv/bin/python" bench/explain_peer.py "$work" "$threads"
