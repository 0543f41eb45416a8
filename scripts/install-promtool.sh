#!/usr/bin/env bash
# Install Prometheus's `promtool` (for the alert-rule and metrics checks in the tests) into the
# build cache: the Debian package `prometheus`, unpacked rather than installed (no daemon, no
# root needed beyond apt's download). Prints the binary's path. An installed promtool on PATH
# is used as is.
set -euo pipefail
dest="${T0CLIP_CACHE:-$HOME/.cache/t0-clip}/promtool"
bin="$dest/x/usr/bin/promtool"
if [ -x "$bin" ]; then echo "$bin"; exit 0; fi
if command -v promtool >/dev/null 2>&1; then command -v promtool; exit 0; fi
mkdir -p "$dest"
cd "$dest"
apt-get download prometheus >/dev/null 2>&1 || { echo "install-promtool: apt-get download prometheus failed" >&2; exit 1; }
dpkg-deb -x prometheus_*.deb x
rm -f prometheus_*.deb
"$bin" --version >/dev/null
echo "$bin"
