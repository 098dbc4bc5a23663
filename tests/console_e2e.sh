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
DEV_PID=
cleanup() {
  if [ -n "$DEV_PID" ]; then kill -INT "$DEV_PID" 2>/dev/null || true; wait "$DEV_PID" || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# Ports below Linux's ephemeral range (32768+); a start that loses a race for a port is
# retried on others (as tests/walkthrough.sh does).
start_dev() {
  for _ in $(seq 1 100); do
    B=$(( (RANDOM % 12000) + 20000 ))
    if port_free $B && port_free $((B+1)) && port_free $((B+2)) && port_free $((B+3)); then break; fi
  done
  D="$WORK/dev$1"
  "$MERIDIAN" dev --dir "$D" --base-port "$B" --policy legacy > "$WORK/dev.out" 2>&1 &
  DEV_PID=$!
  for _ in $(seq 1 300); do
    grep -q "Ctrl-C stops every node" "$WORK/dev.out" 2>/dev/null && return 0
    kill -0 "$DEV_PID" 2>/dev/null || break
    sleep 0.1
  done
  grep -q "Ctrl-C stops every node" "$WORK/dev.out" && return 0
  cat "$WORK/dev.out"
  tail -n 20 "$D"/*/node.log 2>/dev/null || true
  kill -INT "$DEV_PID" 2>/dev/null || true; wait "$DEV_PID" || true; DEV_PID=
  return 1
}
started=
for attempt in 1 2 3; do
  if start_dev $attempt; then started=1; break; fi
  echo "console_e2e: the cluster did not start (attempt $attempt), retrying on other ports"
done
[ -n "$started" ] || exit 1

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
