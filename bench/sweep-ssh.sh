#!/usr/bin/env bash
# A sweep of N ssh:// targets (default 20) with --concurrency C (default 8): drift scan
# --targets against real sshds on loopback whose "/" is a copy of the tests' debootstrap root
# (bench/agentless-setup.ts, the harness of the SSH tests): one sshd with drift installed in its
# root, one without (so each of its targets is read agentless), each listening on 127.0.0.1 …
# 127.0.0.N, so every target is its own address with its own known_hosts line. Compared with
# one local drift scan --root of the same root. The sweep logs in with an ssh-agent holding
# the client keys and checks host keys against $HOME/.ssh/known_hosts (HOME is a folder of
# this run), as a sweep does. Every scanned side runs on this machine's cores.
# Usage: bash bench/sweep-ssh.sh [N] [C]   (as root, from the repository root; needs sshd, ssh-agent)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-20}; c=${2:-8}
npx tsc -p . >/dev/null || true   # unfinished files elsewhere must not stop the bench
tmp=$(mktemp -d)
agent_pid=''
down() {
  [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null || true
  [ -n "${D_WORK:-}" ] && node dist/bench/agentless-setup.js down "$D_WORK" "$D_PID" || true
  [ -n "${A_WORK:-}" ] && node dist/bench/agentless-setup.js down "$A_WORK" "$A_PID" || true
  rm -rf "$tmp"
}
trap down EXIT
# Drift on the target (D_*), and none (A_*: agentless).
eval "$(node dist/bench/agentless-setup.js up --addresses "$n" | sed 's/^/D_/')"
D_PID=$D_SSHD_PID
eval "$(node dist/bench/agentless-setup.js up --addresses "$n" --no-drift | sed 's/^/A_/')"
A_PID=$A_SSHD_PID
mkdir -p "$tmp/home/.ssh"
cat "$D_KNOWN" "$A_KNOWN" >"$tmp/home/.ssh/known_hosts"
eval "$(ssh-agent -s -a "$tmp/agent.sock")" >/dev/null
agent_pid=$SSH_AGENT_PID
ssh-add -q "$D_KEY" "$A_KEY"
for i in $(seq "$n"); do echo "ssh://root@127.0.0.$i:$D_PORT"; done >"$tmp/with-drift.txt"
for i in $(seq "$n"); do echo "ssh://root@127.0.0.$i:$A_PORT"; done >"$tmp/agentless.txt"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(node --version), $(date -u +%FT%TZ)"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
local_scan() {
  echo "one local drift scan --root of the same root (cold: --force-rehash, as every remote collection is):"
  /usr/bin/time -o "$tmp/time.txt" -f '  %e s wall, %U s user + %S s sys CPU, %M KB peak RSS' \
    node bin/drift.js scan --root "$D_ROOT" --baseline "$D_BASELINE" --state-dir "$tmp/local" --force-rehash --format json >/dev/null 2>&1 || true
  cat "$tmp/time.txt"
}
local_scan
# CPU seconds the targets' side spent: every session's sshd, and what it ran (drift, find,
# sha256sum…), is reaped by the listening sshd, so its cutime + cstime count them all.
target_cpu() {
  local ticks=0 pid
  for pid in ${1//,/ }; do ticks=$((ticks + $(awk '{print $16 + $17}' "/proc/$pid/stat"))); done
  echo "$ticks"
}
hz=$(getconf CLK_TCK)
# Runs alternate between the modes, so the machine's load swings hit both alike.
for run in $(seq "${RUNS:-2}"); do
  for mode in with-drift agentless; do
    base=$D_BASELINE; pids=$D_PID; [ "$mode" = agentless ] && base=$A_BASELINE && pids=$A_PID
    cpu0=$(target_cpu "$pids")
    echo "sweep of $n ssh targets ($mode), --concurrency $c, run $run:"
    HOME="$tmp/home" /usr/bin/time -o "$tmp/time.txt" -f '  %e s wall, %U s user + %S s sys CPU, %M KB peak RSS of the sweeping drift' \
      node bin/drift.js scan --targets "$tmp/$mode.txt" --concurrency "$c" --baseline "$base" --timeout 10m \
      >"$tmp/out.txt" 2>"$tmp/err.txt" || true
    grep -m1 '^drift sweep:' "$tmp/out.txt" || { echo "  no summary; stderr:"; tail -5 "$tmp/err.txt"; }
    cat "$tmp/time.txt"
    echo "  targets' side (sshd and what it ran): $(awk -v t="$(( $(target_cpu "$pids") - cpu0 ))" -v hz="$hz" 'BEGIN { printf "%.2f", t / hz }') s CPU"
    grep -m3 ': ' <(sed -n '/^$/,$p' "$tmp/out.txt" | grep '^ssh://') || true
  done
done
local_scan
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
