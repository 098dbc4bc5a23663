#!/usr/bin/env bash
# Runs the README's curl walk-through, exactly as written there, against a fresh
# `meridian dev` cluster (TLS and WAN latency on, as `make run` starts it).
set -euo pipefail
MERIDIAN=${1:?usage: walkthrough.sh path/to/meridian}
HERE=$(cd "$(dirname "$0")" && pwd)
README="$HERE/../README.md"
WORK=$(mktemp -d)
. "$HERE/dev_cluster.sh"
start_dev_cluster || exit 1

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
