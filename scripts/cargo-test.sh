#!/usr/bin/env bash
# Runs `cargo test` with the given arguments, then prints one closing line with the totals of
# every test binary and doc-test run: `tests: N passed, N failed, N skipped` (skipped = ignored).
set -uo pipefail
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
read -r passed failed ignored < <(awk '/^test result:/ {
    for (i = 1; i <= NF; i++) {
      if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) g += $i
    } } END { print p + 0, f + 0, g + 0 }' "$log")
echo
echo "tests: $passed passed, $failed failed, $ignored skipped"
if ((status == 0 && passed == 0)); then
  echo "error: cargo test ran no test" >&2
  exit 1
fi
exit "$status"
