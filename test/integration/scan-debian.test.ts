import t from 'tap';
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildDeb, copyRoot, debianMinbase } from '../helpers/debian.js';
import { drift, must } from '../helpers/run.js';

/**
 * The issue's acceptance scenario on a real Debian root (debootstrap minbase,
 * cached by test/setup.sh): bake an image, then change copies of it with real
 * tools (dpkg, useradd, chmod, sed, ln) and check each change is reported.
 */

interface JsonFinding { kind: string; key: string; change: string; changed: string[]; explanation: string; diff?: string; severity: string }
interface JsonReport { schema: string; summary: { findings: number }; findings: JsonFinding[] }

const work = await mkdtemp(join(tmpdir(), 'drift-debian-'));
t.teardown(() => rm(work, { recursive: true, force: true }));
const image = await copyRoot(debianMinbase, join(work, 'image'));
const debs = join(work, 'debs');
await mkdir(debs);
const debA = buildDeb(debs, { name: 'drift-test-a', version: '1.0-1', files: { '/usr/bin/drift-test-a': '#!/bin/sh\necho a\n', '/etc/drift-test-a.conf': 'a=1\n' }, conffiles: ['/etc/drift-test-a.conf'] });
const debB = buildDeb(debs, { name: 'drift-test-b', version: '2.0-1', files: { '/usr/bin/drift-test-b': '#!/bin/sh\necho b\n' } });
// The image carries package a; hosts later remove it.
await copyFile(debA, join(image, 'tmp', 'a.deb'));
await must('chroot', [image, 'dpkg', '-i', '/tmp/a.deb']);
await unlink(join(image, 'tmp', 'a.deb'));
await writeFile(join(image, 'etc', 'machine-id'), '0123456789abcdef0123456789abcdef\n');
// What a cloud image has that minbase lacks: sshd's and sudo's configuration folders.
await mkdir(join(image, 'etc', 'ssh', 'sshd_config.d'), { recursive: true });
await writeFile(join(image, 'etc', 'ssh', 'sshd_config'), 'Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin prohibit-password\n');
await mkdir(join(image, 'etc', 'sudoers.d'), { mode: 0o750 });
const state = join(work, 'state');
const baseline = join(work, 'baseline.json');
const bake = await drift(['baseline', '--root', image, '--image-id', 'debian-12-minbase', '--out', baseline, '--state-dir', state, '--stamp']);
t.equal(bake.code, 0, `baseline exits 0: ${bake.stderr}`);

async function scanJson(root: string, extra: string[] = []): Promise<{ code: number; report: JsonReport; stderr: string }> {
  const r = await drift(['scan', '--root', root, '--baseline', baseline, '--format', 'json', '--state-dir', state, ...extra]);
  return { code: r.code, report: JSON.parse(r.stdout || '{}') as JsonReport, stderr: r.stderr };
}

t.test('an unchanged image scans clean against its own baseline', async (t) => {
  const text = await drift(['scan', '--root', image, '--baseline', baseline, '--state-dir', state]);
  t.equal(text.code, 0, text.stdout + text.stderr);
  const { code, report } = await scanJson(image);
  t.equal(code, 0);
  t.equal(report.schema, 'drift.report/v1');
  t.same(report.findings, []);
});

