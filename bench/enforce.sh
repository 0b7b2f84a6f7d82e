#!/usr/bin/env bash
# Enforcement figures: collector admission with 10,000 hosts in the fleet and 10,000
# actions in the ledger, and the time from a drifted report to the provider's call.
# Extra arguments go to the script: bench/enforce.sh --hosts 10000 --runs 15
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsc -p . >/dev/null || true   # unfinished files elsewhere must not stop the bench
test -f dist/bench/enforce.js || { echo "bench: dist/bench/enforce.js was not built" >&2; exit 2; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg), $(node --version), $(date -u +%FT%TZ)"
/usr/bin/time -f 'whole run: %e s wall, %M KB peak RSS' node dist/bench/enforce.js "$@"
