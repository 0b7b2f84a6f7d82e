#!/usr/bin/env bash
# Cost of one `drift agent --once` cycle against a local collector (drift server), on the
# live root of this machine (/ with /proc, the shipped rules): the first run (enroll +
# full manifest) and the steady state (digests only, stat cache warm).
# Usage: bash bench/agent-once.sh   (needs hyperfine; run from the repository root after npx tsc)
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'kill $server_pid 2>/dev/null || true; wait $server_pid 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$tmp"' EXIT
printf 'bench-enroll-secret-0123456789\n' >"$tmp/enroll"; printf 'bench-admin-token-0123456789\n' >"$tmp/admin"; chmod 600 "$tmp/enroll" "$tmp/admin"
node bin/drift.js server --listen 127.0.0.1:0 --db "$tmp/drift.db" --state-dir "$tmp/srv" \
  --enroll-secret-file "$tmp/enroll" --admin-token-file "$tmp/admin" --max-body 256MiB >"$tmp/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do grep -q '"msg":"listening"' "$tmp/server.log" 2>/dev/null && break; sleep 0.1; done
url=$(grep -o '"address":"[^"]*"' "$tmp/server.log" | head -1 | cut -d'"' -f4)
agent=(node --max-semi-space-size=2 bin/drift.js agent --once --collector "$url" --enroll-secret-file "$tmp/enroll" --state-dir "$tmp/agent")
/usr/bin/time -v "${agent[@]}" 2>"$tmp/first.txt" || true
echo "first run (enroll + full manifest):"; grep -E 'Elapsed|Maximum resident' "$tmp/first.txt"
grep -o '"msg":"report accepted"[^}]*' "$tmp/first.txt" || true
hyperfine --warmup 1 --runs 5 "${agent[*]}"
"${agent[@]}" 2>&1 | grep -o '"msg":"report accepted"[^}]*'
