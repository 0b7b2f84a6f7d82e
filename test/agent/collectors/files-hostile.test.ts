import t from 'tap';
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync, appendFileSync, lstatSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createFilesCollector } from '../../../agent/collectors/files.js';
import { ByteBudget, HashError, REASONS, hashFileSync, readFileChecked } from '../../../agent/hash.js';
import { emptyRuleSet, type RuleSet, type WatchRule } from '../../../agent/protocol/rules.js';
import type { CollectContext } from '../../../agent/collectors/contract.js';
import type { FileEntry } from '../../../agent/protocol/manifest.js';

/**
 * The files collector reading a root where a user can write: every attack is made
 * on a real file system by the test, and the swaps happen at a fixed point (after
 * the walk's lstat, before the hash's open) through the collector's onWalk hook.
 */

const later = (): Date => new Date(Date.now() + 10_000);
const sha256sum = (path: string): string => execFileSync('sha256sum', [path], { encoding: 'utf8' }).split(' ')[0] as string;

function ruleSet(watch: WatchRule[]): RuleSet {
  const r = emptyRuleSet();
  r.watch = watch;
  return r;
}
function ctx(root: string, rules: RuleSet, budget?: ByteBudget): CollectContext {
  return { root, proc: null, rules, stateDir: null, forceRehash: false, ...(budget ? { budget } : {}) };
}
function tempRoot(t: { teardown: (fn: () => void) => void }): string {
  const root = mkdtempSync(join(tmpdir(), 'drift-hostile-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  return root;
}
type Collected = { entries: Record<string, FileEntry>; unread: { path: string; reason: string }[] };

/** A user's home with ~/.ssh/id, and a root-only folder holding a secret under the same name. */
function userAndSecret(root: string): { secret: string; ssh: string } {
  const ssh = join(root, 'home/u/.ssh');
  mkdirSync(ssh, { recursive: true });
  writeFileSync(join(ssh, 'id'), 'the user file\n');
  chownSync(join(root, 'home/u'), 1000, 1000);
  chownSync(ssh, 1000, 1000);
  const vault = join(root, 'root/.ssh');
  mkdirSync(vault, { recursive: true, mode: 0o700 });
  chmodSync(join(root, 'root'), 0o700);
  writeFileSync(join(vault, 'id'), 'root private key material\n', { mode: 0o600 });
  return { secret: join(vault, 'id'), ssh };
}

for (const workers of [1, 2]) {
  t.test(`a parent folder swapped for a symlink between lstat and open is never read through (${workers} hashing thread(s))`, async (t) => {
    const root = tempRoot(t);
    const { secret, ssh } = userAndSecret(root);
    const secretSha = sha256sum(secret);
    const collector = createFilesCollector({
      workers,
      inlineBelowBytes: 0,
      clock: later,
      onWalk: () => {
        // The user swaps their ~/.ssh for a link to root's, after the walk stat'ed ~/.ssh/id.
        renameSync(ssh, `${ssh}.old`);
        symlinkSync(join(root, 'root/.ssh'), ssh);
      },
    });
    const r = (await collector.collect(ctx(root, ruleSet([{ path: '/home/**' }])))) as Collected;
    const shas = Object.values(r.entries).map((e) => e.sha256);
    t.notOk(shas.includes(secretSha), "root's secret is not hashed into the manifest");
    t.same(r.unread.find((u) => u.path === '/home/u/.ssh/id'), { path: '/home/u/.ssh/id', reason: REASONS.swapped }, 'the path is unread, with why');
    t.notOk('/home/u/.ssh/id' in r.entries, 'no metadata of the other file is kept either');
  });
}

for (const workers of [1, 2]) {
  t.test(`a root-owned folder under one that others can write is still checked (${workers} hashing thread(s))`, async (t) => {
    // Only folders that root owns and no one else can write are trusted not to be swapped
    // (the files under them are opened without the descriptor's path check): here the
    // swapped folder is root's and 0755, but its parent is writable by everyone.
    const root = tempRoot(t);
    const { secret } = userAndSecret(root);
    const shared = join(root, 'srv/shared');
    mkdirSync(join(shared, 'sub'), { recursive: true });
    chmodSync(shared, 0o777);
    chmodSync(join(shared, 'sub'), 0o755);
    writeFileSync(join(shared, 'sub/id'), 'a shared file\n');
    const secretSha = sha256sum(secret);
    const collector = createFilesCollector({
      workers,
      inlineBelowBytes: 0,
      clock: later,
      // Swapped once listed, before the walk's lstat of sub/id: lstat and open both reach root's file.
      onListed: (key) => {
        if (key !== '/srv/shared/sub') return;
        renameSync(join(shared, 'sub'), join(shared, 'sub.old'));
        symlinkSync(join(root, 'root/.ssh'), join(shared, 'sub'));
      },
    });
    const r = (await collector.collect(ctx(root, ruleSet([{ path: '/srv/**' }])))) as Collected;
    t.notOk(Object.values(r.entries).some((e) => e.sha256 === secretSha), "root's secret is not hashed into the manifest");
    t.same(r.unread.find((u) => u.path === '/srv/shared/sub/id'), { path: '/srv/shared/sub/id', reason: REASONS.swapped }, 'the path is unread, with why');
  });
}

t.test('a parent folder swapped for a link to /dev does not read /dev/zero forever', async (t) => {
  const root = tempRoot(t);
  const dir = join(root, 'home/u/cfg');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'zero'), 'small\n');
  const collector = createFilesCollector({
    workers: 1,
    clock: later,
    onWalk: () => {
      rmSync(dir, { recursive: true });
      symlinkSync('/dev', dir);
    },
  });
  const r = (await collector.collect(ctx(root, ruleSet([{ path: '/home/**' }])))) as Collected;
  const u = r.unread.find((x) => x.path === '/home/u/cfg/zero');
  t.ok(u, '/dev/zero reached through the swapped folder is unread');
  t.notOk('/home/u/cfg/zero' in r.entries && r.entries['/home/u/cfg/zero']?.sha256 !== undefined, 'and not hashed');
});

