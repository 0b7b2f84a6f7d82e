import t from 'tap';
import { copyFile, chmod, readFile, unlink, writeFile, mkdir } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { buildDeb } from '../helpers/debian.js';
import { drift, must } from '../helpers/run.js';
import { mountProc, rootListing, sshScene, startListener } from '../helpers/sshd.js';
import { collectOverSsh } from '../../agent/remote/ssh.js';
import { AGENTLESS_NO_PROC } from '../../agent/remote/agentless.js';
import { createProcessesCollector } from '../../agent/collectors/processes.js';
import { portsCollector } from '../../agent/collectors/ports.js';
import type { CollectContext } from '../../agent/collectors/contract.js';
import { BaselineSchema } from '../../agent/protocol/manifest.js';
import { scopedRules } from '../../agent/baseline.js';
import { emptyRuleSet } from '../../agent/protocol/rules.js';

/**
 * `drift scan --ssh` of a host WITHOUT drift: a real OpenSSH sshd on 127.0.0.1 whose "/"
 * is a copy of the debootstrap root (ChrootDirectory), nothing of drift installed there.
 * The manifest is read agentless (find, sha256sum, lsattr with paths on stdin; SFTP for
 * small files) and must equal the local collection of the same root.
 */

interface JsonFinding { kind: string; key: string; change: string; changed: string[] }
interface JsonReport { findings: JsonFinding[] }

const { work, root, baselinePath, baseline, sshd, env, sshArgs } = await sshScene(t, 'debian-12-agentless', { withDrift: false });
const rules = scopedRules(baseline, emptyRuleSet(), baselinePath);
const connect = { identity: sshd.clientKey, knownHosts: sshd.knownHosts, connectTimeoutMs: 5000 };
const sshTarget = { user: 'root', host: '127.0.0.1', port: sshd.port };

const listing = rootListing;

t.test('without drift on the target: the agentless manifest has the packages and files of drift baseline --root', async (t) => {
  t.notOk(await readFile(join(root, 'usr', 'local', 'bin', 'drift')).catch(() => null), 'no drift in the root');
  const before = await listing(root);
  const manifest = await collectOverSsh(sshTarget, connect, { rules, sections: ['packages', 'files'] });
  t.equal(manifest.digests.packages, baseline.digests.packages, 'packages section digest equal');
  t.equal(manifest.digests.files, baseline.digests.files, 'files section digest equal');
  t.ok(Object.keys(manifest.packages ?? {}).length > 50, 'the packages of the root');
  t.equal(manifest.files?.['/usr/bin/passwd']?.owner, 'dpkg:passwd', 'files carry their owner');
  t.ok(manifest.files?.['/etc/passwd']?.content?.includes('root:x:0:0'), 'content where a rule asks for it');
  t.equal(manifest.host.machineId, '0123456789abcdef0123456789abcdef', 'machine-id of the remote root');
  t.equal(manifest.host.image?.id, 'debian-12-agentless', 'the image stamp of the remote root');
  t.equal(await listing(root), before, 'nothing written on the target: every path, mode, mtime and hash unchanged, no file added');

  const all = await collectOverSsh(sshTarget, { ...connect, agentless: true }, { rules });
  t.same(all.unread.filter((u) => u.path === '/proc'), [{ path: '/proc', reason: AGENTLESS_NO_PROC }], 'without a procfs there, processes and ports are said to be missing, not silently dropped');
  t.equal(all.processes, undefined);
  t.equal(all.ports, undefined);
});

t.test('a scan over SSH of the unchanged root without drift is clean and says it went agentless', async (t) => {
  const before = await listing(root);
  const r = await drift(sshArgs(['--format', 'json', '--sections', 'packages,files']), { env });
  t.equal(r.code, 0, `exit 0: ${r.stderr}`);
  t.same((JSON.parse(r.stdout || '{}') as JsonReport).findings, [], 'no findings');
  t.match(r.stderr, /drift is not installed there; collecting agentless/);
  t.equal(await listing(root), before, 'the read-only proof holds for the agentless mode');
});