t.test('first-boot changes of a cloud instance scan clean; one more user is drift', async (t) => {
  const host = await copyRoot(image, join(work, 'first-boot'));
  await writeFile(join(host, 'etc', 'machine-id'), 'fedcba9876543210fedcba9876543210\n');
  await writeFile(join(host, 'etc', 'hostname'), 'ip-10-0-1-23\n');
  await writeFile(join(host, 'etc', 'hosts'), '# Your system has configured \'manage_etc_hosts\' as True.\n127.0.1.1 ip-10-0-1-23.ec2.internal ip-10-0-1-23\n127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n');
  await rm(join(host, 'etc', 'resolv.conf'));
  await writeFile(join(host, 'etc', 'resolv.conf'), 'nameserver 10.0.0.2\nsearch ec2.internal\n');
  for (const type of ['ed25519', 'ecdsa']) {
    await must('ssh-keygen', ['-q', '-t', type, '-N', '', '-C', 'root@ip-10-0-1-23', '-f', join(host, 'etc', 'ssh', `ssh_host_${type}_key`)]);
  }
  // What cloud-init does for its default user, with the same tools.
  await must('chroot', [host, 'useradd', '-m', '-s', '/bin/bash', '-G', 'adm,sudo', 'admin']);
  await writeFile(join(host, 'etc', 'sudoers.d', '90-cloud-init-users'), '# Created by cloud-init v. 22.4.2 on Tue, 24 Nov 2026 10:00:00 +0000\n\n# User rules for admin\nadmin ALL=(ALL) NOPASSWD:ALL\n', { mode: 0o440 });
  await mkdir(join(host, 'home', 'admin', '.ssh'), { recursive: true, mode: 0o700 });
  await writeFile(join(host, 'home', 'admin', '.ssh', 'authorized_keys'), 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAbc admin@laptop\n', { mode: 0o600 });

  const clean = await scanJson(host);
  t.equal(clean.code, 0, `first boot scans clean; findings: ${JSON.stringify(clean.report.findings.map((f) => `${f.kind} ${f.key} ${f.change}`))}`);

  await must('chroot', [host, 'useradd', '-m', 'eve']);
  const drifted = await scanJson(host);
  t.equal(drifted.code, 1, 'a second user is drift');
  const passwd = drifted.report.findings.find((f) => f.key === '/etc/passwd');
  t.ok(passwd, '/etc/passwd is reported');
  t.match(passwd?.explanation ?? '', /eve/, 'the explanation names the unexpected user');
  t.match(passwd?.diff ?? '', /^\+eve:/m, 'the diff shows the added line');
});

t.test('real changes made with real tools are each reported', async (t) => {
  const host = await copyRoot(image, join(work, 'changed'));
  await copyFile(debB, join(host, 'tmp', 'b.deb'));
  await must('chroot', [host, 'dpkg', '-i', '/tmp/b.deb']);
  await unlink(join(host, 'tmp', 'b.deb'));
  await must('chroot', [host, 'dpkg', '--remove', 'drift-test-a']);
  await must('sed', ['-i', 's/^UMASK.*/UMASK\t\t000/', join(host, 'etc', 'login.defs')]);
  await copyFile(join(host, 'usr', 'bin', 'true'), join(host, 'usr', 'bin', 'false'));
  await chmod(join(host, 'usr', 'bin', 'env'), 0o4755);
  await must('chroot', [host, 'useradd', 'mallory']);
  await writeFile(join(host, 'usr', 'local', 'bin', 'backdoor'), '#!/bin/sh\nexec /bin/sh\n', { mode: 0o755 });
  await unlink(join(host, 'etc', 'alternatives', 'pager'));
  await symlink('/usr/bin/bash', join(host, 'etc', 'alternatives', 'pager'));

  const { code, report } = await scanJson(host);
  t.equal(code, 1, 'drift found');
  const find = (kind: string, key: string): JsonFinding | undefined => report.findings.find((f) => f.kind === kind && f.key === key);

  const added = find('package', 'dpkg:drift-test-b:all');
  t.equal(added?.change, 'added', 'package installed with dpkg');
  t.match(added?.explanation ?? '', /drift-test-b.*2\.0-1/);
  const removed = find('package', 'dpkg:drift-test-a:all');
  t.equal(removed?.change, 'removed', 'package removed with dpkg');
  t.match(removed?.explanation ?? '', /drift-test-a/);

  const conffile = find('file', '/etc/login.defs');
  t.equal(conffile?.change, 'modified', 'conffile edited');
  t.match(conffile?.explanation ?? '', /outside the package manager.*conffile of login/);
  t.match(conffile?.diff ?? '', /^\+UMASK\t\t000/m, 'with a unified diff');

  const binary = find('file', '/usr/bin/false');
  t.equal(binary?.change, 'modified', 'binary replaced');
  t.ok(binary?.changed.includes('sha256'), 'its hash changed');
  t.match(binary?.explanation ?? '', /outside the package manager/);

  const setuid = find('file', '/usr/bin/env');
  t.same(setuid?.changed, ['mode'], 'setuid bit added');
  t.match(setuid?.explanation ?? '', /setuid/);

  const user = find('file', '/etc/passwd');
  t.equal(user?.change, 'modified', 'user added');
  t.match(user?.explanation ?? '', /mallory/);

  const local = find('file', '/usr/local/bin/backdoor');
  t.equal(local?.change, 'added', 'new file in /usr/local/bin');

  const link = find('file', '/etc/alternatives/pager');
  t.ok(link?.changed.includes('target'), 'symlink retargeted');
  t.match(link?.explanation ?? '', /\/bin\/more.*\/usr\/bin\/bash/);

  const removedFile = find('file', '/usr/bin/drift-test-a');
  t.equal(removedFile?.change, 'removed', 'the removed package took its file along');
  t.match(await readFile(join(host, 'etc', 'drift', 'image.json'), 'utf8'), /debian-12-minbase/, 'the stamp survives in the host copy');
});