t.test('a file replaced by a FIFO, a device or another file after its lstat is unread, never read', async (t) => {
  const root = tempRoot(t);
  const etc = join(root, 'etc');
  mkdirSync(etc);
  for (const n of ['fifo', 'dev', 'other', 'grown']) writeFileSync(join(etc, n), `${n}\n`);
  const collector = createFilesCollector({
    workers: 1,
    clock: later,
    onWalk: () => {
      rmSync(join(etc, 'fifo'));
      execFileSync('mkfifo', [join(etc, 'fifo')]);
      rmSync(join(etc, 'dev'));
      execFileSync('mknod', [join(etc, 'dev'), 'c', '1', '5']);
      writeFileSync(join(etc, 'other.new'), 'other\n');
      renameSync(join(etc, 'other.new'), join(etc, 'other'));
      appendFileSync(join(etc, 'grown'), 'more bytes\n');
    },
  });
  const r = (await collector.collect(ctx(root, ruleSet([{ path: '/etc/**' }])))) as Collected;
  // lsattr may also fail on what was swapped in (`flags: ...`); the read's own reason is the one checked.
  const reason = (p: string): string | undefined => r.unread.find((u) => u.path === p && !u.reason.startsWith('flags: '))?.reason;
  t.equal(reason('/etc/fifo'), REASONS.notRegular('a FIFO'), 'a FIFO in its place: not opened for reading, no hang');
  t.equal(reason('/etc/dev'), REASONS.notRegular('a character device'), '/dev/zero made in its place: never read');
  t.equal(reason('/etc/other'), REASONS.swapped, 'renamed over: another inode');
  t.equal(reason('/etc/grown'), REASONS.resized(6, 17), 'grown: the size it had is the size it must have');
});

