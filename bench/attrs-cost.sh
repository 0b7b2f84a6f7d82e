#!/usr/bin/env bash
# What recording file attributes (capabilities, ACLs, xattrs, inode flags, link
# count, device numbers, mtime) costs the files collector: this checkout against
# another build of drift (BEFORE, a checkout at an earlier commit, built), side by
# side in one hyperfine run over /etc and /usr, full scan (forced re-hash) and
# incremental scan (warm stat cache). Wall time and CPU time (user + system) per
# run; on a machine shared with other work the CPU time is the steadier figure.
# Usage: bench/attrs-cost.sh BEFORE_DIR [RUNS]   e.g.
#   git worktree add --detach /tmp/drift-before <commit> && ln -s "$PWD/node_modules" /tmp/drift-before/ \
#     && (cd /tmp/drift-before && npx tsc -p .) && bench/attrs-cost.sh /tmp/drift-before 3
set -euo pipefail
cd "$(dirname "$0")/.."
before=$(cd "${1:?usage: bench/attrs-cost.sh BEFORE_DIR [RUNS]}" && pwd)
runs=${2:-3}
command -v hyperfine >/dev/null || apt-get install -y hyperfine
npx tsc -p . >/dev/null 2>&1 || true
for d in . "$before"; do
  test -f "$d/dist/bench/collect-files.js" || { echo "$d/dist/bench/collect-files.js missing: build it first" >&2; exit 2; }
done
work=$(mktemp -d /tmp/drift-bench-attrs.XXXXXX)
trap 'rm -rf "$work"' EXIT
flags=${NODE_FLAGS---max-semi-space-size=2}
after_cmd="node $flags dist/bench/collect-files.js $work/after"
before_cmd="node $flags $before/dist/bench/collect-files.js $work/before"

echo "== full scan, forced re-hash"
hyperfine --style basic --warmup 1 --runs "$runs" --export-json "$work/full.json" \
  -n before-full "$before_cmd --force-rehash" -n after-full "$after_cmd --force-rehash"
echo "== incremental scan, warm stat cache"
$after_cmd >/dev/null
$before_cmd >/dev/null
hyperfine --style basic --warmup 1 --runs "$runs" --export-json "$work/inc.json" \
  -n before-incremental "$before_cmd" -n after-incremental "$after_cmd"
echo "counts after: $($after_cmd)"
echo "counts before: $($before_cmd)"

node --input-type=module - "$work" <<'JS'
import { readFileSync } from 'node:fs';
const dir = process.argv[2];
const get = (file, name) => JSON.parse(readFileSync(`${dir}/${file}`, 'utf8')).results.find((r) => r.command === name);
for (const [file, what] of [['full.json', 'full'], ['inc.json', 'incremental']]) {
  const b = get(file, `before-${what}`), a = get(file, `after-${what}`);
  const cpu = (r) => r.user + r.system;
  console.log(`${what.padEnd(12)} wall before ${b.mean.toFixed(3)} s  after ${a.mean.toFixed(3)} s  (${(a.mean / b.mean).toFixed(2)}x)   ` +
    `cpu before ${cpu(b).toFixed(3)} s  after ${cpu(a).toFixed(3)} s  (${(cpu(a) / cpu(b)).toFixed(2)}x)`);
}
JS
