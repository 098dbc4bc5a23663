# Sourced by the shell tests that read a benchmark's JSON report.
# check FILE JQ-EXPRESSION: fails the test, printing the report, when the expression is not true.
check() {
  if ! jq -e "$2" "$1" >/dev/null; then
    echo "FAILED: $2" >&2
    cat "$1" >&2
    exit 1
  fi
}
