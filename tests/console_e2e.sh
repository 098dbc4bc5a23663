#!/usr/bin/env bash
# The web console in a real browser: starts `meridian dev` (TLS and WAN latency on, as
# `make run` does, with the legacy policy so that there are users to move) on free ports,
# then console/tests/e2e.mjs drives Debian's Chromium headless with playwright-core.
# Usage: console_e2e.sh path/to/meridian ARTIFACTS_DIR   (screenshots go there)
set -euo pipefail
MERIDIAN=${1:?usage: console_e2e.sh path/to/meridian artifacts-dir}
ARTIFACTS=${2:?usage: console_e2e.sh path/to/meridian artifacts-dir}
HERE=$(cd "$(dirname "$0")" && pwd)
CONSOLE="$HERE/../console"
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

for need in node "$CHROMIUM"; do
  command -v "$need" >/dev/null 2>&1 || { echo "console_e2e: $need is missing (scripts/install-deps)"; exit 1; }
done
[ -d "$CONSOLE/node_modules/playwright-core" ] ||
  { echo "console_e2e: console/node_modules is missing (scripts/build-console)"; exit 1; }

WORK=$(mktemp -d)
. "$HERE/dev_cluster.sh"
start_dev_cluster --policy legacy || exit 1

mkdir -p "$ARTIFACTS"
rm -f "$ARTIFACTS"/*.png  # only this run's screenshots
# The cluster's order: beijing, oregon, singapore, california on B..B+3.
export MERIDIAN_URLS="beijing=https://127.0.0.1:$B,oregon=https://127.0.0.1:$((B+1)),singapore=https://127.0.0.1:$((B+2)),california=https://127.0.0.1:$((B+3))"
export MERIDIAN_ADMIN_TOKEN_FILE="$D/admin.token"
export NODE_EXTRA_CA_CERTS="$D/ca.pem"  # the dev CA, for the test's own API calls
export CHROMIUM ARTIFACTS
if ! timeout 150 node "$CONSOLE/tests/e2e.mjs"; then
  echo "console_e2e: failed; screenshots in $ARTIFACTS; node logs:"
  tail -n 15 "$D"/*/node.log 2>/dev/null || true
  exit 1
fi
