#!/usr/bin/env bash
# A sweep of N ssm:// targets (default 20) with --concurrency C (default 8): drift scan
# --targets against the tests' local SSM server, which runs each received command (the
# baked drift, scanning the instance's root) on this machine. So the figure is the whole
# sweep: SendCommand, the instances' own scans (all on this machine's cores), polling,
# decoding. ROOT=DIR uses that baked root for every instance (default: the debootstrap
# root of the tests, copied and baked once); STATE=warm sweeps once before the measured
# sweeps. The instances' scans are read-only (drift scan --read-only: no stat cache), so
# every sweep hashes every watched file again; only the page cache is warm.
# Usage: bash bench/sweep.sh [N] [C]   (needs hyperfine; run from the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-20}; c=${2:-8}
npx tsc -p . >/dev/null || true   # unfinished files elsewhere must not stop the bench
test -f dist/bench/sweep-server.js || { echo "bench: dist/bench/sweep-server.js was not built" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'exec 3>&- 2>/dev/null || true; wait 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$tmp"' EXIT
root=${ROOT:-}
if [ -z "$root" ]; then
  src=/var/cache/drift-tests/debian-minbase
  test -d "$src" || { echo "bench: no $src; run test/setup.sh first, or pass ROOT=DIR" >&2; exit 2; }
  root="$tmp/root"; cp -a "$src" "$root"
  node bin/drift.js baseline --root "$root" --image-id bench-sweep --out "$root/etc/drift/baseline.json" --stamp --state-dir "$tmp/bake" >/dev/null
fi
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg), $(node --version), $(date -u +%FT%TZ)"
mkfifo "$tmp/in"
node dist/bench/sweep-server.js "$root" "$tmp/instances" "$n" <"$tmp/in" >"$tmp/endpoint" 2>"$tmp/targets" &
exec 3>"$tmp/in"
for _ in $(seq 300); do [ -s "$tmp/endpoint" ] && break; sleep 0.1; done
endpoint=$(head -1 "$tmp/endpoint")
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
sweep=(node bin/drift.js scan --targets "$tmp/targets" --concurrency "$c" --endpoint "$endpoint" --timeout 10m)
echo "one local scan of the same root, for scale:"
/usr/bin/time -f '  %e s wall, %M KB peak RSS' node bin/drift.js scan --root "$root" --baseline "$root/etc/drift/baseline.json" --state-dir "$tmp/local" >/dev/null || true
if [ "${STATE:-cold}" = warm ]; then "${sweep[@]}" >/dev/null || true; fi
echo "sweep of $n ssm targets, --concurrency $c (${STATE:-cold}: $([ "${STATE:-cold}" = warm ] && echo 'after one sweep' || echo 'the first sweep')):"
/usr/bin/time -f '  %e s wall, %M KB peak RSS of the sweeping drift' "${sweep[@]}" >"$tmp/out.txt" || true
grep -m1 '^drift sweep:' "$tmp/out.txt"
hyperfine --runs "${RUNS:-3}" --export-markdown "$tmp/hf.md" "${sweep[*]} >/dev/null || true" | tail -n +1
