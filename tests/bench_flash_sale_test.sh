#!/usr/bin/env bash
# `meridian bench flash-sale` with tiny numbers, against its own private cluster: asserts the
# behaviour it reports (exactly the stock sold, nothing oversold, duplicated or lost across a
# kill -9 and restart of the home node), never its speed.
# Usage: tests/bench_flash_sale_test.sh path/to/meridian
set -euo pipefail
BIN=$1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

"$BIN" bench flash-sale --help >/dev/null
"$BIN" bench http --help >/dev/null

source "$(dirname "$0")/jq_check.sh"

"$BIN" bench flash-sale --buyers 300 --stock 100 --rate 100 --duration-s 3 --connections 8 \
  --setup-connections 8 --json "$out/sale.json"
r=$out/sale.json
check "$r" '.requests == 300 and .answered == 300 and .failed == 0'
check "$r" '.won == 100 and .stock == 100 and .acknowledged_orders == 100'
check "$r" '.outcomes.won.count == 100 and .outcomes.sold_out.count == 200'
check "$r" '.outcomes.error.count == 0 and .outcomes.limit.count == 0'
check "$r" '.oversold == 0 and .duplicates == 0 and .lost == 0 and .phantom_orders == 0'
check "$r" '.killed_and_restarted == true and .accounting_holds == true'
check "$r" '.stats_after_restart.sold == 100 and .stats_after_restart.remaining == 0'
check "$r" '.verified_winners == 100 and .verified_buyers >= 100'
check "$r" '.sell_out_s != null and .sell_out_s > 0'
# The node's CPU by thread name: under the names the node gives its threads, and together
# about the whole (each thread's time is counted in whole clock ticks, the process's once).
check "$r" '.home_node_cpu_by_thread_s | keys | any(test("^(http-[0-9]+|audit-write|audit-sync|worker)$"))'
check "$r" '([.home_node_cpu_by_thread_s[]] | add) <= .home_node_cpu_s * 1.2 + 0.1'

"$BIN" bench flash-sale --endpoint sold-out --buyers 50 --rate 200 --duration-s 1 \
  --connections 4 --setup-connections 4 --json "$out/sold-out.json"
r=$out/sold-out.json
check "$r" '.requests == 200 and .outcomes.sold_out.count == 200 and .won == 0'
check "$r" '.oversold == 0 and .duplicates == 0 and .lost == 0 and .phantom_orders == 0'
check "$r" '.stats_after_restart.sold == 1'
echo "bench flash-sale: behaviour as reported"
