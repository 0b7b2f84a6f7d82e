import t from 'tap';
import { copyFile, chmod, readFile, unlink, writeFile, mkdir } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { buildDeb } from '../helpers/debian.js';
import { drift, must } from '../helpers/run.js';
import { rootListing, sshScene } from '../helpers/sshd.js';
import { collectOverSsh } from '../../agent/remote/ssh.js';
import { scopedRules } from '../../agent/baseline.js';
import { emptyRuleSet } from '../../agent/protocol/rules.js';
import { VERSION } from '../../agent/version.js';

/**
 * `drift scan --ssh` against a real OpenSSH sshd on 127.0.0.1 whose "/" is a copy of
 * the debootstrap root (ChrootDirectory), with this checkout's drift installed in it.
 * One root and one sshd serve every subtest; the subtests that change the root run last.
 */

interface JsonFinding { kind: string; key: string; change: string; changed: string[]; explanation: string }
interface JsonReport { schema: string; findings: JsonFinding[] }

const { work, root, baselinePath, state, baseline, sshd, target, env, sshArgs } = await sshScene(t, 'debian-12-ssh', { withDrift: true });
const fingerprint = (await must('ssh-keygen', ['-lf', join(sshd.dir, 'host_ed25519.pub')])).split(' ')[1] ?? 'none';
t.match(fingerprint, /^SHA256:/, 'the sshd\'s host key fingerprint');

const listing = rootListing;

t.test('with drift on the target: the manifest over SSH has the packages and files of drift baseline --root', async (t) => {
  const manifest = await collectOverSsh({ user: 'root', host: '127.0.0.1', port: sshd.port },
    { identity: sshd.clientKey, knownHosts: sshd.knownHosts, connectTimeoutMs: 5000 },
    { rules: scopedRules(baseline, emptyRuleSet(), baselinePath), sections: ['packages', 'files'] });
  t.equal(manifest.agent.version, VERSION);
  t.equal(manifest.digests.packages, baseline.digests.packages, 'packages section digest equal');
  t.equal(manifest.digests.files, baseline.digests.files, 'files section digest equal');
  t.ok(Object.keys(manifest.packages ?? {}).length > 50, 'the packages of the root');
  t.ok(manifest.files?.['/etc/passwd']?.sha256, 'a watched file with its hash');
  t.equal(manifest.host.machineId, '0123456789abcdef0123456789abcdef', 'the host fields of the root');
  t.equal(manifest.host.image?.id, 'debian-12-ssh', 'the image stamp of the root');
});

t.test('a scan over SSH of the unchanged root is clean, and writes nothing there', async (t) => {
  const before = await listing(root);
  const r = await drift(sshArgs(['--format', 'json', '--sections', 'packages,files']), { env });
  t.equal(r.code, 0, `exit 0: ${r.stderr}`);
  const report = JSON.parse(r.stdout || '{}') as JsonReport;
  t.same(report.findings, [], 'no findings');
  const text = await drift(sshArgs(['--sections', 'packages,files']), { env });
  t.equal(text.code, 0, text.stderr);
  t.match(text.stdout, `ssh://root@127.0.0.1:${sshd.port}`, 'the report names the SSH target');
  t.equal(await listing(root), before, 'every path, mode, owner, size, mtime and hash of the remote root is unchanged; no file added');
});

t.test('an unknown host key is refused with its fingerprint; --accept-new trusts and records it', async (t) => {
  const kh = join(work, 'empty_known_hosts');
  await writeFile(kh, '');
  const refused = await drift(['scan', '--ssh', target, '--baseline', baselinePath, '--identity', sshd.clientKey, '--known-hosts', kh, '--state-dir', state, '--sections', 'packages'], { env });
  t.equal(refused.code, 2);
  t.match(refused.stderr, /is not in .*empty_known_hosts; refused/);
  t.match(refused.stderr, fingerprint, 'the SHA256 fingerprint is shown');
  t.match(refused.stderr, /--accept-new/, 'and how to accept it');
  t.equal(await readFile(kh, 'utf8'), '', 'nothing was added without --accept-new');

  const accepted = await drift(['scan', '--ssh', target, '--baseline', baselinePath, '--identity', sshd.clientKey, '--known-hosts', kh, '--state-dir', state, '--sections', 'packages', '--accept-new'], { env });
  t.equal(accepted.code, 0, accepted.stderr);
  t.match(accepted.stderr, /trusted new host key/);
  t.equal(await readFile(kh, 'utf8'), `[127.0.0.1]:${sshd.port} ${sshd.hostKeyPub}\n`, 'the key was recorded in OpenSSH\'s form');
  const again = await drift(['scan', '--ssh', target, '--baseline', baselinePath, '--identity', sshd.clientKey, '--known-hosts', kh, '--state-dir', state, '--sections', 'packages'], { env });
  t.equal(again.code, 0, 'known from then on');

  // Hashed entries (ssh-keygen -H, HashKnownHosts yes) are read too.
  await must('ssh-keygen', ['-q', '-H', '-f', kh]);
  t.match(await readFile(kh, 'utf8'), /^\|1\|/);
  const hashed = await drift(['scan', '--ssh', target, '--baseline', baselinePath, '--identity', sshd.clientKey, '--known-hosts', kh, '--state-dir', state, '--sections', 'packages'], { env });
  t.equal(hashed.code, 0, hashed.stderr);
});

