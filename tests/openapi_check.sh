#!/usr/bin/env bash
# Every method and path of the API contract (shared/brief/API.md) is in api/openapi.yaml.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
api="$root/../shared/brief/API.md"
spec="$root/api/openapi.yaml"
if [ ! -f "$api" ]; then echo "openapi_check: $api not present, nothing to compare"; exit 0; fi
missing=0
while read -r method path; do
  path=${path%%\?*}
  lower=$(echo "$method" | tr 'A-Z' 'a-z')
  # the path block, up to the next path at the same indent
  block=$(awk -v p="  $path:" '$0==p {on=1; next} on && /^  \/[^ ]*:$/ {exit} on {print}' "$spec")
  if [ -z "$block" ] || ! grep -qE "^    $lower:" <<<"$block"; then
    echo "openapi_check: $method $path is in API.md but not in api/openapi.yaml"; missing=1
  fi
done < <(grep -oE '^\| `(GET|POST|PUT|DELETE) /[^`]*`' "$api" | sed -E 's/^\| `//; s/`$//')
[ $missing -eq 0 ] && echo "openapi_check: every API.md path is documented"
exit $missing
