import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createFilesCollector, filesCollector, namesOnly, secretKind } from '../../../agent/collectors/files.js';
import { escapeName } from '../../../agent/collectors/file-entry.js';
import { FileEntrySchema } from '../../../agent/protocol/manifest.js';
import { emptyRuleSet, type RuleSet, type WatchRule } from '../../../agent/protocol/rules.js';
import type { CollectContext } from '../../../agent/collectors/contract.js';
import { repoRoot } from '../../helpers/paths.js';

const SHADOW = 'root:$y$j9T$abc$def:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\nadmin:!:19000::::::\n';
// A scan "10 s from now", so that files this test just wrote are outside the stat cache's racy window.
const later = (): Date => new Date(Date.now() + 10_000);

function sha256sum(path: string): string {
  return execFileSync('sha256sum', [path], { encoding: 'utf8' }).split(' ')[0] as string;
}

function ruleSet(watch: WatchRule[], ignore: string[] = []): RuleSet {
  const r = emptyRuleSet();
  r.watch = watch;
  r.ignore = ignore.map((path) => ({ path, why: 'test' }));
  return r;
}

function ctx(root: string, rules: RuleSet, stateDir: string | null = null, forceRehash = false): CollectContext {
  return { root, proc: null, rules, stateDir, forceRehash };
}

/** A directory chain whose full path exceeds PATH_MAX, made with relative mkdirs. */
function deepTree(under: string): string {
  const name = 'd'.repeat(200);
  execFileSync('bash', ['-c', `cd "$1" && for i in $(seq 25); do mkdir ${name} && cd ${name}; done && touch leaf`, 'deep', under]);
  return name;
}

/** Build a small root: every file type, special modes, owners, secrets and content cases. */
function buildRoot(t: { teardown: (fn: () => void) => void }): string {
  const root = mkdtempSync(join(tmpdir(), 'drift-files-'));
  // rm(1), not rmSync: the deep test tree is beyond PATH_MAX for absolute paths.
  t.teardown(() => execFileSync('rm', ['-rf', root]));
  const p = (rel: string): string => join(root, rel);
  for (const d of ['etc/ssh', 'etc/ssl/private', 'etc/cache', 'etc/dir', 'usr/bin', 'usr/share', 'srv', 'tmp', 'var']) mkdirSync(p(d), { recursive: true });
  writeFileSync(p('etc/hosts'), '127.0.0.1 localhost\n');
  writeFileSync(p('etc/empty'), '');
  writeFileSync(p('etc/shadow'), SHADOW, { mode: 0o640 });
  chmodSync(p('etc/shadow'), 0o640);
  writeFileSync(p('etc/group'), 'root:x:0:\nadm:x:4:admin\n');
  writeFileSync(p('etc/private.conf'), 'password=hunter2\n');
  chmodSync(p('etc/private.conf'), 0o600);
  const { privateKey } = generateKeyPairSync('ed25519');
  writeFileSync(p('etc/ssh/ssh_host_ed25519_key'), privateKey.export({ type: 'pkcs8', format: 'pem' }));
  chmodSync(p('etc/ssh/ssh_host_ed25519_key'), 0o600);
  writeFileSync(p('etc/ssh/ssh_host_ed25519_key.pub'), 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI test\n');
  // World-readable by mistake: still a secret, by its header.
  writeFileSync(p('etc/ssl/private/site.pem'), privateKey.export({ type: 'pkcs8', format: 'pem' }));
  chmodSync(p('etc/ssl/private/site.pem'), 0o644);
  writeFileSync(p('etc/big.bin'), Buffer.alloc(3 * 1024 * 1024 + 17, 'ab'));
  writeFileSync(p('etc/medium.txt'), 'x'.repeat(70 * 1024));
  writeFileSync(p('etc/binary.dat'), Buffer.from([0x41, 0x00, 0x42, 0x0a]));
  writeFileSync(p('etc/latin1.txt'), Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x0a]));
  writeFileSync(p('etc/cache/junk'), 'ignored\n');
  deepTree(p('etc/cache'));
  symlinkSync('hosts', p('etc/link'));
  symlinkSync('/nonexistent/target', p('etc/dangling'));
  execFileSync('mkfifo', [p('etc/fifo')]);
  writeFileSync(p('usr/bin/suid'), '#!/bin/sh\n');
  chmodSync(p('usr/bin/suid'), 0o4755);
  chmodSync(p('usr/share'), 0o2755);
  chmodSync(p('tmp'), 0o1777);
  writeFileSync(p('usr/bin/owned'), 'x');
  chownSync(p('usr/bin/owned'), 1234, 5678);
  writeFileSync(p('srv/outside'), 'not watched\n');
  // The root itself linked away: a watch base reached through it is not walked.
  symlinkSync('/etc', p('var/etc-link'));
  return root;
}

