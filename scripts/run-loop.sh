#!/usr/bin/env bash
# One command for a fresh machine: install just if needed, build, and run the whole loop on
# the embedded fixture. Results land in $T0CLIP_ROOT (default ./.t0clip).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/t0-clip/target}"
export PATH="$HOME/.local/bin:$HOME/.cargo/bin:$PATH"
bash scripts/install-just.sh
bash scripts/fetch-models.sh
just loop "${1:-fixtures/clips}"
just report --quiet
root="${T0CLIP_ROOT:-.t0clip}"
echo
echo "manifests:   $root/manifests/<stage>/<run_id>.json"
echo "surfaces:    $root/lake/surfaces/   labels: $root/lake/labels/"
echo "model:       $(ls -d "$root"/runs/*/model.json 2>/dev/null | tail -n 1)"
echo "predictions: $(ls "$root"/lake/predictions/*/predictions.parquet 2>/dev/null | tail -n 1)"
echo "acceptance:  $(ls "$root"/calib/*/report.json 2>/dev/null | tail -n 1)   metrics: $root/metrics/calibrate.prom"
echo "report:      $root/report/index.html   lineage: $root/lineage/events.jsonl"
