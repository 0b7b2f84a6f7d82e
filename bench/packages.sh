#!/usr/bin/env bash
# The packages collector and drift verify-packages against dpkg --verify, on this machine's /.
# Usage: bash bench/packages.sh   (from the repository root, after npx tsc; needs hyperfine)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v hyperfine >/dev/null || apt-get install -y hyperfine
echo "== packages collector (status + info/*.list ownership), in-process time of one run:"
node dist/bench/packages.js /
hyperfine --style basic --warmup 2 --runs 10 -n packages-collector 'node dist/bench/packages.js /'
echo "== drift verify-packages vs dpkg --verify (both exit non-zero or print differences on a changed system):"
hyperfine --style basic --runs 2 -i -n dpkg-verify 'dpkg --verify' -n drift-verify-packages 'node bin/drift.js verify-packages'
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
dpkg --verify | cut -c13- | sed 's/ ([^()]*)$//' | sort -u >"$work/dpkg"
node bin/drift.js verify-packages --format json | node -e '
  let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
    const j = JSON.parse(s); const list = Array.isArray(j) ? j : (j.problems ?? []);
    for (const p of [...new Set(list.map((x) => x.path))].sort()) console.log(p);
  });' | sort -u >"$work/drift" || true
echo "paths reported: dpkg $(wc -l <"$work/dpkg"), drift $(wc -l <"$work/drift")"
if diff -q "$work/dpkg" "$work/drift" >/dev/null; then echo "same set of paths: yes"; else echo "same set of paths: NO"; diff "$work/dpkg" "$work/drift" | head -20; fi