const CONTENT_RULES = ruleSet(
  [
    { path: '/etc/**', content: true },
    { path: '/etc/{shadow,group}', content: 'names' },
    { path: '/usr/**' },
    { path: '/tmp' },
    { path: '/missing/**' },
    { path: '/var/etc-link/**' },
  ],
  ['/etc/cache'],
);

t.test('a built root is collected with correct types, modes, owners, hashes and targets', async (t) => {
  const root = buildRoot(t);
  const { entries, unread } = await filesCollector.collect(ctx(root, CONTENT_RULES));
  t.same(unread, [], 'nothing unread');
  for (const [key, entry] of Object.entries(entries)) t.ok(FileEntrySchema.safeParse(entry).success, `${key} fits FileEntrySchema`);
  t.notOk('/srv/outside' in entries, 'paths no watch glob matches are left out');
  t.notOk('/missing' in entries, 'a watch base that does not exist is nothing to report');
  t.match(entries['/var/etc-link'], { type: 'symlink', target: '/etc' }, 'a watch base that is a symlink is recorded as one');
  t.notOk(Object.keys(entries).some((k) => k.startsWith('/var/etc-link/')), 'a base reached through a symlink is not walked');
  t.notOk(Object.keys(entries).some((k) => k.startsWith('/etc/cache')), 'ignored folder and its contents are left out');
  t.ok(Object.keys(entries).every((k) => !k.startsWith(root)), 'keys are as seen from the root');

  for (const rel of ['etc/hosts', 'etc/big.bin', 'etc/empty', 'etc/shadow', 'etc/ssh/ssh_host_ed25519_key', 'usr/bin/suid']) {
    t.equal(entries[`/${rel}`]?.sha256, sha256sum(join(root, rel)), `sha256 of /${rel} matches sha256sum`);
  }
  t.match(entries['/etc/big.bin'], { type: 'file', mode: '0644', size: 3 * 1024 * 1024 + 17 });
  t.notOk('content' in (entries['/etc/big.bin'] ?? {}), 'no content above the size cap');
  t.match(entries['/etc/empty'], { type: 'file', size: 0, content: '' });
  t.match(entries['/etc/dir'], { type: 'dir', mode: '0755', uid: 0, gid: 0 });
  t.notOk('size' in (entries['/etc/dir'] ?? {}), 'no size for folders');
  const mtime = (rel: string): number => Math.trunc(lstatSync(join(root, rel)).mtimeMs / 1000);
  t.same(entries['/etc/link'], { type: 'symlink', mode: '0777', uid: 0, gid: 0, size: 5, target: 'hosts', mtime: mtime('etc/link') });
  t.match(entries['/etc/dangling'], { type: 'symlink', target: '/nonexistent/target', size: 19 });
  t.same(entries['/etc/fifo'], { type: 'other', mode: '0644', uid: 0, gid: 0, mtime: mtime('etc/fifo') });
  t.match(entries['/usr/bin/suid'], { type: 'file', mode: '4755' });
  t.match(entries['/usr/share'], { type: 'dir', mode: '2755' });
  t.match(entries['/tmp'], { type: 'dir', mode: '1777' });
  t.match(entries['/usr/bin/owned'], { uid: 1234, gid: 5678 });
});

