#!/usr/bin/env bash
# Compare-engine benchmark: builds, then times compare() in-process (median of N runs
# after warm-up; the process start and manifest building are not part of the figure).
# Exits 1 when the median exceeds the 200 ms budget. Extra arguments go to the script:
#   bench/compare.sh --files 100000 --runs 15 --warmup 5
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsc -p . >/dev/null || true   # other engineers' unfinished files must not stop the bench
test -f dist/bench/compare.js || { echo "bench: dist/bench/compare.js was not built" >&2; exit 2; }
node dist/bench/compare.js "$@"
