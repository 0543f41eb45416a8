#!/usr/bin/env bash
# Install `just` when it is missing: the PyPI wheel (fast) or from crates.io (about 2 minutes).
set -euo pipefail
if command -v just >/dev/null 2>&1; then exit 0; fi
if python3 -m pip install --quiet --user rust-just 2>/dev/null || python3 -m pip install --quiet rust-just; then
    command -v just >/dev/null 2>&1 && exit 0
    # pip --user puts it in ~/.local/bin, which may not be on PATH yet.
    [ -x "$HOME/.local/bin/just" ] && exit 0
fi
cargo install just --locked