t.test('content is kept for small text only, never for secrets, and names mode keeps names', async (t) => {
  const root = buildRoot(t);
  const { entries } = await filesCollector.collect(ctx(root, CONTENT_RULES));
  t.equal(entries['/etc/hosts']?.content, '127.0.0.1 localhost\n');
  t.equal(entries['/etc/shadow']?.content, 'root\ndaemon\nadmin\n', 'shadow: the last rule (names) wins, names only');
  t.equal(entries['/etc/group']?.content, 'root\nadm\n');
  for (const key of ['/etc/ssh/ssh_host_ed25519_key', '/etc/ssl/private/site.pem', '/etc/private.conf', '/etc/medium.txt', '/etc/binary.dat', '/etc/latin1.txt']) {
    t.equal(entries[key]?.content, undefined, `${key}: no content`);
    t.match(entries[key]?.sha256, /^[0-9a-f]{64}$/, `${key}: hashed all the same`);
  }
  t.equal(entries['/etc/ssh/ssh_host_ed25519_key.pub']?.content, 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI test\n');
  t.equal(entries['/usr/bin/suid']?.content, undefined, 'no content where the rule does not ask');

  // With content: true last, shadow is a secret again: hash only.
  const trueLast = ruleSet([{ path: '/etc/shadow', content: 'names' }, { path: '/etc/**', content: true }]);
  const again = await filesCollector.collect(ctx(root, trueLast));
  t.equal(again.entries['/etc/shadow']?.content, undefined);
  t.equal(again.entries['/etc/shadow']?.sha256, sha256sum(join(root, 'etc/shadow')));
});

t.test('secret and names helpers', async (t) => {
  const text = (s: string): Buffer => Buffer.from(s);
  t.equal(secretKind('/etc/gshadow-', 0o644, text('x')), 'shadow');
  t.equal(secretKind('/etc/ssh/ssh_host_rsa_key', 0o644, text('x')), 'key');
  t.equal(secretKind('/etc/x.pem', 0o644, text('-----BEGIN RSA PRIVATE KEY-----\n')), 'key');
  t.equal(secretKind('/etc/x.pem', 0o644, text('-----BEGIN OPENSSH PRIVATE KEY-----\n')), 'key');
  t.equal(secretKind('/etc/x.pem', 0o644, text('-----BEGIN CERTIFICATE-----\n')), null);
  t.equal(secretKind('/etc/x.conf', 0o640, text('a')), 'private');
  t.equal(secretKind('/etc/sudoers', 0o440, text('root ALL=(ALL:ALL) ALL\n')), null, 'sudoers holds rules, not credentials');
  t.equal(secretKind('/etc/sudoers.d/90-cloud-init-users', 0o440, text('admin ALL=(ALL) NOPASSWD:ALL\n')), null);
  t.equal(secretKind('/etc/sudoers.d/sub/x', 0o440, text('x')), 'private', 'only the files sudo reads');
  t.equal(namesOnly('a:1:2\nb\n\nc:3'), 'a\nb\n\nc');
});

t.test('a names rule on a private key keeps nothing', async (t) => {
  const root = buildRoot(t);
  const { entries } = await filesCollector.collect(ctx(root, ruleSet([{ path: '/etc/ssl/private/*', content: 'names' }])));
  t.equal(entries['/etc/ssl/private/site.pem']?.content, undefined);
  t.ok(entries['/etc/ssl/private/site.pem']?.sha256);
});

t.test('a path that cannot be stat-ed is reported unread with its errno, not skipped', async (t) => {
  const root = buildRoot(t);
  const name = deepTree(join(root, 'srv'));
  const { entries, unread } = await filesCollector.collect(ctx(root, ruleSet([{ path: '/srv/**' }])));
  t.ok('/srv/outside' in entries);
  t.equal(unread.length, 1, 'one unread entry for the path beyond PATH_MAX');
  t.equal(unread[0]?.reason, 'ENAMETOOLONG');
  t.ok(unread[0]?.path.startsWith(`/srv/${name}/`));
  t.ok(unread[0] && !unread[0].path.startsWith(root), 'unread paths are as seen from the root');
});

t.test('a name that is not valid UTF-8 is unread EILSEQ under an escaped key, never a vanished ENOENT', async (t) => {
  const root = buildRoot(t);
  const srv = Buffer.from(`${join(root, 'srv')}/`);
  const at = (...parts: (string | number[])[]): Buffer => Buffer.concat([srv, ...parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : Buffer.from(p)))]);
  writeFileSync(at('bad', [0xff]), 'planted\n');
  writeFileSync(at('bad', [0xfe]), 'planted too\n');
  mkdirSync(at('d', [0xff], 'ir'));
  writeFileSync(Buffer.concat([at('d', [0xff], 'ir'), Buffer.from('/inside')]), 'x');
  writeFileSync(at('back\\', [0xc3]), '');
  writeFileSync(at('ign', [0xff]), '');
  // U+FFFD written as valid UTF-8 is an ordinary name.
  writeFileSync(join(root, 'srv', 'bad\uFFFD'), 'fine\n');
  const { entries, unread } = await filesCollector.collect(ctx(root, ruleSet([{ path: '/srv/**' }], ['/srv/ign*'])));
  t.same(
    unread,
    [
      { path: '/srv/back\\\\\\xc3', reason: 'EILSEQ' },
      { path: '/srv/bad\\xfe', reason: 'EILSEQ' },
      { path: '/srv/bad\\xff', reason: 'EILSEQ' },
      { path: '/srv/d\\xffir', reason: 'EILSEQ' },
    ],
    'each bad name once, distinct, escaped; an ignored one left out; a folder so named not entered',
  );
  t.equal(entries['/srv/bad\uFFFD']?.sha256, sha256sum(join(root, 'srv', 'bad\uFFFD')), 'a valid name with U+FFFD is hashed as usual');
  t.notOk(Object.keys(entries).some((k) => k.includes('\\x')), 'no entry for a name that cannot be a key');
});

