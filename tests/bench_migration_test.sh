#!/usr/bin/env bash
# `meridian bench migration` with tiny numbers, against its own private cluster: asserts what
# it reports (every user moved, none failed, a baseline measured, every figure present),
# never its speed.
# Usage: tests/bench_migration_test.sh path/to/meridian
set -euo pipefail
BIN=$1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

"$BIN" bench migration --help >/dev/null

source "$(dirname "$0")/jq_check.sh"

"$BIN" bench migration --users 20 --records 2 --json "$out/migration.json"
r=$out/migration.json
check "$r" '.benchmark == "migration" and (.command | test("bench migration"))'
check "$r" '.users == 20 and .records == 2 and .record_bytes == 1024 and .parallel == 8'
check "$r" '.migration_state == "done" and .users_total == 20'
check "$r" '.users_moved == 20 and .users_failed == 0'
check "$r" '.migration_users_per_s > 0 and .migration_wall_s > 0 and .migration_bytes > 0'
check "$r" '.fence_ms_p50 != null and .fence_ms_p99 != null and .fence_ms_p99 >= .fence_ms_p50'
check "$r" '.baseline_users == 20 and .baseline_puts == 40 and .baseline_failed == 0'
check "$r" '.baseline_users_per_s > 0 and .baseline_bytes == 40 * 1024'
check "$r" '.ratio > 0 and .target_ratio == 0.5 and (.target_met | type) == "boolean"'
check "$r" '.machine != null'
echo "bench migration: behaviour as reported"