t.test('a changed host key is refused', async (t) => {
  const other = join(work, 'other_key');
  await must('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', other]);
  const kh = join(work, 'changed_known_hosts');
  const otherPub = (await readFile(`${other}.pub`, 'utf8')).split(' ').slice(0, 2).join(' ');
  await writeFile(kh, `[127.0.0.1]:${sshd.port} ${otherPub}\n`);
  const r = await drift(['scan', '--ssh', target, '--baseline', baselinePath, '--identity', sshd.clientKey, '--known-hosts', kh, '--state-dir', state, '--accept-new'], { env });
  t.equal(r.code, 2);
  t.match(r.stderr, /HOST KEY CHANGED/);
  t.match(r.stderr, fingerprint);
  t.match(r.stderr, /ssh-keygen -R/);
  t.equal(await readFile(kh, 'utf8'), `[127.0.0.1]:${sshd.port} ${otherPub}\n`, '--accept-new never replaces a known key');
});

t.test('wrong credentials, no credentials, an unreachable port and a silent server exit 2 with what to do', async (t) => {
  const wrong = join(work, 'wrong_key');
  await must('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', wrong]);
  const denied = await drift(['scan', '--ssh', target, '--baseline', baselinePath, '--identity', wrong, '--known-hosts', sshd.knownHosts, '--state-dir', state], { env });
  t.equal(denied.code, 2);
  t.match(denied.stderr, /authentication failed/);
  t.match(denied.stderr, /never asks for a password/);

  const none = await drift(['scan', '--ssh', target, '--baseline', baselinePath, '--known-hosts', sshd.knownHosts, '--state-dir', state], { env });
  t.equal(none.code, 2);
  t.match(none.stderr, /no SSH credentials.*--identity/);

  // A port nothing listens on: taken, then released.
  const closed = await new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 1));
    });
  });
  const refused = await drift(['scan', '--ssh', `root@127.0.0.1:${closed}`, '--baseline', baselinePath, '--identity', sshd.clientKey, '--known-hosts', sshd.knownHosts, '--state-dir', state, '--connect-timeout', '2s'], { env });
  t.equal(refused.code, 2);
  t.match(refused.stderr, /cannot connect \(ECONNREFUSED\)/);

  // A server that accepts and never speaks SSH: the connect timeout ends it.
  const held = new Set<Socket>();
  const silent: Server = createServer((socket) => {
    held.add(socket);
    socket.resume();
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => {
    for (const socket of held) socket.destroy();
    silent.close(() => resolve());
  }));
  const a = silent.address();
  const silentPort = typeof a === 'object' && a ? a.port : 1;
  const started = Date.now();
  const hung = await drift(['scan', '--ssh', `root@127.0.0.1:${silentPort}`, '--baseline', baselinePath, '--identity', sshd.clientKey, '--known-hosts', sshd.knownHosts, '--state-dir', state, '--connect-timeout', '1s'], { env });
  t.equal(hung.code, 2);
  t.match(hung.stderr, /no SSH handshake within 1000 ms \(--connect-timeout\)/);
  // Generous bound: the process start dominates on a loaded machine; without the timeout it would hang.
  t.ok(Date.now() - started < 30_000, 'it gave up instead of hanging');

  const badTarget = await drift(['scan', '--ssh', 'root@-oProxyCommand=x', '--baseline', baselinePath], { env });
  t.equal(badTarget.code, 2);
  t.match(badTarget.stderr, /is not a host name or address/);
});

t.test('a target without drift, or with something else answering, exits 2 naming what is missing', async (t) => {
  const missing = await drift(sshArgs(['--remote-drift', '/opt/nowhere/drift']), { env });
  t.equal(missing.code, 2);
  t.match(missing.stderr, /drift is not installed there/);
  const echo = await drift(sshArgs(['--remote-drift', '/bin/true']), { env });
  t.equal(echo.code, 2);
  t.match(echo.stderr, /did not answer with a version/);
});

