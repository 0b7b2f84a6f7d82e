#!/usr/bin/env bash
# drift scan --ssh against a local drift scan --root of the same debootstrap root, over
# loopback SSH (a real sshd whose "/" is the root, drift installed in it), with that drift
# and agentless (--agentless: the fixed find/sha256sum/lsattr commands and SFTP reads, as on a
# host without drift).
# Usage: bash bench/agentless.sh   (as root, from the repository root, after npx tsc; needs hyperfine, sshd)
# hyperfine runs each command's runs in one block: on a shared machine, compare two builds with
# bench/agentless-ab.sh instead (rounds that interleave them, each with its own local cold scan).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v hyperfine >/dev/null || apt-get install -y hyperfine
eval "$(node dist/bench/agentless-setup.js up)"
trap 'node dist/bench/agentless-setup.js down "$WORK" "$SSHD_PID"' EXIT
echo "== machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
# The single executable (npm run package) as the target's drift, when it was built: what a baked image runs
# (agentless-setup.js put it in the root before the bake).
sea=()
if [ -x "$ROOT/opt/drift/drift" ]; then
  sea=(-n 'drift scan --ssh, the single executable on the target' "SSH_AUTH_SOCK= node bin/drift.js scan --ssh root@127.0.0.1:$PORT --identity $KEY --known-hosts $KNOWN --remote-drift /opt/drift/drift --baseline $BASELINE --sections packages,files --format json --state-dir $WORK/scan-state")
fi
common="--baseline $BASELINE --sections packages,files --format json --state-dir $WORK/scan-state"
# --force-rehash: the remote collection keeps no stat cache, so the local one is measured cold too.
for cmd in "node bin/drift.js scan --root $ROOT $common" ; do $cmd >/dev/null || echo "note: $cmd exits $?"; done
hyperfine --style basic --warmup 1 --runs "${RUNS:-5}" -i \
  -n 'local drift scan --root (cold)' "node bin/drift.js scan --root $ROOT $common --force-rehash" \
  -n 'local drift scan --root (warm stat cache)' "node bin/drift.js scan --root $ROOT $common" \
  -n 'drift scan --ssh, drift on the target' "SSH_AUTH_SOCK= node bin/drift.js scan --ssh root@127.0.0.1:$PORT --identity $KEY --known-hosts $KNOWN $common" \
  -n 'drift scan --ssh --agentless (no drift used on the target; cold: nothing is cached anywhere)' "SSH_AUTH_SOCK= node bin/drift.js scan --ssh root@127.0.0.1:$PORT --identity $KEY --known-hosts $KNOWN --agentless $common" \
  "${sea[@]}"
echo "== load after: $(cut -d' ' -f1-3 /proc/loadavg)"