t.test('a hostile root: odd names and oversized output', async (t) => {
  const odd = join(root, 'etc', 'drift-odd');
  await mkdir(odd);
  await writeFile(join(odd, 'new\nline'), 'a\n');
  await writeFile(join(odd, 'esc\x1b[31mred'), 'b\n');
  await writeFile(Buffer.concat([Buffer.from(`${odd}/bad-`), Buffer.from([0xff, 0xfe])]), 'c\n');
  t.teardown(() => must('rm', ['-rf', odd]));
  const localOut = join(work, 'hostile-baseline.json');
  const local = await drift(['baseline', '--root', root, '--image-id', 'hostile', '--out', localOut, '--state-dir', join(work, 'state-hostile')]);
  t.equal(local.code, 0, local.stderr);
  const manifest = await collectOverSsh(sshTarget, connect, { rules, sections: ['files'] });
  t.ok(manifest.files?.['/etc/drift-odd/new\nline']?.sha256, 'a name with a newline is listed and hashed');
  t.equal(manifest.files?.['/etc/drift-odd/new\nline']?.sha256, createHash('sha256').update('a\n').digest('hex'), 'its hash is its own');
  t.ok(manifest.files?.['/etc/drift-odd/esc\x1b[31mred']?.sha256, 'a name with ESC is kept as it is (escaped only when shown)');
  t.same(manifest.unread.filter((u) => u.path.startsWith('/etc/drift-odd/bad-')), [{ path: '/etc/drift-odd/bad-\\xff\\xfe', reason: 'EILSEQ' }], 'a name that is not UTF-8 is unread, as locally');
  const localBaseline = BaselineSchema.parse(JSON.parse(await readFile(localOut, 'utf8')));
  t.equal(manifest.digests.files, localBaseline.digests.files, 'the same files digest as a local collection of the hostile root');

  // A listing bigger than the bound is refused, not buffered.
  const { parseListing, splitNul } = await import('../../agent/remote/agentless.js');
  t.throws(() => parseListing(Buffer.from('/etc\0f\0'), 'host'), /not a multiple of 11; refused/);
  const fields = (mode: string): Buffer => Buffer.from(['/etc', 'd', mode, '0', '0', '4096', '1700000000.5', '2', '2049', '8', ''].map((f) => `${f}\0`).join(''));
  t.equal(parseListing(fields('755'), 'host')[0]?.mtime, 1700000000, 'mtime in whole seconds toward zero');
  t.throws(() => parseListing(fields('75x'), 'host'), /record 1 of the file listing has a mode that is not octal; refused/);
  t.equal(splitNul(Buffer.from('a\0b\0')).length, 2);
});

t.test('output past its bound is refused, not buffered', async (t) => {
  // A hostile host answering with more than a command may send: the session's bound ends the channel.
  const { connectSsh } = await import('../../agent/remote/ssh.js');
  const session = await connectSsh(sshTarget, connect);
  t.teardown(() => session.close());
  await t.rejects(session.exec('LC_ALL=C find -files0-from - -printf \'%p\\0\'', { stdin: Buffer.from('/usr\0'), maxStdout: 1024 }), { code: 'DRIFT_ERR_TOO_LARGE' });
  // A file read to EOF (as /proc files are: they show no size) stops one byte past its bound.
  const { RemoteFiles } = await import('../../agent/remote/agentless.js');
  const files = new RemoteFiles((await session.sftp()) as ConstructorParameters<typeof RemoteFiles>[0]);
  t.teardown(() => files.end());
  const status = await readFile(join(root, 'var', 'lib', 'dpkg', 'status'));
  t.ok(status.length > 1000);
  await t.rejects(files.readToEnd('/var/lib/dpkg/status', 1000), { code: 'over 1000 bytes; not read' }, 'past the bound: refused');
  t.same(await files.readToEnd('/var/lib/dpkg/status', status.length), status, 'within it: the whole file');
  await t.rejects(files.readToEnd('/etc/no-such-file', 1000), { code: 'ENOENT' });
});

