#!/usr/bin/env bash
# The whole suite (after scripts/setup.sh): every package's `test` target, one at a time. A red run
# ends with a digest of what failed (jest failures from scripts/jest-failure-digest.js, TypeScript
# errors from the log), because CI shows only the tail of the output.
set -uo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d /tmp/shunt-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
export SHUNT_TEST_DIGEST="$work/digest"
: >"$SHUNT_TEST_DIGEST"

npx nx run-many -t test --parallel=1 --outputStyle=static "$@" 2>&1 | tee "$work/log"
rc=${PIPESTATUS[0]}
if [ "$rc" -ne 0 ]; then
  printf '\n==================== what failed (digest) ====================\n'
  grep -E '^\s*-\s+@shunt/[a-z-]+:[a-z]+' "$work/log" | sed 's/\x1b\[[0-9;]*m//g' || true
  grep -E 'error TS[0-9]+' "$work/log" | sed 's/\x1b\[[0-9;]*m//g' | head -40 || true
  cat "$SHUNT_TEST_DIGEST"
  printf '==================== exit code %s ====================\n' "$rc"
fi
exit "$rc"