t.test('escapeName keeps valid UTF-8 and escapes every other byte and the backslash', async (t) => {
  t.equal(escapeName(Buffer.from([0x62, 0x61, 0x64, 0xff])), 'bad\\xff');
  t.equal(escapeName(Buffer.concat([Buffer.from('é\\'), Buffer.from([0xc3, 0x28, 0xed, 0xa0, 0x80, 0xf0, 0x9f, 0x98, 0x80])])), 'é\\\\\\xc3(\\xed\\xa0\\x80😀');
  t.equal(escapeName(Buffer.from([0xe2, 0x82])), '\\xe2\\x82', 'a truncated sequence is bytes');
});

t.test('the walk enters only folders where a watch glob can match (no walk of a whole home)', async (t) => {
  const root = buildRoot(t);
  mkdirSync(join(root, 'home/alice/.ssh'), { recursive: true });
  writeFileSync(join(root, 'home/alice/.ssh/authorized_keys'), 'ssh-ed25519 AAAA alice\n');
  mkdirSync(join(root, 'home/alice/Documents'), { recursive: true });
  deepTree(join(root, 'home/alice/Documents'));
  mkdirSync(join(root, 'root/.ssh'), { recursive: true });
  writeFileSync(join(root, 'root/.ssh/authorized_keys'), 'ssh-ed25519 AAAA root\n');
  const { entries, unread } = await filesCollector.collect(ctx(root, ruleSet([{ path: '/{root,home/*}/.ssh/**', content: true }])));
  t.same(Object.keys(entries).sort(), ['/home/alice/.ssh', '/home/alice/.ssh/authorized_keys', '/root/.ssh', '/root/.ssh/authorized_keys']);
  t.equal(entries['/root/.ssh/authorized_keys']?.content, 'ssh-ed25519 AAAA root\n');
  t.same(unread, [], 'the deep tree under Documents was never entered');
});