t.test('a host whose find lies is refused, and nothing outside the scope gets in', async (t) => {
  const find = join(root, 'usr', 'bin', 'find');
  const real = join(work, 'find.real');
  await copyFile(find, real);
  t.teardown(() => copyFile(real, find));
  // A truncated record: the listing is refused whole (no manifest rather than a wrong one).
  await writeFile(find, "#!/bin/sh\nprintf '/etc\\000f\\000'\n", { mode: 0o755 });
  await t.rejects(collectOverSsh(sshTarget, { ...connect, agentless: true }, { rules, sections: ['files'] }), { code: 'DRIFT_ERR_MANIFEST', message: /not a multiple of 11; refused/ });
  // Well-formed records for paths no walk reaches (a folder never asked for) are dropped.
  await writeFile(find, "#!/bin/sh\nprintf '/srv/planted\\000f\\000644\\0000\\0000\\0001\\0001.0\\0001\\0001\\0000\\000\\000'\n", { mode: 0o755 });
  const m = await collectOverSsh(sshTarget, { ...connect, agentless: true }, { rules, sections: ['files'] });
  t.equal(m.files?.['/srv/planted'], undefined, 'a path outside every walk base is not recorded');
  t.same(m.files, {}, 'and nothing else either');
});

t.test('with getfattr on the target: capabilities and extended attributes as a local collection reads them', async (t) => {
  const getfattr = join(root, 'usr', 'bin', 'getfattr');
  await copyFile('/usr/bin/getfattr', getfattr);
  await chmod(getfattr, 0o755);
  const capped = join(root, 'usr', 'bin', 'drift-capped');
  await writeFile(capped, '#!/bin/sh\n', { mode: 0o755 });
  await must('setcap', ['cap_net_raw+ep', capped]);
  await must('setfattr', ['-n', 'user.drift', '-v', 'odd\nvalue', join(root, 'etc', 'hostname')]);
  await must('setfacl', ['-m', 'u:1000:r', join(root, 'etc', 'issue')]);
  t.teardown(async () => {
    await unlink(getfattr);
    await unlink(capped);
    await must('setfattr', ['-x', 'user.drift', join(root, 'etc', 'hostname')]);
    await must('setfacl', ['-b', join(root, 'etc', 'issue')]);
  });
  const localOut = join(work, 'xattr-baseline.json');
  const local = await drift(['baseline', '--root', root, '--image-id', 'xattrs', '--out', localOut, '--state-dir', join(work, 'state-xattrs')]);
  t.equal(local.code, 0, local.stderr);
  const localBaseline = BaselineSchema.parse(JSON.parse(await readFile(localOut, 'utf8')));
  const manifest = await collectOverSsh(sshTarget, { ...connect, agentless: true }, { rules, sections: ['files'] });
  t.equal(manifest.files?.['/usr/bin/drift-capped']?.caps, 'cap_net_raw=ep', 'the capability, in getcap\'s form');
  t.same(manifest.files?.['/etc/issue']?.acl, localBaseline.files?.['/etc/issue']?.acl, 'the ACL as locally');
  t.ok(manifest.files?.['/etc/issue']?.acl?.includes('user:1000:r--'), 'the named ACL entry');
  t.same(manifest.files?.['/etc/hostname']?.xattrs, localBaseline.files?.['/etc/hostname']?.xattrs, 'the user xattr as locally');
  t.equal(manifest.digests.files, localBaseline.digests.files, 'the same files digest as a local collection');
  t.same(manifest.unread.filter((u) => u.reason.startsWith('xattrs')), [], 'nothing unread');
});