t.test('hashFileSync refuses what is not a regular file, and a path through a symlinked folder', async (t) => {
  const root = tempRoot(t);
  execFileSync('mkfifo', [join(root, 'fifo')]);
  t.throws(() => hashFileSync(join(root, 'fifo')), new HashError(REASONS.notRegular('a FIFO')), 'a FIFO without a writer: no hang');
  t.throws(() => hashFileSync('/dev/zero'), new HashError(REASONS.notRegular('a character device')));
  t.throws(() => readFileChecked('/dev/zero', 1024), new HashError(REASONS.notRegular('a character device')));
  mkdirSync(join(root, 'real'));
  writeFileSync(join(root, 'real/f'), 'x\n');
  symlinkSync(join(root, 'real'), join(root, 'link'));
  symlinkSync(join(root, 'real/f'), join(root, 'flink'));
  // The swap came before the lstat too: lstat and open agree, only the path gives it away.
  const st = lstatSync(join(root, 'link/f'));
  t.throws(() => hashFileSync(join(root, 'link/f'), { expect: { dev: st.dev, ino: st.ino, size: st.size } }), new HashError(REASONS.swapped));
  t.throws(() => hashFileSync(join(root, 'flink')), new HashError('ELOOP'), 'a symlink itself is never followed');
  t.equal(hashFileSync(join(root, 'real/f')), sha256sum(join(root, 'real/f')));
});

t.test('a 15 TiB sparse file is listed unread with its allocated size, at once; a small sparse file is hashed right', async (t) => {
  const root = tempRoot(t);
  const etc = join(root, 'etc');
  mkdirSync(etc);
  execFileSync('truncate', ['-s', '15T', join(etc, 'huge')]);
  execFileSync('truncate', ['-s', '48M', join(etc, 'holes')]);
  appendFileSync(join(etc, 'holes'), 'tail\n');
  const collector = createFilesCollector({ workers: 1, clock: later });
  const r = (await collector.collect(ctx(root, ruleSet([{ path: '/etc/**' }])))) as Collected;
  t.same(r.unread, [{ path: '/etc/huge', reason: REASONS.overFile(16492674416640, 0, 2 * 1024 ** 3) }]);
  t.match(r.unread[0]?.reason, /16492674416640 bytes \(0 allocated, sparse\) > 2147483648; raise --max-file-bytes/);
  t.equal(r.entries['/etc/huge']?.size, 16492674416640, 'its metadata is still recorded');
  t.equal(r.entries['/etc/holes']?.sha256, sha256sum(join(etc, 'holes')));
});

t.test('the per-file and per-scan byte budgets', async (t) => {
  const root = tempRoot(t);
  const etc = join(root, 'etc');
  mkdirSync(etc);
  for (const n of ['a', 'b', 'c']) writeFileSync(join(etc, n), n.repeat(100));
  writeFileSync(join(etc, 'big'), 'x'.repeat(1000));
  const collector = createFilesCollector({ workers: 1, clock: later });
  const r = (await collector.collect(ctx(root, ruleSet([{ path: '/etc/**' }]), new ByteBudget(500, 250)))) as Collected;
  t.same(
    r.unread,
    [
      { path: '/etc/big', reason: REASONS.overFile(1000, lstatSync(join(etc, 'big')).blocks * 512, 500) },
      { path: '/etc/c', reason: REASONS.overScan(250) },
    ],
    'over the per-file budget: unread without spending the scan budget; after 250 bytes, the rest is unread',
  );
  t.equal(r.entries['/etc/a']?.sha256, sha256sum(join(etc, 'a')));
  t.equal(r.entries['/etc/b']?.sha256, sha256sum(join(etc, 'b')));
  const content = (await createFilesCollector({ workers: 1, clock: later }).collect(ctx(root, ruleSet([{ path: '/etc/**', content: true }]), new ByteBudget(500, 150)))) as Collected;
  t.equal(content.entries['/etc/a']?.content, 'a'.repeat(100), 'kept content counts too');
  t.same(content.unread.find((u) => u.path === '/etc/b'), { path: '/etc/b', reason: REASONS.overScan(150) });
});
