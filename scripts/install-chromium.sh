#!/usr/bin/env bash
# Install Debian's Chromium for the report's browser test (crates/t0-cli/tests/it/report.rs),
# which fails, saying so, without it. Nothing is downloaded at test time; the page itself
# fetches nothing either.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then exit 0; fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null || { echo "install-chromium: apt-get update failed" >&2; exit 1; }
apt-get install -y -qq chromium >/dev/null || { echo "install-chromium: apt-get install chromium failed" >&2; exit 1; }
/usr/bin/chromium --version >/dev/null