t.test('as a non-root user, an unreadable folder and file are unread EACCES (setpriv)', async (t) => {
  const root = buildRoot(t);
  chmodSync(root, 0o755);
  mkdirSync(join(root, 'srv/closed'), { mode: 0o700 });
  writeFileSync(join(root, 'srv/closed/inside'), 'x');
  writeFileSync(join(root, 'srv/secret'), 'x', { mode: 0o600 });
  chmodSync(join(root, 'srv/secret'), 0o600);
  const script = `
    import { filesCollector } from ${JSON.stringify(join(repoRoot, 'dist/agent/collectors/files.js'))};
    const rules = { vars: {}, watch: [{ path: '/srv/**' }], ignore: [], expect: [], policy: [] };
    const r = await filesCollector.collect({ root: process.argv[1], proc: null, rules, stateDir: null, forceRehash: false });
    process.stdout.write(JSON.stringify(r));`;
  const run = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '--input-type=module', '-e', script, root], { encoding: 'utf8' });
  t.equal(run.status, 0, run.stderr);
  const result = JSON.parse(run.stdout) as { entries: Record<string, { sha256?: string; mode: string }>; unread: { path: string; reason: string }[] };
  t.same(result.unread, [
    { path: '/srv/closed', reason: 'EACCES' },
    { path: '/srv/closed', reason: 'flags: EACCES' },
    { path: '/srv/secret', reason: 'EACCES' },
    { path: '/srv/secret', reason: 'flags: EACCES' },
  ], 'neither content nor inode flags could be read');
  t.match(result.entries['/srv/closed'], { mode: '0700' }, 'the folder itself is still recorded');
  t.match(result.entries['/srv/secret'], { mode: '0600' }, 'what lstat told is kept');
  t.equal(result.entries['/srv/secret']?.sha256, undefined, 'without a hash');
  t.notOk('/srv/closed/inside' in result.entries);
});

t.test('the stat cache: a second run hashes nothing, a touched file is re-hashed, forceRehash re-hashes all', async (t) => {
  const root = buildRoot(t);
  const state = join(root, '..', `${root.split('/').pop() ?? 'x'}-state`);
  t.teardown(() => rmSync(state, { recursive: true, force: true }));
  const rules = ruleSet([{ path: '/etc/**', content: true }, { path: '/usr/**' }], ['/etc/cache']);
  const hashed: string[] = [];
  // Two hashing threads and no inline threshold, so the worker pool is exercised too.
  const collector = createFilesCollector({ clock: later, workers: 2, inlineBelowBytes: 0, onHash: (p) => hashed.push(p) });

  const first = await collector.collect(ctx(root, rules, state));
  const regular = Object.entries(first.entries).filter(([, e]) => e.type === 'file').map(([k]) => k).sort();
  t.same([...hashed].sort(), regular, 'first run hashes every regular file once');

  hashed.length = 0;
  const second = await collector.collect(ctx(root, rules, state));
  t.same(hashed, [], 'second run hashes nothing');
  t.same(second, first, 'and gives the same result');

  const before = lstatSync(join(root, 'etc/big.bin'));
  writeFileSync(join(root, 'etc/big.bin'), Buffer.alloc(before.size, 'ba'));
  utimesSync(join(root, 'etc/big.bin'), before.atime, before.mtime);
  writeFileSync(join(root, 'usr/bin/owned'), 'y');
  hashed.length = 0;
  const third = await collector.collect(ctx(root, rules, state));
  t.same(hashed.sort(), ['/etc/big.bin', '/usr/bin/owned'], 'only the changed files (same size, mtime put back) are re-hashed');
  t.equal(third.entries['/etc/big.bin']?.sha256, sha256sum(join(root, 'etc/big.bin')));

  hashed.length = 0;
  await collector.collect(ctx(root, rules, state, true));
  t.same([...hashed].sort(), regular, 'forceRehash re-hashes every file');
});

