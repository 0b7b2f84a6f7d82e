import t from 'tap';
import { linkSync, mkdtempSync, statSync, readdirSync, rmSync, truncateSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { STAT_CACHE_FILE, StatCache } from '../../agent/statcache.js';
import { StatPool, type StatView } from '../../agent/walk.js';

/**
 * The cache is driven the way the files collector drives it: stat fields in the
 * record layout, as the walk's stat pool fills them (lookupStamp, stageStamp).
 */
function statOf(path: string): StatView {
  const pool = new StatPool({ thread: false });
  const ref = pool.statNow(path);
  return pool.read(ref, { mode: 0, uid: 0, gid: 0, nlink: 0, size: 0, mtime: 0, view: new DataView(new ArrayBuffer(0)), stampAt: 0 });
}
const lookup = (cache: StatCache, path: string): string | undefined => { const st = statOf(path); return cache.lookupStamp(st.view, st.stampAt); };
const stage = (cache: StatCache, path: string): number => { const st = statOf(path); return cache.stageStamp(st.view, st.stampAt, st.nlink); };

const later = (): Date => new Date(Date.now() + 10_000);
const SHA = 'ab'.repeat(32);

function setup(t: { teardown: (fn: () => void) => void }): { dir: string; state: string; file: string } {
  const dir = mkdtempSync(join(tmpdir(), 'drift-statcache-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'f');
  writeFileSync(file, 'hello\n');
  return { dir, state: join(dir, 'state'), file };
}

t.test('a saved record is a hit while the stat is unchanged, and a miss after a change', async (t) => {
  const { state, file } = setup(t);
  const first = StatCache.load(state, '/', later());
  t.equal(lookup(first, file), undefined, 'empty without a file');
  first.record(stage(first, file), SHA);
  first.save(state);
  t.same(readdirSync(state), [STAT_CACHE_FILE], 'written atomically: no temp file left');

  const second = StatCache.load(state, '/', later());
  t.equal(second.loadedCount, 1);
  t.equal(lookup(second, file), SHA);
  t.notOk(second.dirty, 'nothing to write when every record was hit');

  // Same size, mtime put back: ctime still moves, so the change is seen.
  const before = statSync(file);
  writeFileSync(file, 'HELLO\n');
  utimesSync(file, before.atime, before.mtime);
  t.equal(lookup(second, file), undefined);
});

t.test('files changed within the racy window before the scan are not cached', async (t) => {
  const { state, file } = setup(t);
  const cache = StatCache.load(state, '/', new Date());
  t.equal(stage(cache, file), -1);
  cache.record(-1, SHA);
  t.notOk(cache.dirty);
});

t.test('the racy window ends exactly where it starts, to the nanosecond, whatever the 32-bit halves of the times', async (t) => {
  const { state } = setup(t);
  // Scan start: the window is the second before it.
  const startedAt = new Date(1_764_000_000_123);
  const windowStart = BigInt(startedAt.getTime()) * 1_000_000n - 1_000_000_000n;
  const stampAt = (mtimeNs: bigint, ctimeNs: bigint): DataView => {
    const view = new DataView(new ArrayBuffer(40));
    view.setBigUint64(0, 1n, true);
    view.setBigUint64(8, 1000n + mtimeNs % 1000n, true);
    view.setBigUint64(24, mtimeNs, true);
    view.setBigUint64(32, ctimeNs, true);
    return view;
  };
  const cache = StatCache.load(state, '/', startedAt);
  const low32 = windowStart & 0xffff_ffffn;
  // A time with a larger low half than the window start but an earlier high half is before it.
  const earlierHighLargerLow = ((windowStart >> 32n) - 1n) * 0x1_0000_0000n + 0xffff_ffffn;
  t.ok(earlierHighLargerLow < windowStart && (earlierHighLargerLow & 0xffff_ffffn) > low32);
  t.not(cache.stageStamp(stampAt(earlierHighLargerLow, earlierHighLargerLow), 0, 1), -1, 'before the window: staged');
  t.not(cache.stageStamp(stampAt(windowStart - 1n, windowStart - 1n), 0, 1), -1, 'one ns before the window: staged');
  t.equal(cache.stageStamp(stampAt(windowStart, 0n), 0, 1), -1, 'mtime at the window start: not staged');
  t.equal(cache.stageStamp(stampAt(0n, windowStart), 0, 1), -1, 'ctime at the window start: not staged');
  t.equal(cache.stageStamp(stampAt(0n, 1n << 63n), 0, 1), -1, 'a time far ahead: not staged');
  // A clock before the epoch's first second: every time is in the window.
  const early = StatCache.load(state, '/', new Date(500));
  t.equal(early.stageStamp(stampAt(0n, 0n), 0, 1), -1);
});

t.test('records not seen again leave the cache', async (t) => {
  const { dir, state, file } = setup(t);
  const other = join(dir, 'g');
  writeFileSync(other, 'x');
  const a = StatCache.load(state, '/', later());
  a.record(stage(a, file), SHA);
  a.record(stage(a, other), SHA);
  a.save(state);
  const b = StatCache.load(state, '/', later());
  t.equal(b.loadedCount, 2);
  t.equal(lookup(b, file), SHA);
  t.ok(b.dirty, 'one record was not hit');
  b.save(state);
  t.equal(StatCache.load(state, '/', later()).loadedCount, 1);
});

t.test('a cache of another root, a truncated or foreign file reads as empty', async (t) => {
  const { state, file } = setup(t);
  const a = StatCache.load(state, '/', later());
  a.record(stage(a, file), SHA);
  a.save(state);
  t.equal(StatCache.load(state, '/mnt/image', later()).loadedCount, 0);
  truncateSync(join(state, STAT_CACHE_FILE), 30);
  t.equal(StatCache.load(state, '/', later()).loadedCount, 0);
  writeFileSync(join(state, STAT_CACHE_FILE), 'not a cache');
  t.equal(StatCache.load(state, '/', later()).loadedCount, 0);
});

t.test('hard links are one record, and each path hits it', async (t) => {
  const { dir, state, file } = setup(t);
  const link = join(dir, 'hard');
  linkSync(file, link);
  const a = StatCache.load(state, '/', later());
  const first = stage(a, file);
  t.not(first, -1);
  t.equal(stage(a, link), -1, 'the second path of the same inode is not staged again');
  a.record(first, SHA);
  a.save(state);
  const b = StatCache.load(state, '/', later());
  t.equal(b.loadedCount, 1);
  t.equal(lookup(b, link), SHA);
  t.equal(lookup(b, file), SHA);
  t.notOk(b.dirty);
});

t.test('records whose inodes share their low 32 bits, or devices and inodes that hash alike, are each found', async (t) => {
  const { state } = setup(t);
  // Stat fields in the record layout, made up: dev, ino, size, mtimeNs, ctimeNs.
  const stampOf = (dev: bigint, ino: bigint, ctime = 1_000_000_000n): DataView => {
    const v = new DataView(new ArrayBuffer(40));
    [dev, ino, 7n, 1_000_000_000n, ctime].forEach((n, i) => v.setBigUint64(i * 8, n, true));
    return v;
  };
  const stamps: DataView[] = [];
  // 3,000 inodes equal in their low 32 bits (one probe chain), and 3,000 ordinary ones on two devices.
  for (let k = 0n; k < 3000n; k++) stamps.push(stampOf(2049n, (k << 32n) | 12n));
  for (let k = 0n; k < 3000n; k++) stamps.push(stampOf(k % 2n === 0n ? 2049n : 66306n, 1000n + k));
  const sha = (i: number): string => i.toString(16).padStart(64, '0');
  const first = StatCache.empty('/', later());
  stamps.forEach((s, i) => first.record(first.stageStamp(s, 0, 1), sha(i)));
  first.save(state);
  const second = StatCache.load(state, '/', later());
  t.equal(second.loadedCount, stamps.length);
  const wrong = stamps.map((s, i) => (second.lookupStamp(s, 0) === sha(i) ? -1 : i)).filter((i) => i >= 0);
  t.same(wrong, [], 'every record found with its own sha256');
  t.equal(second.lookupStamp(stampOf(2049n, (3000n << 32n) | 12n), 0), undefined, 'an inode of the chain never stored misses');
  t.equal(second.lookupStamp(stampOf(2050n, 1000n), 0), undefined, 'the same inode on another device misses');
  t.equal(second.lookupStamp(stampOf(2049n, 12n, 2_000_000_000n), 0), undefined, 'a stored inode whose ctime moved misses');
});