t.test('the scope may come after the connection; rules that never come end the collection with their error', async (t) => {
  const where = { user: 'root', host: '127.0.0.1', port: sshd.port };
  const opts = { identity: sshd.clientKey, knownHosts: sshd.knownHosts, connectTimeoutMs: 5000 };
  let give: (rules: ReturnType<typeof scopedRules>) => void = () => undefined;
  const later = new Promise<ReturnType<typeof scopedRules>>((resolve) => { give = resolve; });
  const collecting = collectOverSsh(where, opts, { rules: later, sections: ['packages'] });
  // Connecting and starting drift there go on meanwhile; the scope follows on stdin.
  setImmediate(() => give(scopedRules(baseline, emptyRuleSet(), baselinePath)));
  const manifest = await collecting;
  t.ok(Object.keys(manifest.packages ?? {}).length > 0, 'the packages of the root');
  const refused = new Error('the baseline does not read');
  const never = Promise.reject(refused);
  await t.rejects(collectOverSsh(where, opts, { rules: never, sections: ['packages'] }), refused);
  const missing = await drift(['scan', '--ssh', `root@127.0.0.1:${sshd.port}`, '--baseline', join(work, 'no-such-baseline.json'), '--identity', sshd.clientKey, '--known-hosts', sshd.knownHosts, '--state-dir', state], { env });
  t.equal(missing.code, 2);
  t.match(missing.stderr, /cannot read baseline .*no-such-baseline\.json: ENOENT/);
  t.notMatch(missing.stderr, /Unhandled|at async/, 'an error message, not a crash');
});

t.test('the drifted root: the same findings over SSH as a local scan', async (t) => {
  const debs = join(work, 'debs');
  await mkdir(debs);
  const deb = buildDeb(debs, { name: 'drift-test-b', version: '2.0-1', files: { '/usr/bin/drift-test-b': '#!/bin/sh\necho b\n' } });
  await copyFile(deb, join(root, 'tmp', 'b.deb'));
  await must('chroot', [root, 'dpkg', '-i', '/tmp/b.deb']);
  await unlink(join(root, 'tmp', 'b.deb'));
  await must('sed', ['-i', 's/^UMASK.*/UMASK\t\t000/', join(root, 'etc', 'login.defs')]);
  await chmod(join(root, 'usr', 'bin', 'env'), 0o4755);
  await must('chroot', [root, 'useradd', 'mallory']);

  const local = await drift(['scan', '--root', root, '--baseline', baselinePath, '--format', 'json', '--state-dir', join(work, 'state-local'), '--sections', 'packages,files']);
  const remote = await drift(sshArgs(['--format', 'json', '--sections', 'packages,files']), { env });
  t.equal(local.code, 1, local.stderr);
  t.equal(remote.code, 1, remote.stderr);
  const keys = (r: { stdout: string }): string[] => (JSON.parse(r.stdout) as JsonReport).findings.map((f) => `${f.kind} ${f.key} ${f.change} ${f.changed.join(',')}`).sort();
  t.same(keys(remote), keys(local), 'the same findings');
  const found = keys(remote).join('\n');
  t.match(found, /package dpkg:drift-test-b:all added/);
  t.match(found, /file \/etc\/login\.defs modified/);
  t.match(found, /file \/usr\/bin\/env modified mode/);
  t.match(found, /file \/etc\/passwd modified/);
});

t.test('another drift version on the target is refused, so is output that is not a manifest', async (t) => {
  await writeFile(join(root, 'usr', 'local', 'bin', 'drift-old'), '#!/bin/sh\n[ "$1" = --version ] && echo 0.0.1 && exit 0\nexit 3\n', { mode: 0o755 });
  const old = await drift(sshArgs(['--remote-drift', '/usr/local/bin/drift-old']), { env });
  t.equal(old.code, 2);
  t.match(old.stderr, new RegExp(`drift 0\\.0\\.1 is installed there, this is drift ${VERSION.replace(/\./g, '\\.')}`));
  await writeFile(join(root, 'usr', 'local', 'bin', 'drift-liar'), `#!/bin/sh\n[ "$1" = --version ] && echo ${VERSION} && exit 0\necho '{"not":"gzip"}'\n`, { mode: 0o755 });
  const liar = await drift(sshArgs(['--remote-drift', '/usr/local/bin/drift-liar']), { env });
  t.equal(liar.code, 2);
  t.match(liar.stderr, /sent no gzip-compressed manifest/);
  await writeFile(join(root, 'usr', 'local', 'bin', 'drift-bad'), `#!/bin/sh\n[ "$1" = --version ] && echo ${VERSION} && exit 0\necho '{"schema":"drift.manifest/v9"}' | gzip\n`, { mode: 0o755 });
  const bad = await drift(sshArgs(['--remote-drift', '/usr/local/bin/drift-bad']), { env });
  t.equal(bad.code, 2);
  t.match(bad.stderr, /a manifest this drift does not read/);
  await writeFile(join(root, 'usr', 'local', 'bin', 'drift-slow'), `#!/bin/sh\n[ "$1" = --version ] && echo ${VERSION} && exit 0\nexec sleep 120\n`, { mode: 0o755 });
  const slow = await drift(sshArgs(['--remote-drift', '/usr/local/bin/drift-slow', '--timeout', '3s']), { env });
  t.equal(slow.code, 2);
  t.match(slow.stderr, /took longer than 3000 ms \(--timeout\); nothing was collected/);
  const quoted = await drift(sshArgs(['--remote-drift', "/usr/local/bin/drift'; touch /pwned; '"]), { env });
  t.equal(quoted.code, 2, 'a remote drift path is one quoted word');
  t.notOk(await readFile(join(root, 'pwned')).catch(() => null), 'never run as shell code');
});
