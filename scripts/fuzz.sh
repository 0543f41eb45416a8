#!/usr/bin/env bash
# Fuzz every target in fuzz/ for SECONDS each (default 300) with cargo-fuzz (libFuzzer, the
# nightly toolchain): installs cargo-fuzz into the build cache from crates.io if missing, keeps
# each target's corpus in the build cache (seeded from fixtures/malformed and the fixtures'
# files), and leaves any crashing input under fuzz/artifacts/<target>/. Prints CPU seconds and
# findings per target; exits 1 if any target crashed.
#   bash scripts/fuzz.sh [SECONDS] [TARGET...]     (T0CLIP_FUZZ_JOBS=N: N targets at once)
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
    targets=(csv_records ndjson_records parquet_records timestamps grid_spec wav images project_yaml declarations)
fi
seed() {
    local t="$1" dir="$2"
    mkdir -p "$dir"
    case "$t" in
        csv_records) cp fixtures/clips/*.csv fixtures/gapminder/*.csv "$dir/" 2>/dev/null || true ;;
        ndjson_records) printf '{"entity_id": "a", "observed_at": "2026-01-01", "views": 1}\n' > "$dir/one" ;;
        timestamps) printf '\x002026-02-18T20:27:51.5+05:30' > "$dir/iso"; printf '\x812001' > "$dir/year" ;;
        grid_spec) printf 'aci.gamma=[0.005,0.02]; guards.rel_width.hard=[1.5,2.5]' > "$dir/grid" ;;
        wav) find fixtures -name '*.wav' | head -20 | xargs -r cp -t "$dir/" ;;
        images) find fixtures \( -name '*.png' -o -name '*.gif' -o -name '*.jpg' -o -name '*.webp' \) -size -64k \
            | head -20 | xargs -r cp -t "$dir/" ;;
        project_yaml) for p in projects/*/project.yaml; do cp "$p" "$dir/$(basename "$(dirname "$p")")"; done ;;
        declarations)
            # The first byte picks the loader: 0 contract, 1 heal rules, 2 sources, 3 certify.
            for p in projects/*/; do
                n=$(basename "$p")
                for c in "$p"contracts/*.yaml; do [ -f "$c" ] && { printf '\x00'; cat "$c"; } > "$dir/$n-$(basename "$c")"; done
                [ -f "$p/heal/rules.yaml" ] && { printf '\x01'; cat "$p/heal/rules.yaml"; } > "$dir/$n-rules"
                [ -f "$p/sources.yaml" ] && { printf '\x02'; cat "$p/sources.yaml"; } > "$dir/$n-sources"
                [ -f "$p/certify.yaml" ] && { printf '\x03'; cat "$p/certify.yaml"; } > "$dir/$n-certify"
            done ;;
    esac
    return 0
}
# Build every target once first, so the timed runs measure fuzzing, not compiling.
cargo +nightly fuzz build --fuzz-dir fuzz
one() {
    local t="$1" corpus="$cache/fuzz-corpus/$1" start result runs
    seed "$t" "$corpus"
    start=$(date +%s)
    if cargo +nightly fuzz run --fuzz-dir fuzz "$t" "$corpus" -- -max_total_time="$secs" -rss_limit_mb=4096 \
        > "$cache/fuzz-$t.log" 2>&1; then
        result="no crash"
    else
        result="CRASH (see $cache/fuzz-$t.log and fuzz/artifacts/$t/)"
    fi
    runs=$(grep -o 'Done [0-9]* runs' "$cache/fuzz-$t.log" | tail -1 || true)
    echo "fuzz $t: $(( $(date +%s) - start )) s, ${runs:-? runs}, corpus $(ls "$corpus" | wc -l) inputs: $result"
    [ "$result" = "no crash" ]
}
# T0CLIP_FUZZ_JOBS targets at once (default 1; one core each).
jobs_max="${T0CLIP_FUZZ_JOBS:-1}"
failed=0
for t in "${targets[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do
        wait -n || failed=1
    done
    one "$t" &
done
while [ "$(jobs -rp | wc -l)" -gt 0 ]; do
    wait -n || failed=1
done
exit "$failed"