t.test('the drifted root without drift: the same findings over SSH as a local scan', async (t) => {
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
  const remote = await drift(sshArgs(['--format', 'json', '--sections', 'packages,files', '--agentless']), { env });
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

t.test('with a procfs on the target: processes and ports read through the session, as a local collection of that root and /proc reads them', async (t) => {
  const proc = await mountProc(t, root);
  // A service-like daemon (parent PID 1) and a plain child of this test, each a node of its own path in the root.
  const daemonExe = join(root, 'usr', 'local', 'bin', 'drift-daemon');
  const childExe = join(root, 'usr', 'local', 'bin', 'drift-child');
  for (const exe of [daemonExe, childExe]) {
    await copyFile(process.execPath, exe);
    await chmod(exe, 0o755);
    t.teardown(() => unlink(exe));
  }
  const daemon = await startListener(t, daemonExe, { daemon: true });
  const child = await startListener(t, childExe, { daemon: false });
  t.match(await readFile(join(proc, String(daemon.pid), 'stat'), 'utf8'), /^\d+ \(drift-daemon\) \S+ 1 /, 'the daemon is PID 1\'s child');
  const imageSha = createHash('sha256').update(await readFile(daemonExe)).digest('hex');

  const before = await listing(root);
  const remote = await collectOverSsh(sshTarget, { ...connect, agentless: true }, { rules, sections: ['processes', 'ports'] });
  const ctx: CollectContext = { root, proc, rules, stateDir: null, forceRehash: true };
  const [localProcesses, localPorts] = await Promise.all([createProcessesCollector().collect(ctx), portsCollector.collect(ctx)]);
  t.equal(await listing(root), before, 'nothing written on the target');

  t.same(remote.unread.filter((u) => u.path === '/proc'), [], 'no note of a missing /proc');
  const key = '/usr/local/bin/drift-daemon|root';
  t.same(remote.processes?.[key], { count: 1, deleted: false, exeSha256: imageSha }, 'the daemon, its user and the hash of its running image');
  t.same(remote.processes?.[key], localProcesses.entries[key], 'as the local collection has it');
  const port = `tcp:127.0.0.1:${daemon.port}`;
  t.same(remote.ports?.[port], { process: '/usr/local/bin/drift-daemon' }, 'its listening port, tied to it');
  t.same(remote.ports?.[port], localPorts.entries[port], 'as the local collection has it');

  // The services filter: a child of a session (here, of this test) is no service's, remotely as locally.
  t.equal(remote.processes?.['/usr/local/bin/drift-child|root'], undefined, 'a process whose parent is not PID 1 is left out');
  t.equal(localProcesses.entries['/usr/local/bin/drift-child|root'], undefined, 'and left out locally');
  t.equal(remote.ports?.[`tcp:127.0.0.1:${child.port}`], undefined, 'so is its port');
  t.equal(localPorts.entries[`tcp:127.0.0.1:${child.port}`], undefined, 'locally too');

  // The sections as a whole, but for processes that started or ended between the two reads.
  const remoteProcesses = remote.processes ?? {};
  const shared = Object.keys(remoteProcesses).filter((k) => k in localProcesses.entries);
  t.ok(shared.length >= 2, `processes of both reads: ${shared.join(', ')}`);
  for (const k of shared) {
    const { count: _r, ...r } = remoteProcesses[k] ?? { count: 0 };
    const { count: _l, ...l } = localProcesses.entries[k] ?? { count: 0 };
    t.same(r, l, `${k}: the same image facts`);
  }
  const remotePorts = remote.ports ?? {};
  for (const k of Object.keys(remotePorts).filter((p) => p in localPorts.entries)) t.same(remotePorts[k], localPorts.entries[k], `${k}: the same holder`);
  t.same(remote.unread.filter((u) => u.path.startsWith('/proc/') && !/^\/proc\/\d+\/(exe|fd)$/.test(u.path)), [], 'no /proc text unread');
});

t.test('hostile answers of the /proc commands: parsed with bounds, refused or passed over, never trusted', async (t) => {
  const { parseIdentify, parseSocketLinks } = await import('../../agent/remote/agentless.js');
  const rec = (...f: string[]): string => f.map((x) => `${x}\0`).join('');
  const ok = rec('/proc/7/exe', '2049:131', '81ed', '1000', '8');
  t.same(parseIdentify(['/proc/7/exe'], Buffer.from(ok), ''), [{ id: '2049:131', mode: 0o100755, size: 1000, blocks: 8 }]);
  t.same(parseIdentify(['/proc/6/exe', '/proc/7/exe'], Buffer.from(ok), "stat: cannot statx '/proc/6/exe': No such file or directory\n"),
    [{ code: 'ENOENT' }, { id: '2049:131', mode: 0o100755, size: 1000, blocks: 8 }], 'a path without its record gets the reason stat gave');
  t.same(parseIdentify(['/proc/8/exe'], Buffer.from(ok), ''), [{ code: 'EIO' }], 'a record for another path than the one asked is not taken');
  t.same(parseIdentify(['/proc/7/exe'], Buffer.from(rec('/proc/7/exe', '2049:131; rm -rf /', '81ed', '1000', '8')), ''), [{ code: 'EIO' }], 'a malformed identity is not taken');
  t.same(parseIdentify(['/x'], Buffer.alloc(0), "stat: cannot statx '/x': Permission denied\n"), [{ code: 'EACCES' }]);
  t.same(parseIdentify(['/y'], Buffer.alloc(0), "stat: cannot statx '/y': \x1b[31mevil\n"), [{ code: '?[31mevil' }], 'an unknown message is kept printable');

  const wanted = new Set(['11', '12']);
  const links = Buffer.from(rec('/proc/5/fd', 'socket:[11]', '/proc/6/fd', 'socket:[11]', '/proc/5/fd', 'socket:[99]', '/etc/fd', 'socket:[12]', '/proc/7/fd', 'pipe:[12]', '/proc/8/fd', 'socket:[12]'));
  const stderr = "find: '/proc/9/fd': Permission denied\nfind: '/proc/10/fd': No such file or directory\nfind: '/proc/11/fd/4': Permission denied\n";
  const got = parseSocketLinks(links, stderr, wanted, 'host');
  t.same([...got.holders].sort(), [['11', [5, 6]], ['12', [8]]], 'the holders of the wanted sockets; other inodes, other folders, other links passed over');
  t.same(got.unreadable, [{ pid: 9, reason: 'EACCES' }, { pid: 11, reason: 'EACCES' }], 'fd folders and descriptors that could not be read; a process gone is churn');
  t.throws(() => parseSocketLinks(Buffer.from(rec('/proc/5/fd')), '', wanted, 'host'), { code: 'DRIFT_ERR_MANIFEST', message: /not pairs; refused/ }, 'a listing cut in a record is refused');

  const { parseProcTexts } = await import('../../agent/remote/agentless.js');
  const texts = parseProcTexts(Buffer.from('/proc/5/stat\x005 (a\n/proc/6/stat\x00b) S 1\n/proc/5/stat\x00b) S 1 5\n/proc/5/status\x00Uid:\t0\n/proc/5/cgroup\x000::/\n'));
  t.same([...texts].sort(), [['5/cgroup', '0::/\n'], ['5/stat', '5 (a\nb) S 1 5\n'], ['5/status', 'Uid:\t0\n'], ['6/stat', 'b) S 1\n']], "a file's lines joined again, a newline in a command name kept; each record to the file it names");
  t.same([...parseProcTexts(Buffer.from('/proc/5/stat\x005 (a) S 1\n/etc/shadow\x00root:x\n'))], [], 'a record of any other path refuses the whole output');
  t.same([...parseProcTexts(Buffer.from('/proc/5/stat'))], [], 'and so does a record cut short');
});
