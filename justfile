# t0-clip: the closed loop, one recipe per stage.
#   just loop                 # whole loop on the embedded fixture into $T0CLIP_ROOT (.t0clip)
#   just audit --json         # one stage, extra flags passed through
#   just loop-gapminder       # the gapminder example project (a real public panel)
#   just loop-horsekicks      # a real sparse event-count panel, features declared (no SQL)
# The project is the built-in clips example unless T0CLIP_PROJECT names a project directory.
set shell := ["bash", "-euo", "pipefail", "-c"]
set positional-arguments := false

root := env_var_or_default("T0CLIP_ROOT", ".t0clip")
target := env_var_or_default("CARGO_TARGET_DIR", "target")
profile := env_var_or_default("T0CLIP_PROFILE", "debug")
bindir := target / profile
cargo_profile := if profile == "debug" { "dev" } else { profile }

# List the recipes.
default:
    @{{just_executable()}} --list

# Build the eight stage binaries.
build:
    cargo build --profile {{cargo_profile}} --workspace --bins

# Run one stage binary; exit codes listed in `ok` (besides 0) count as success.
_run stage ok *args:
    #!/usr/bin/env bash
    set -uo pipefail
    "{{bindir}}/{{stage}}" --root "{{root}}" {{args}}
    rc=$?
    for c in 0 {{ok}}; do [ "$rc" -eq "$c" ] && exit 0; done
    echo "just: {{stage}} exited $rc" >&2
    exit "$rc"

# Write a generated dataset (CSV) to `out`.
generate out="target/generated" *args:
    "{{bindir}}/acquire" generate --out "{{out}}" {{args}}

acquire input="fixtures/clips" *args:
    {{just_executable()}} _run acquire "" --input "{{input}}" {{args}}

audit *args:
    {{just_executable()}} _run audit "" {{args}}

heal *args:
    {{just_executable()}} _run heal "" {{args}}

verify-ledger:
    {{just_executable()}} _run heal "" verify-ledger

# Prove the whole root untampered (manifests, outputs, links, ledger, certificates, stray files).
verify *args:
    {{just_executable()}} _run verify "" {{args}}

certify *args:
    {{just_executable()}} _run certify "" {{args}}

# The red team: inject late facts into a copy of the catalog and count what moves (exit 1 on a leak).
attack *args:
    {{just_executable()}} _run certify "" attack {{args}}

# Labels for the latest certified run (outside every feature closure).
labels *args:
    {{just_executable()}} _run certify "" labels {{args}}

embed *args:
    {{just_executable()}} _run embed "" {{args}}

train-suite *args:
    {{just_executable()}} _run train-suite "" {{args}}

score *args:
    {{just_executable()}} _run score "" {{args}}

calibrate *args:
    {{just_executable()}} _run calibrate "" {{args}}

# The closed loop: acquire -> audit -> heal -> audit -> certify -> labels -> embed -> train-suite -> score -> calibrate,
# then `verify` proves the root.
# A first audit may fail (heal answers it); 99 (nothing to do) is fine when re-run on the same root.
loop input="fixtures/clips": build
    {{just_executable()}} _run acquire 99 --input "{{input}}"
    {{just_executable()}} _run audit "1 99"
    {{just_executable()}} _run heal 99
    {{just_executable()}} _run audit 99
    {{just_executable()}} _run certify 99
    {{just_executable()}} _run certify 99 labels
    {{just_executable()}} _run embed 99
    {{just_executable()}} _run train-suite 99
    {{just_executable()}} _run score 99
    {{just_executable()}} _run calibrate "1 99"
    {{just_executable()}} _run verify ""
    @echo "results under {{root}}: manifests/, lake/, runs/, calib/, metrics/ and catalog.duckdb"

# One self-contained HTML page of the root: leaderboard, acceptance, intervals, drift, audit,
# heal and the certificate chain (open it in any browser; nothing is fetched).
report *args:
    {{just_executable()}} _run report "" {{args}}

# Generate a panel, run the whole loop on it and write the report; prints the page's path.
demo out="target/demo-data" *args: build
    #!/usr/bin/env bash
    set -euo pipefail
    {{just_executable()}} generate "{{out}}" {{args}}
    {{just_executable()}} loop "{{out}}"
    {{just_executable()}} report --quiet
    echo "report: {{root}}/report/index.html"

# The stage's buckets where it may have work (a root split with --bucket k/N).
plan stage *args:
    {{just_executable()}} _run plan "" {{stage}} {{args}}

# Verify a stage's buckets and record them joined in the base root (the single writer).
commit stage *args:
    {{just_executable()}} _run commit 99 {{stage}} {{args}}

# The ingest loop over N entity buckets, one bucket after another (Airflow runs them at once:
# dags/t0clip_buckets.py), each stage committed: acquire -> audit -> heal -> audit -> certify
# -> labels.
ingest-buckets n="4" input="fixtures/clips": build
    #!/usr/bin/env bash
    set -euo pipefail
    each() { local ok=$1; shift; for k in $(seq 0 $(({{n}} - 1))); do {{just_executable()}} _run "$1" "$ok" --bucket "$k/{{n}}" "${@:2}"; done; }
    each "" acquire --input "{{input}}"
    {{just_executable()}} _run commit 99 acquire
    each "1 99" audit
    {{just_executable()}} _run commit "1 99" audit
    each 99 heal
    each 99 audit
    {{just_executable()}} _run commit 99 audit
    each 99 certify
    {{just_executable()}} _run commit 99 certify
    each 99 certify labels
    {{just_executable()}} _run commit 99 labels
    echo "committed under {{root}}/commits; buckets under {{root}}/buckets"

# The whole loop over N entity buckets: ingest-buckets, then embed on every bucket and its
# commit (which, like the certify and labels commits, gathers the buckets' rows into the base
# root), then train-suite, score and calibrate on the base root.
loop-buckets n="4" input="fixtures/clips": (ingest-buckets n input)
    #!/usr/bin/env bash
    set -euo pipefail
    for k in $(seq 0 $(({{n}} - 1))); do {{just_executable()}} _run embed 99 --bucket "$k/{{n}}"; done
    {{just_executable()}} _run commit 99 embed
    {{just_executable()}} _run train-suite 99
    {{just_executable()}} _run score 99
    {{just_executable()}} _run calibrate "1 99"
    {{just_executable()}} _run verify ""
    echo "results under {{root}}: the gathered runs and the model stages in the base root"

# The gapminder example project (142 countries every five years, 1952-2007) through the loop,
# into its own root.
loop-gapminder: build
    T0CLIP_PROJECT=projects/gapminder T0CLIP_ROOT="{{root}}-gapminder" {{just_executable()}} loop fixtures/gapminder

# The horse-kick panel (14 Prussian corps, 1875-1894; scaffolded by `acquire infer`, features
# declared in project.yaml) through the loop, into its own root.
loop-horsekicks: build
    T0CLIP_PROJECT=projects/horsekicks T0CLIP_ROOT="{{root}}-horsekicks" {{just_executable()}} loop fixtures/horsekicks

# The data-half benchmark harness: medians of `runs` runs against each peer, written to
# bench/report.md and the README's benchmark table (release build; about 10 minutes a run).
bench runs="3" entities="1300000":
    bash bench/run.sh {{runs}} {{entities}}
