import t from 'tap';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { copyFileSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createProcessesCollector } from '../../../agent/collectors/processes.js';
import { ByteBudget, REASONS } from '../../../agent/hash.js';
import { PROC_TEXT_CAP_BYTES } from '../../../agent/collectors/proc-source.js';
import { buildProcTree, procContext } from '../../helpers/proc-tree.js';

const later = (): Date => new Date(Date.now() + 10_000);
const sha256sum = (path: string): string => execFileSync('sha256sum', [path], { encoding: 'utf8' }).split(' ')[0] as string;

t.test('a running 15 TiB sparse executable is unread over the per-file budget, not hashed for hours', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'drift-sparse-exe-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const exe = join(dir, 'huge-sleep');
  copyFileSync('/usr/bin/sleep', exe);
  execFileSync('chmod', ['0755', exe]);
  execFileSync('truncate', ['-s', '15T', exe]);
  const child = spawn(exe, ['30'], { stdio: 'ignore' });
  await once(child, 'spawn');
  t.teardown(() => {
    child.kill();
  });
  const { entries, unread } = await createProcessesCollector().collect(procContext('/', '/proc'));
  const key = Object.keys(entries).find((k) => k.startsWith(`${exe}|`)) as string;
  t.ok(key, 'the process is listed');
  t.equal(entries[key]?.exeSha256, undefined, 'its image is not hashed');
  const mine = unread.find((u) => u.path === `/proc/${child.pid}/exe`);
  t.ok(mine, 'its image is unread');
  t.match(mine?.reason, /^over the per-file byte budget: 16492674416640 bytes \(\d+ allocated, sparse\) > 2147483648; raise --max-file-bytes/);
});

t.test('process images: cached by their stat across scans, and within the scan byte budget', async (t) => {
  const tree = await buildProcTree();
  t.teardown(tree.cleanup);
  const state = mkdtempSync(join(tmpdir(), 'drift-exe-cache-'));
  t.teardown(() => rmSync(state, { recursive: true, force: true }));
  const ctx = { ...procContext(tree.root, tree.proc), stateDir: state };
  const read: string[] = [];
  const collector = createProcessesCollector({ clock: later, onHash: (p) => read.push(p) });
  const first = await collector.collect(ctx);
  t.ok(read.length >= 5, 'a cold scan reads every image');
  t.equal(first.entries['/usr/sbin/sshd|root']?.exeSha256, sha256sum(join(tree.root, 'usr/sbin/sshd')));
  read.length = 0;
  const second = await collector.collect(ctx);
  t.same(read, [], 'an unchanged image is not read again');
  t.same(second.entries, first.entries, 'and gives the same entries');
  writeFileSync(join(tree.root, 'usr/sbin/sshd'), 'sshd image, patched in place\n');
  read.length = 0;
  const third = await collector.collect(ctx);
  t.equal(read.filter((p) => /^\/proc\/10[01]\/exe$/.test(p)).length, 1, 'an image changed in place is read again, once');
  t.equal(third.entries['/usr/sbin/sshd|root']?.exeSha256, sha256sum(join(tree.root, 'usr/sbin/sshd')));

  const tight = await createProcessesCollector({ clock: later }).collect({ ...procContext(tree.root, tree.proc), budget: new ByteBudget(1024, 20) });
  const over = tight.unread.filter((u) => u.reason === REASONS.overScan(20));
  t.ok(over.length > 0, 'images past the scan budget are unread');
  t.equal(Object.values(tight.entries).filter((e) => e.exeSha256 !== undefined).length > 0, true, 'those within it are hashed');
});

t.test("the root's etc/passwd as a FIFO or a symlink: unread, no hang, users by number", async (t) => {
  const tree = await buildProcTree();
  t.teardown(tree.cleanup);
  const passwd = join(tree.root, 'etc/passwd');
  rmSync(passwd);
  execFileSync('mkfifo', [passwd]);
  const fifo = await createProcessesCollector().collect(procContext(tree.root, tree.proc));
  t.same(fifo.unread.find((u) => u.path === '/etc/passwd'), { path: '/etc/passwd', reason: REASONS.notRegular('a FIFO') });
  t.ok('/usr/sbin/sshd|0' in fifo.entries, 'users shown by number');
  rmSync(passwd);
  symlinkSync('/etc/shadow', passwd);
  const link = await createProcessesCollector().collect(procContext(tree.root, tree.proc));
  t.same(link.unread.find((u) => u.path === '/etc/passwd'), { path: '/etc/passwd', reason: 'ELOOP' });
});

t.test('a /proc text past its bound is unread, not read whole; the other processes are still read', async (t) => {
  const tree = await buildProcTree();
  t.teardown(tree.cleanup);
  const whole = await createProcessesCollector().collect(procContext(tree.root, tree.proc));
  writeFileSync(join(tree.proc, '100', 'status'), `Uid:\t0\t0\t0\t0\n${'x'.repeat(PROC_TEXT_CAP_BYTES)}`);
  const { entries, unread } = await createProcessesCollector().collect(procContext(tree.root, tree.proc));
  t.same(unread.find((u) => u.path === '/proc/100/status'), { path: '/proc/100/status', reason: `over ${PROC_TEXT_CAP_BYTES} bytes; not read` });
  t.equal(entries['/usr/sbin/sshd|root']?.count, (whole.entries['/usr/sbin/sshd|root']?.count ?? 0) - 1, 'the other sshd processes are counted, not the unread one');
  t.ok(entries['/usr/sbin/sshd|root']?.exeSha256, 'and their image hashed');
});
