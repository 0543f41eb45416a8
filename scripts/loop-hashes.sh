#!/usr/bin/env bash
# Run the clips and gapminder loops on fresh roots with a pinned clock and print one sha256
# per output file (manifests, lake, runs, calib, metrics; not the DuckDB file, whose pages
# are not byte-stable, nor spill space). A refactor that claims "no change of behaviour"
# diffs this listing before and after:
#
#   bash scripts/loop-hashes.sh /tmp/before > before.txt   # on the old commit
#   bash scripts/loop-hashes.sh /tmp/after  > after.txt    # on the new one
#   diff before.txt after.txt
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/t0-clip/target}"
export PATH="$HOME/.local/bin:$HOME/.cargo/bin:$PATH"
export T0CLIP_NOW="${T0CLIP_NOW:-2026-06-01T00:00:00Z}"
work="${1:-$(mktemp -d)}"
bash scripts/install-just.sh >&2
rm -rf "$work/clips" "$work/gap"
mkdir -p "$work"
T0CLIP_ROOT="$work/clips" just --quiet loop >"$work/clips.log" 2>&1 \
    || { cat "$work/clips.log" >&2; exit 1; }
T0CLIP_ROOT="$work/gap" T0CLIP_PROJECT=projects/gapminder just --quiet loop fixtures/gapminder \
    >"$work/gap.log" 2>&1 || { cat "$work/gap.log" >&2; exit 1; }
for example in clips gap; do
    (cd "$work/$example" && find manifests lake runs calib metrics -type f 2>/dev/null \
        | LC_ALL=C sort | xargs sha256sum | sed "s|^|$example |")
done
