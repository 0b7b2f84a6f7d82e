#!/usr/bin/env bash
# The agent artefact's figures on this machine's live root (/ with /proc, shipped rules):
# peak RSS of the first `drift agent --once` (enroll + full manifest) and of the steady
# state (digests only, warm stat cache), its wall time, peak RSS of `drift scan` against a
# baseline of this host, the artefact's size on disk and the executable's cold start.
# Usage: npm run package && bash bench/artefact.sh [DRIFT]
#   DRIFT: the command to measure (default out/drift; e.g. bin/drift.js for the npm launcher)
# Needs hyperfine and GNU time (/usr/bin/time). Runs as root to read every file.
set -euo pipefail
cd "$(dirname "$0")/.."
drift=${1:-out/drift}
tmp=$(mktemp -d)
trap 'kill $server_pid 2>/dev/null || true; wait $server_pid 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$tmp"' EXIT
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB; load: $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%FT%TZ)"
echo "measuring: $drift"
printf 'bench-enroll-secret-0123456789\n' >"$tmp/enroll"; printf 'bench-admin-token-0123456789\n' >"$tmp/admin"; chmod 600 "$tmp/enroll" "$tmp/admin"
node bin/drift.js server --listen 127.0.0.1:0 --db "$tmp/drift.db" --state-dir "$tmp/srv" \
  --enroll-secret-file "$tmp/enroll" --admin-token-file "$tmp/admin" --max-body 256MiB >"$tmp/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 300); do grep -q '"msg":"listening"' "$tmp/server.log" 2>/dev/null && break; sleep 0.1; done
url=$(grep -o '"address":"[^"]*"' "$tmp/server.log" | head -1 | cut -d'"' -f4)
agent=("$drift" agent --once --collector "$url" --enroll-secret-file "$tmp/enroll" --state-dir "$tmp/agent")
rss() { grep -E 'Elapsed|Maximum resident' "$1" | sed 's/^\s*/  /'; }

/usr/bin/time -v "${agent[@]}" 2>"$tmp/first.txt" || true
echo "1. agent --once, first full report:"; rss "$tmp/first.txt"
grep -o '"msg":"report accepted"[^}]*' "$tmp/first.txt" | sed 's/^/  /' || true
/usr/bin/time -v "${agent[@]}" 2>"$tmp/steady.txt" || true
echo "2. agent --once, steady state:"; rss "$tmp/steady.txt"
grep -o '"msg":"report accepted"[^}]*' "$tmp/steady.txt" | sed 's/^/  /' || true

"$drift" baseline --image-id bench --out "$tmp/baseline.json" --state-dir "$tmp/agent" 2>"$tmp/baseline.txt"
/usr/bin/time -v "$drift" scan --baseline "$tmp/baseline.json" --state-dir "$tmp/agent" >"$tmp/scan.out" 2>"$tmp/scan.txt" || true
echo "3. scan of this host against its baseline ($(tail -1 "$tmp/scan.out" | cut -c1-100)):"; rss "$tmp/scan.txt"

echo "4. on disk:"
if [ -f "$drift" ] && [ ! -L "$drift" ] && [ "${drift%.js}" = "$drift" ]; then
  echo "  executable $(stat -c %s "$drift") B, rules $(du -sb "$(dirname "$drift")/rules" | cut -f1) B"
  deb=$(ls "$(dirname "$drift")"/drift-agent_*_amd64.deb 2>/dev/null | head -1 || true)
  [ -n "$deb" ] && echo "  $(basename "$deb"): $(stat -c %s "$deb") B, Installed-Size $(dpkg-deb -f "$deb" Installed-Size) KiB"
fi

echo "5. --version cold start, and a bare node start measured right after it (a shared machine: compare the two; CPU in brackets):"
hyperfine --warmup 3 --runs 20 -N "$drift --version" 'node -e 0' 2>/dev/null | grep -E 'Benchmark|Time|Range' | sed 's/^\s*/  /'
echo "6. steady-state agent --once wall time:"
hyperfine --warmup 1 --runs 5 -N "${agent[*]}" 2>/dev/null | grep -E 'Time|Range' | sed 's/^\s*/  /'
