import t from 'tap';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { copyFile, mkdir, mkdtemp, realpath, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { processesCollector, systemSliceOf } from '../../../agent/collectors/processes.js';
import { ProcessEntrySchema } from '../../../agent/protocol/manifest.js';
import { buildProcTree, procContext } from '../../helpers/proc-tree.js';

const sha = (text: string): string => createHash('sha256').update(text).digest('hex');

t.test('fixture /proc: grouped by executable and user, kernel threads and zombies left out', async (t) => {
  const tree = await buildProcTree();
  t.teardown(tree.cleanup);
  const { entries, unread } = await processesCollector.collect(procContext(tree.root, tree.proc));
  t.same(entries, {
    '/usr/lib/systemd/systemd|root': { count: 1, deleted: false, exeSha256: sha('systemd image\n') },
    '/usr/sbin/sshd|root': { count: 2, deleted: false, exeSha256: sha('sshd image\n') },
    '/usr/sbin/sshd|alice': { count: 1, deleted: false, exeSha256: sha('sshd image\n') },
    '/usr/bin/app|4242': { count: 1, deleted: false, exeSha256: sha('app image\n') },
    '/usr/bin/gone|root': { count: 1, deleted: true, exeSha256: sha('gone image\n') },
    '/usr/bin/tool|root': { count: 1, deleted: true, replaced: true, exeSha256: sha('tool v1\n') },
  });
  t.same(unread, [{ path: '/proc/107/exe', reason: 'ELOOP' }], 'an unreadable exe is reported; the exited PID 108 is not');
  for (const e of Object.values(entries)) ProcessEntrySchema.parse(e);
});

t.test('systemSliceOf: the system slice and init are services, user and machine slices are not, anything else is undecided', async (t) => {
  // Recorded from a Debian 12 host (cgroup v2) and a CentOS 7 host (v1, name=systemd).
  t.equal(systemSliceOf('0::/system.slice/ssh.service\n'), true);
  t.equal(systemSliceOf('0::/init.scope\n'), true);
  t.equal(systemSliceOf('0::/user.slice/user-1000.slice/session-3.scope\n'), false);
  t.equal(systemSliceOf('0::/user.slice/user-1000.slice/user@1000.service/app.slice/dbus.service\n'), false);
  t.equal(systemSliceOf('0::/machine.slice/libpod-1234.scope\n'), false);
  t.equal(systemSliceOf('11:memory:/system.slice/sshd.service\n1:name=systemd:/user.slice/user-0.slice/session-1.scope\n'), false, 'v1: the name=systemd line decides');
  t.equal(systemSliceOf('1:name=systemd:/system.slice/crond.service\n0::/\n'), true, 'hybrid: the name=systemd line wins over a unified "/"');
  t.equal(systemSliceOf('0::/\n'), null, 'no systemd (a container, or init without units): the parent decides');
  t.equal(systemSliceOf('0::/system.slicex/evil\n'), null, 'a look-alike name is not the system slice');
  t.equal(systemSliceOf(''), null);
});

t.test('fixture /proc: by default only services: the system slice and children of PID 1, not a login session', async (t) => {
  const tree = await buildProcTree();
  t.teardown(tree.cleanup);
  // sshd 101 is a child of 100 in ssh.service; 102 is alice's session, moved by pam_systemd.
  await writeFile(join(tree.proc, '101', 'cgroup'), '0::/system.slice/ssh.service\n');
  await writeFile(join(tree.proc, '102', 'cgroup'), '0::/user.slice/user-1000.slice/session-3.scope\n');
  const { entries } = await processesCollector.collect(procContext(tree.root, tree.proc, 'services'));
  t.same(Object.keys(entries).sort(), ['/usr/bin/app|4242', '/usr/bin/gone|root', '/usr/bin/tool|root', '/usr/lib/systemd/systemd|root', '/usr/sbin/sshd|root']);
  t.equal(entries['/usr/sbin/sshd|root']?.count, 2, 'the child in the service\'s cgroup counts');
  // Without cgroup information, a child whose parent is not PID 1 is not a service.
  await rm(join(tree.proc, '101', 'cgroup'));
  const bare = await processesCollector.collect(procContext(tree.root, tree.proc, 'services'));
  t.equal(bare.entries['/usr/sbin/sshd|root']?.count, 1);
});

t.test('fixture /proc: no passwd in the root names users by number', async (t) => {
  const tree = await buildProcTree();
  t.teardown(tree.cleanup);
  await unlink(join(tree.root, 'etc', 'passwd'));
  const { entries, unread } = await processesCollector.collect(procContext(tree.root, tree.proc));
  t.same(Object.keys(entries).filter((k) => k.startsWith('/usr/sbin/sshd|')).sort(), ['/usr/sbin/sshd|0', '/usr/sbin/sshd|1000']);
  t.same(unread, [{ path: '/proc/107/exe', reason: 'ELOOP' }], 'a missing passwd is not unread');
});

t.test('fixture /proc: one identity running two images (an upgrade with the old process still up)', async (t) => {
  const tree = await buildProcTree();
  t.teardown(tree.cleanup);
  const old = join(tree.proc, '109');
  await mkdir(old);
  await writeFile(join(old, 'stat'), '109 (sshd) S 1 109 109 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 400 2990080 414 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n');
  await writeFile(join(old, 'status'), 'Name:\tsshd\nPid:\t109\nPPid:\t1\nUid:\t0\t0\t0\t0\n');
  await writeFile(join(tree.root, 'usr/sbin/sshd (deleted)'), 'old sshd image\n');
  await symlink(join(tree.root, 'usr/sbin/sshd (deleted)'), join(old, 'exe'));
  const { entries } = await processesCollector.collect(procContext(tree.root, tree.proc));
  t.same(entries['/usr/sbin/sshd|root'], {
    count: 3,
    deleted: true,
    replaced: true,
    exeSha256: [sha('sshd image\n'), sha('old sshd image\n')].sort()[0],
  }, 'deleted and replaced if any process is; the smallest hash, so the entry is stable');
});

t.test('no /proc: the collector refuses to run, a missing one is an I/O error', async (t) => {
  await t.rejects(processesCollector.collect(procContext('/', null)), { name: 'DriftError', code: 'DRIFT_ERR_USAGE', message: /--proc/ });
  await t.rejects(processesCollector.collect(procContext('/', '/nonexistent/proc')), { code: 'DRIFT_ERR_IO', message: /\/nonexistent\/proc: ENOENT/ });
});

/** Starts `exe 30` and resolves once the exec has happened (the 'spawn' event). */
async function start(exe: string): Promise<ChildProcess> {
  const child = spawn(exe, ['30'], { stdio: 'ignore' });
  await once(child, 'spawn');
  return child;
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill();
  await exited;
}

const live = procContext('/', '/proc');
const me = userInfo().username;
const sleepSha = execFileSync('sha256sum', ['/usr/bin/sleep'], { encoding: 'utf8' }).split(' ')[0];

t.test('live /proc: a running sleep is listed with the hash sha256sum gives', async (t) => {
  const child = await start('/usr/bin/sleep');
  t.teardown(() => stop(child));
  const { entries } = await processesCollector.collect(live);
  const entry = entries[`/usr/bin/sleep|${me}`];
  t.ok(entry && entry.count >= 1, 'the sleep is counted');
  t.equal(entry?.exeSha256, sleepSha);
  t.equal(entry?.deleted, false);
  t.equal(entry?.replaced, undefined, 'replaced is set only when true');
  const node = entries[`${await realpath(process.execPath)}|${me}`];
  t.ok(node && node.count >= 1, 'this test process is listed too');
  t.same(Object.keys(entries).filter((k) => !k.startsWith('/')), [], 'every key starts with an executable path');
  for (const e of Object.values(entries)) ProcessEntrySchema.parse(e);
});

t.test('live /proc: deleted and replaced executables', async (t) => {
  const dir = await realpath(await mkdtemp(join(tmpdir(), 'drift-exe-')));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const deletedExe = join(dir, 'sleep-deleted');
  const replacedExe = join(dir, 'sleep-replaced');
  await copyFile('/usr/bin/sleep', deletedExe);
  await copyFile('/usr/bin/sleep', replacedExe);
  const a = await start(deletedExe);
  t.teardown(() => stop(a));
  const b = await start(replacedExe);
  t.teardown(() => stop(b));

  await unlink(deletedExe);
  // An upgrade puts the new file in place with rename(2), as dpkg does.
  await writeFile(join(dir, 'new'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
  await rename(join(dir, 'new'), replacedExe);

  const { entries } = await processesCollector.collect(live);
  t.same(entries[`${deletedExe}|${me}`], { count: 1, deleted: true, exeSha256: sleepSha }, 'deleted, nothing in its place');
  t.same(entries[`${replacedExe}|${me}`], { count: 1, deleted: true, replaced: true, exeSha256: sleepSha }, 'the path holds another file');
  t.not(sha(readFileSync(replacedExe, 'utf8')), sleepSha, 'the hash is of the running image, not of the file now at the path');
});
