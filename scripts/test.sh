#!/usr/bin/env bash
# One command for a fresh machine: build and run every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/t0-clip/target}"
cargo test --workspace --all-targets
