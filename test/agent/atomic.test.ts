import t from 'tap';
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AtomicFile, privateDirProblem, writeFileAtomicSync } from '../../agent/atomic.js';
import { ATTR_FLAGS_READ, STAT_CACHE_FILE, StatCache, attrType } from '../../agent/statcache.js';
import { StateDir } from '../../agent/state.js';
import { createFilesCollector } from '../../agent/collectors/files.js';
import { emptyRuleSet } from '../../agent/protocol/rules.js';

const later = (): Date => new Date(Date.now() + 10_000);
const sha256sum = (path: string): string => execFileSync('sha256sum', [path], { encoding: 'utf8' }).split(' ')[0] as string;

function tempDir(t: { teardown: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'drift-atomic-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('planted symlinks at the temp names of earlier releases never redirect a write', async (t) => {
  const dir = tempDir(t);
  const victim = join(dir, 'victim');
  writeFileSync(victim, 'not yours\n');
  const state = join(dir, 'state');
  mkdirSync(state, { mode: 0o700 });
  // The names the stat cache and the state files used: `<file>.tmp-<pid>`.
  for (const name of [STAT_CACHE_FILE, 'state.json', 'node-key.json']) symlinkSync(victim, join(state, `${name}.tmp-${process.pid}`));
  const cache = StatCache.load(state, '/', later());
  cache.record(cache.stage(lstatSync(victim, { bigint: true })), 'ab'.repeat(32));
  cache.save(state);
  const s = await StateDir.open(state);
  await s.nextSeq();
  await s.writeNodeKey({ hostId: 'h', collector: 'c', nodeKey: 'k', enrolledAt: 'now' });
  t.equal(readFileSync(victim, 'utf8'), 'not yours\n', 'the file the links point at is untouched');
  t.ok(readFileSync(join(state, 'state.json'), 'utf8').includes('"seq"'), 'the state was written where it belongs');
  t.equal(lstatSync(join(state, STAT_CACHE_FILE)).isFile(), true);
});

t.test('writeFileAtomicSync: exact mode despite the umask, no temp left, a symlink at the target is replaced, not written through', async (t) => {
  const dir = tempDir(t);
  const victim = join(dir, 'victim');
  writeFileSync(victim, 'keep\n');
  const target = join(dir, 'out');
  symlinkSync(victim, target);
  const umask = process.umask(0o077);
  try {
    writeFileAtomicSync(target, 'new\n', 0o644);
  } finally {
    process.umask(umask);
  }
  t.equal(readFileSync(victim, 'utf8'), 'keep\n');
  t.equal(lstatSync(target).isFile(), true, 'the link itself was replaced');
  t.equal(lstatSync(target).mode & 0o777, 0o644);
  t.same(readdirSync(dir).sort(), ['out', 'victim'], 'no temp file left');
  const a = AtomicFile.create(join(dir, 'x'));
  const b = AtomicFile.create(join(dir, 'x'));
  t.not(a.temp, b.temp, 'temp names are unpredictable, two writers never share one');
  t.match(a.temp, /\/\.x\.tmp-[0-9a-f]{24}$/);
  a.abort();
  b.abort();
  t.throws(() => writeFileAtomicSync(join(dir, 'missing/out'), 'x'), { code: 'DRIFT_ERR_IO', message: /missing\/out: ENOENT/ });
});

