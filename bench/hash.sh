#!/usr/bin/env bash
# Files collector and hashing benchmark, side by side in one run over /etc and /usr,
# collecting the same attributes on both sides: sha256, type, mode, owner, size,
# mtime, link count, symlink target, ACLs, extended attributes, file capabilities
# and inode flags (AIDE: p+u+g+s+m+n+l+sha256+acl+xattrs+caps+e2fsattrs):
#   full scan, warm page cache, forced re-hash  vs  find | xargs -P2 sha256sum  and  aide --check --workers=2
#   incremental scan (warm stat cache)          vs  find -printf '%i %s %T@ %C@\n'
#   peak RSS of the full scan (GNU time -v)
# Usage: bench/hash.sh   (from anywhere; builds dist/ first; needs root for aide over /etc)
set -euo pipefail
cd "$(dirname "$0")/.."

command -v hyperfine >/dev/null || apt-get install -y hyperfine
command -v aide >/dev/null || apt-get install -y aide
command -v lsattr >/dev/null || apt-get install -y e2fsprogs
# Other unfinished files may not type-check; the bench entry only needs its own files compiled.
npx tsc -p . >/dev/null 2>&1 || true
test -f dist/bench/collect-files.js || { echo "dist/bench/collect-files.js missing: build failed" >&2; exit 2; }

work=$(mktemp -d /tmp/drift-bench-hash.XXXXXX)
trap 'rm -rf "$work"' EXIT
# node runs with the flags of the shipped launcher's shebang (bin/drift.js), so the
# figures are those of the collector as shipped; NODE_FLAGS overrides them.
node_flags=${NODE_FLAGS---max-semi-space-size=2}
drift="node $node_flags dist/bench/collect-files.js $work/state"

cat >"$work/aide.conf" <<CONF
database_in=file:$work/aide.db
database_out=file:$work/aide.db.new
gzip_dbout=no
report_url=file:/dev/null
H = p+u+g+s+m+n+l+sha256+acl+xattrs+caps+e2fsattrs
/etc H
/usr H
CONF
echo "== aide --init (once, to create its database)"
aide --config="$work/aide.conf" --init --workers=2 >/dev/null 2>&1 || true
mv "$work/aide.db.new" "$work/aide.db"

echo "== full scan, warm page cache, forced re-hash"
hyperfine --style basic --warmup 1 --runs 5 --export-json "$work/full.json" \
  -n sha256sum "find /etc /usr -type f -print0 | xargs -0 -P2 sha256sum >/dev/null" \
  -n drift-full "$drift --force-rehash"
# aide --check exits non-zero when it finds differences (other processes write under /etc and /usr).
hyperfine --style basic --runs 2 -i --export-json "$work/aide.json" \
  -n aide-check "aide --config=$work/aide.conf --check --workers=2"

echo "== incremental scan of the unchanged tree (warm stat cache)"
$drift >/dev/null
hyperfine --style basic --warmup 2 --runs 10 --export-json "$work/inc.json" \
  -n find-printf "find /etc /usr -printf '%i %s %T@ %C@\n' >/dev/null" \
  -n drift-incremental "$drift" \
  -n drift-incremental-1-thread "$drift --no-walk-thread"

echo "== peak RSS"
# Peak RSS of the whole process (node itself is ~40 MB of it), run as shipped; the last
# full-scan figure is with node's default flags, for comparison.
rss() { /usr/bin/time -v "$@" 2>&1 >/dev/null | awk -F': ' '/Maximum resident set size/ {print $2}'; }
rss_full=$(rss $drift --force-rehash)
rss_inc=$(rss $drift)
rss_flag=$(rss node dist/bench/collect-files.js "$work/state" --force-rehash)
rss_aide=$(rss aide --config="$work/aide.conf" --check --workers=2 || true)
echo "counts: $($drift)"
echo "node flags: $node_flags"

node --input-type=module - "$work" "$rss_full" "$rss_inc" "$rss_aide" "$rss_flag" <<'JS'
import { readFileSync } from 'node:fs';
const [dir, rssFull, rssInc, rssAide, rssFlag] = process.argv.slice(2);
const mean = (file, name) => JSON.parse(readFileSync(`${dir}/${file}`, 'utf8')).results.find((r) => r.command === name).mean;
const sha = mean('full.json', 'sha256sum'), full = mean('full.json', 'drift-full');
const aide = mean('aide.json', 'aide-check');
const find = mean('inc.json', 'find-printf'), inc = mean('inc.json', 'drift-incremental');
const inc1 = mean('inc.json', 'drift-incremental-1-thread');
const s = (x) => `${x.toFixed(3)} s`;
const mb = (kb) => `${(Number(kb) / 1024).toFixed(0)} MB`;
const check = (ok) => (ok ? 'met' : 'MISSED');
console.log(`
full scan (forced re-hash)     drift ${s(full)}   sha256sum ${s(sha)}   aide --check ${s(aide)}
  drift / sha256sum            ${(full / sha).toFixed(2)}x   (target <= 0.6x: ${check(full / sha <= 0.6)})
  aide / drift                 ${(aide / full).toFixed(1)}x faster   (target >= 10x: ${check(aide / full >= 10)})
incremental scan               drift ${s(inc)}   find -printf ${s(find)}
  drift / find                 ${(inc / find).toFixed(2)}x   (target <= 3x: ${check(inc / find <= 3)})
  without the walk's helper thread   ${s(inc1)} = ${(inc1 / find).toFixed(2)}x
peak RSS                       full ${mb(rssFull)} (target <= 150 MB: ${check(Number(rssFull) <= 150 * 1024)})   incremental ${mb(rssInc)}   aide --check ${mb(rssAide)}
  full, node default flags     ${mb(rssFlag)}`);
JS
