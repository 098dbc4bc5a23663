#!/usr/bin/env bash
# Runs the README's curl walk-through, exactly as written there, against a fresh
# `meridian dev` cluster (TLS and WAN latency on, as `make run` starts it).
set -euo pipefail
MERIDIAN=${1:?usage: walkthrough.sh path/to/meridian}
HERE=$(cd "$(dirname "$0")" && pwd)
README="$HERE/../README.md"
WORK=$(mktemp -d)
DEV_PID=
cleanup() {
  if [ -n "$DEV_PID" ]; then kill -INT "$DEV_PID" 2>/dev/null || true; wait "$DEV_PID" || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# Ports below Linux's ephemeral range (32768+), so no outgoing connection of a test running
# alongside can hold one; a start that still loses a race for a port is retried on others.
start_dev() {
  for _ in $(seq 1 100); do
    B=$(( (RANDOM % 12000) + 20000 ))
    if port_free $B && port_free $((B+1)) && port_free $((B+2)) && port_free $((B+3)); then break; fi
  done
  export D="$WORK/dev$1" B
  "$MERIDIAN" dev --dir "$D" --base-port "$B" > "$WORK/dev.out" 2>&1 &
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
  echo "walkthrough: the cluster did not start (attempt $attempt), retrying on other ports"
done
[ -n "$started" ] || exit 1

# The block between the walkthrough markers of the README.
sed -n '/<!-- walkthrough:start -->/,/<!-- walkthrough:end -->/p' "$README" \
  | sed -e '1,/^```sh/d' -e '/^```/,$d' > "$WORK/walkthrough.sh"
[ -s "$WORK/walkthrough.sh" ] || { echo "no walkthrough block in README.md"; exit 1; }
bash -euo pipefail "$WORK/walkthrough.sh" > "$WORK/out.txt" 2>&1 || { cat "$WORK/out.txt"; exit 1; }
cat "$WORK/out.txt"

expect() { grep -qF -- "$1" "$WORK/out.txt" || { echo "walkthrough: missing '$1'"; exit 1; }; }
expect '"home_region":"singapore"'
expect '"home_region":"oregon"'
expect '"home_region":"beijing"'
expect '"phone":"+919876543210"'
expect 'hello from the edge'
expect '{"keys":["hello"]}'
expect '"state":"active"'
expect '"state":"reserved"'
expect '"sold":1'
echo "walkthrough: ok"