t.test('the state folder must be private to the agent: others-writable, foreign-owned or a symlink is refused', async (t) => {
  const dir = tempDir(t);
  const open = join(dir, 'open');
  mkdirSync(open);
  chmodSync(open, 0o777);
  await t.rejects(StateDir.open(open), { code: 'DRIFT_ERR_IO', message: `refusing state folder ${open}: it is writable by everyone (mode 0777); run chmod go-w on it` });
  const group = join(dir, 'group');
  mkdirSync(group);
  chmodSync(group, 0o770);
  await t.rejects(StateDir.open(group), { message: /writable by its group \(mode 0770\)/ });
  const foreign = join(dir, 'foreign');
  mkdirSync(foreign, { mode: 0o700 });
  chownSync(foreign, 1000, 1000);
  await t.rejects(StateDir.open(foreign), { message: /owned by uid 1000, not by uid 0/ });
  const link = join(dir, 'link');
  mkdirSync(join(dir, 'real'), { mode: 0o700 });
  symlinkSync(join(dir, 'real'), link);
  await t.rejects(StateDir.open(link), { message: /is a symlink/ });
  t.equal(privateDirProblem(join(dir, 'real')), null);
  t.ok(await StateDir.open(join(dir, 'fresh/state')), 'a folder it creates itself is private');
  t.equal(lstatSync(join(dir, 'fresh/state')).mode & 0o777, 0o700);
});

t.test('a stat cache planted in a folder others can write is not believed', async (t) => {
  const dir = tempDir(t);
  const root = join(dir, 'root');
  mkdirSync(join(root, 'etc'), { recursive: true });
  const file = join(root, 'etc/sshd_config');
  writeFileSync(file, 'PermitRootLogin yes\n');
  const state = join(dir, 'state');
  mkdirSync(state);
  chmodSync(state, 0o777);
  // Another user writes a cache that says the edited file still has its old hash.
  const st = lstatSync(file, { bigint: true });
  const rootText = Buffer.from(root);
  const rec = Buffer.alloc(80);
  [st.dev, st.ino, st.size, st.mtimeNs, st.ctimeNs].forEach((v, i) => rec.writeBigUInt64LE(v, i * 8));
  Buffer.from('cd'.repeat(32), 'hex').copy(rec, 40);
  rec.writeUInt32LE(attrType(Number(st.mode)) | ATTR_FLAGS_READ, 76);
  const head = Buffer.alloc(8);
  head.writeUInt32LE(rootText.length, 0);
  const count = Buffer.alloc(4);
  count.writeUInt32LE(1, 0);
  writeFileSync(join(state, STAT_CACHE_FILE), Buffer.concat([Buffer.from('DRIFTSC2'), head.subarray(0, 4), rootText, count, rec]));
  const rules = emptyRuleSet();
  rules.watch = [{ path: '/etc/**' }];
  const warnings: string[] = [];
  const onWarning = (w: Error): void => void warnings.push(w.message);
  process.on('warning', onWarning);
  t.teardown(() => void process.off('warning', onWarning));
  const r = await createFilesCollector({ workers: 1, clock: later }).collect({ root, proc: null, rules, stateDir: state, forceRehash: false });
  t.equal(r.entries['/etc/sshd_config']?.sha256, sha256sum(file), 'the file is hashed, the planted record ignored');
  await new Promise((resolve) => setImmediate(resolve));
  t.match(warnings.join('\n'), /not using the cache in state folder .*writable by everyone/);
});

t.test('AtomicFile.commit(to): a content-named file is put in place under its name; another folder is refused', async (t) => {
  const { AtomicFile } = await import('../../agent/atomic.js');
  const { mkdtempSync, readdirSync, readFileSync, rmSync, mkdirSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = mkdtempSync(join(tmpdir(), 'drift-atomic-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const f = AtomicFile.create(join(dir, 'pending'), 0o600);
  f.write('hello');
  f.commit(join(dir, 'm-abc'));
  t.same(readdirSync(dir), ['m-abc'], 'only the named file, no temp left');
  t.equal(readFileSync(join(dir, 'm-abc'), 'utf8'), 'hello');
  mkdirSync(join(dir, 'sub'));
  const g = AtomicFile.create(join(dir, 'pending'), 0o600);
  g.write('x');
  t.throws(() => g.commit(join(dir, 'sub', 'm-def')), /another folder/);
  t.same(readdirSync(dir).sort(), ['m-abc', 'sub'], 'the refused write left no temp file');
});
