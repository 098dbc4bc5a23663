# Sourced by the shell tests that need a `meridian dev` cluster: start_dev_cluster starts one
# on four free loopback ports (B..B+3: beijing, oregon, singapore, california) in $WORK/devN,
# waits until it is up, and exports D (its folder) and B; the EXIT trap stops it and removes
# $WORK. Needs MERIDIAN (the binary) and WORK (a temporary folder) set by the caller.
DEV_PID=
stop_dev_cluster() {
  if [ -n "$DEV_PID" ]; then kill -INT "$DEV_PID" 2>/dev/null || true; wait "$DEV_PID" || true; fi
  DEV_PID=
}
trap 'stop_dev_cluster; rm -rf "$WORK"' EXIT
# With MERIDIAN_TEST_STORAGE=postgres, root runs each region's server as the postgres user,
# which must get through $WORK (mktemp makes it 0700).
chmod 755 "$WORK"

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# One attempt: $1 numbers the folder, the rest are extra `meridian dev` arguments.
try_dev_cluster() {
  local n=$1
  shift
  for _ in $(seq 1 100); do
    # Below Linux's ephemeral range (32768+): no outgoing connection can hold these ports.
    B=$(( (RANDOM % 12000) + 20000 ))
    if port_free $B && port_free $((B+1)) && port_free $((B+2)) && port_free $((B+3)); then break; fi
  done
  export D="$WORK/dev$n" B
  local storage=()
  [ "${MERIDIAN_TEST_STORAGE:-}" = postgres ] && storage=(--storage postgres)
  "$MERIDIAN" dev --dir "$D" --base-port "$B" "${storage[@]}" "$@" > "$WORK/dev.out" 2>&1 &
  DEV_PID=$!
  for _ in $(seq 1 300); do
    grep -q "Ctrl-C stops every node" "$WORK/dev.out" 2>/dev/null && return 0
    kill -0 "$DEV_PID" 2>/dev/null || break
    sleep 0.1
  done
  grep -q "Ctrl-C stops every node" "$WORK/dev.out" && return 0
  cat "$WORK/dev.out"
  tail -n 20 "$D"/*/node.log 2>/dev/null || true
  stop_dev_cluster
  return 1
}

# Another test may take a port between the check and the bind: retried on other ports.
start_dev_cluster() {
  for attempt in 1 2 3; do
    try_dev_cluster "$attempt" "$@" && return 0
    echo "the cluster did not start (attempt $attempt), retrying on other ports"
  done
  return 1
}
