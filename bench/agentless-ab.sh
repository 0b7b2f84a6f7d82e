#!/usr/bin/env bash
# drift scan --ssh with drift on the target, this checkout's scanning side against another
# built checkout's (BASE), interleaved: each round runs a local cold scan of the root, then the
# two scanning sides in turn (their order swapped every round), against the same target (this
# checkout's drift: the single executable at /opt/drift/drift when `npm run package` built it,
# and node + the compiled tree on the PATH). Prints, per command, the median and range of the
# wall time and its ratio to the local cold scan's median of the same rounds; the CPU columns
# are the scanning process's alone (the target's drift runs under sshd).
# Usage: BASE=/path/to/built/checkout [ROUNDS=8] [RAW=file: keep each run's figures] bash bench/agentless-ab.sh   (as root, after npx tsc; needs sshd)
set -euo pipefail
cd "$(dirname "$0")/.."
: "${BASE:?set BASE to a built checkout (npx tsc done there) to compare with}"
eval "$(node dist/bench/agentless-setup.js up)"
trap 'node dist/bench/agentless-setup.js down "$WORK" "$SSHD_PID"' EXIT
common="--baseline $BASELINE --sections packages,files --format json --state-dir $WORK/scan-state"
ssh="--ssh root@127.0.0.1:$PORT --identity $KEY --known-hosts $KNOWN"
names=('local drift scan --root (cold)')
cmds=("node bin/drift.js scan --root $ROOT $common --force-rehash")
pairs=()
if [ -x "$ROOT/opt/drift/drift" ]; then
  names+=('ssh, single executable on the target: BASE' 'ssh, single executable on the target: this')
  cmds+=("node $BASE/bin/drift.js scan $ssh --remote-drift /opt/drift/drift $common" "node bin/drift.js scan $ssh --remote-drift /opt/drift/drift $common")
  pairs+=("1 2")
fi
names+=('ssh, node + compiled tree on the target: BASE' 'ssh, node + compiled tree on the target: this')
n=${#cmds[@]}
cmds+=("node $BASE/bin/drift.js scan $ssh $common" "node bin/drift.js scan $ssh $common")
pairs+=("$n $((n + 1))")
out=${RAW:-$(mktemp)}
: >"$out"
times=$(mktemp)
run() { # index: one line "index wall user system" to $out
  SSH_AUTH_SOCK='' /usr/bin/time -o "$times" -f '%e %U %S' ${cmds[$1]} >/dev/null 2>&1 || true
  echo "$1 $(tail -1 "$times")" >>"$out"
}
echo "== machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
for i in "${!cmds[@]}"; do SSH_AUTH_SOCK='' ${cmds[$i]} >/dev/null 2>&1 || true; done # warm-up
for ((r = 0; r < ${ROUNDS:-8}; r++)); do
  run 0
  for p in "${pairs[@]}"; do
    read -r a b <<<"$p"
    if ((r % 2 == 0)); then run "$a"; run "$b"; else run "$b"; run "$a"; fi
  done
done
echo "== load after: $(cut -d' ' -f1-3 /proc/loadavg)"
median() { sort -n | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }
base=$(awk '$1 == 0 {print $2}' "$out" | median)
printf '%-52s %8s %13s %7s %10s\n' command 'wall md' 'range' 'vs local' 'cpu u+s md'
for i in "${!cmds[@]}"; do
  md=$(awk -v i="$i" '$1 == i {print $2}' "$out" | median)
  range=$(awk -v i="$i" '$1 == i {print $2}' "$out" | sort -n | sed -n '1p;$p' | paste -sd-)
  cpu=$(awk -v i="$i" '$1 == i {print $3 + $4}' "$out" | median)
  printf '%-52s %8s %13s %7.2fx %10s\n' "${names[$i]}" "$md" "$range" "$(echo "$md / $base" | bc -l)" "$cpu"
done
rm -f "$times"
[ -n "${RAW:-}" ] || rm -f "$out"