t.test('the live /etc of this machine', async (t) => {
  const rules = ruleSet([
    { path: '/etc/debian_version', content: true },
    { path: '/etc/os-release' },
    { path: '/etc/passwd', content: true },
    { path: '/etc/shadow', content: 'names' },
    { path: '/etc/ssh/**' },
  ]);
  const { entries, unread } = await filesCollector.collect(ctx('/', rules));
  t.same(unread, []);
  t.equal(entries['/etc/debian_version']?.sha256, sha256sum('/etc/debian_version'));
  t.equal(entries['/etc/debian_version']?.content, readFileSync('/etc/debian_version', 'utf8'));
  t.equal(entries['/etc/passwd']?.sha256, sha256sum('/etc/passwd'));
  t.match(entries['/etc/os-release'], { type: 'symlink', target: execFileSync('readlink', ['/etc/os-release'], { encoding: 'utf8' }).trim() });
  const names = readFileSync('/etc/shadow', 'utf8').split('\n').map((l) => l.split(':')[0]).join('\n');
  t.equal(entries['/etc/shadow']?.content, names, 'shadow: user names only');
  t.notMatch(entries['/etc/shadow']?.content ?? '', /\$/, 'never a password hash');
  for (const [key, entry] of Object.entries(entries)) {
    if (/\/ssh_host_[^/]*_key$/.test(key)) t.equal(entry.content, undefined, `${key}: no content`);
  }
});

t.test('the walk with its lstat helper thread gives exactly the entries and unread list of the single-threaded walk', async (t) => {
  const root = buildRoot(t);
  // Unread paths too: one beyond PATH_MAX (lstat fails on the helper as it does here).
  deepTree(join(root, 'usr/share'));
  const rules = ruleSet([...CONTENT_RULES.watch, { path: '/srv/**' }], ['/etc/cache']);
  const counts: { local: number; helper: number }[] = [];
  const threaded = createFilesCollector({ walkThread: true, walkThreadAfter: 0, onWalk: (c) => counts.push(c) });
  const single = createFilesCollector({ walkThread: false, onWalk: (c) => counts.push(c) });
  const a = await threaded.collect(ctx(root, rules));
  const b = await single.collect(ctx(root, rules));
  t.ok((counts[0]?.helper ?? 0) > 0, 'the helper thread stat-ed paths');
  t.equal(counts[1]?.helper, 0, 'the single-threaded walk used no helper');
  t.same(Object.keys(a.entries), Object.keys(b.entries), 'same paths, in the same order');
  t.same(a.entries, b.entries);
  t.same(a.unread, b.unread);
  t.ok(b.unread.some((u) => u.reason === 'ENAMETOOLONG'), 'the unread list is exercised');

  // The live /etc, whole (content on): same result from both walks, with a stat cache for each.
  const etc = ruleSet([{ path: '/etc/**', content: true }]);
  const state = mkdtempSync(join(tmpdir(), 'drift-walk-state-'));
  t.teardown(() => rmSync(state, { recursive: true, force: true }));
  const liveA = await threaded.collect(ctx('/', etc, join(state, 'a')));
  const liveB = await single.collect(ctx('/', etc, join(state, 'b')));
  t.ok((counts[2]?.helper ?? 0) > 0, 'the helper thread stat-ed paths of /etc');
  t.ok(Object.keys(liveA.entries).length > 100);
  t.same(Object.keys(liveA.entries), Object.keys(liveB.entries));
  t.same(liveA.entries, liveB.entries);
  t.same(liveA.unread, liveB.unread);
  // Again from the stat caches: the cache check on the helper's stat bytes hits as on the single thread's.
  const againA = await threaded.collect(ctx('/', etc, join(state, 'a')));
  t.same(againA.entries, liveA.entries);
});
