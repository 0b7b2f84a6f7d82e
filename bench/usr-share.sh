#!/usr/bin/env bash
# Cost of watching the code under /usr/share (rules/00-watch.yaml): `drift baseline
# --sections files` of this machine's root with the shipped rules, against the same
# with the /usr/share watch rule taken out (a copy of the package whose rules/ lacks
# that one line), both forced to re-hash, and then with a warm stat cache.
# Usage: bash bench/usr-share.sh   (from the repository root, after npx tsc; needs hyperfine)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v hyperfine >/dev/null || apt-get install -y hyperfine
work=$(mktemp -d /tmp/drift-bench-share.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/noshare"
cp -r bin dist package.json "$work/noshare/"
ln -s "$(readlink -f node_modules)" "$work/noshare/node_modules"
cp -r rules "$work/noshare/rules"
grep -v '^  - path: /usr/share/' rules/00-watch.yaml >"$work/noshare/rules/00-watch.yaml"
folders=$(grep -o '^  - path: /usr/share/{[^}]*}' rules/00-watch.yaml | sed 's/.*{\(.*\)}/\1/')
n=0; for d in ${folders//,/ }; do [ -d "/usr/share/$d" ] && n=$((n + $(find "/usr/share/$d" -type f | wc -l))); done
echo "files under the watched /usr/share folders: $n of $(find /usr/share -type f | wc -l) in /usr/share"
with="node bin/drift.js baseline --root / --image-id bench --sections files --out /dev/null --state-dir $work/with"
without="node $work/noshare/bin/drift.js baseline --root / --image-id bench --sections files --out /dev/null --state-dir $work/without"
for s in with without; do eval "\$$s" 2>&1 | sed "s/^/$s: /" | cut -c1-120; done
hyperfine --style basic --warmup 1 --runs 5 -n full-with-usr-share "$with --force-rehash" -n full-without "$without --force-rehash"
hyperfine --style basic --warmup 1 --runs 5 -n incremental-with-usr-share "$with" -n incremental-without "$without"
