#!/usr/bin/env bash
# Runs every Go fuzz target in the module for a while each (default 30s).
# Seed corpora run as ordinary tests in `make test`; this explores further.
set -euo pipefail
fuzztime=${1:-30s}
# New inputs are minimized for at most 5s: with seeds of a few KB (Mender
# artifacts) minimizing would otherwise take most of the run.
cd "$(dirname "$0")/.."
fail=0
for pkg in $(go list ./...); do
  targets=$(go test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz' || true)
  for target in $targets; do
    echo "== $pkg $target ($fuzztime)"
    if ! go test -run='^$' -fuzz="^${target}\$" -fuzztime="$fuzztime" -fuzzminimizetime=5s "$pkg"; then
      echo "FAIL: $pkg $target (the failing input is saved under testdata/fuzz/$target)"
      fail=1
    fi
  done
done
exit $fail
