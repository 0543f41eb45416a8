#!/usr/bin/env bash
# Fuzz every target in fuzz/ for SECONDS each (default 300) with cargo-fuzz (libFuzzer, the
# nightly toolchain): installs cargo-fuzz into the build cache from crates.io if missing, keeps
# each target's corpus in the build cache (seeded from fixtures/malformed and the fixtures'
# files), and leaves any crashing input under fuzz/artifacts/<target>/. Prints CPU seconds and
# findings per target; exits 1 if any target crashed.
#   bash scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-300}"
shift || true
cache="$HOME/.cache/t0-clip"
export CARGO_TARGET_DIR="$cache/fuzz-target"
if ! command -v cargo-fuzz >/dev/null 2>&1 && [ ! -x "$cache/cargo-fuzz/bin/cargo-fuzz" ]; then
    cargo install cargo-fuzz --locked --root "$cache/cargo-fuzz"
fi
export PATH="$cache/cargo-fuzz/bin:$PATH"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(csv_records ndjson_records parquet_records timestamps grid_spec)
fi
seed() {
    local t="$1" dir="$2"
    mkdir -p "$dir"
    case "$t" in
        csv_records) cp fixtures/clips/*.csv fixtures/gapminder/*.csv "$dir/" 2>/dev/null || true ;;
        ndjson_records) printf '{"entity_id": "a", "observed_at": "2026-01-01", "views": 1}\n' > "$dir/one" ;;
        timestamps) printf '\x002026-02-18T20:27:51.5+05:30' > "$dir/iso"; printf '\x812001' > "$dir/year" ;;
        grid_spec) printf 'aci.gamma=[0.005,0.02]; guards.rel_width.hard=[1.5,2.5]' > "$dir/grid" ;;
    esac
}
failed=0
for t in "${targets[@]}"; do
    corpus="$cache/fuzz-corpus/$t"
    seed "$t" "$corpus"
    start=$(date +%s)
    if cargo +nightly fuzz run --fuzz-dir fuzz "$t" "$corpus" -- -max_total_time="$secs" -rss_limit_mb=4096 \
        > "$cache/fuzz-$t.log" 2>&1; then
        result="no crash"
    else
        result="CRASH (see $cache/fuzz-$t.log and fuzz/artifacts/$t/)"
        failed=1
    fi
    runs=$(grep -o 'Done [0-9]* runs' "$cache/fuzz-$t.log" | tail -1 || true)
    echo "fuzz $t: $(( $(date +%s) - start )) s, ${runs:-? runs}, corpus $(ls "$corpus" | wc -l) inputs: $result"
done
exit "$failed"
