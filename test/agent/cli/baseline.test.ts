import t from 'tap';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { drift, must } from '../../helpers/run.js';

/** `drift baseline` as a user runs it, on a root the test builds. */

interface Baseline {
  schema: string;
  host: { image?: { id: string; version?: string } };
  digests: Record<string, string>;
  packages?: Record<string, { version: string }>;
  files?: Record<string, { type: string; mode: string; uid: number; gid: number; sha256?: string; target?: string; content?: string; owner?: string; conffile?: boolean }>;
  processes?: Record<string, { count: number }>;
  ports?: Record<string, { process?: string }>;
  signature?: { keyId: string };
}

const work = await mkdtemp(join(tmpdir(), 'drift-baseline-'));
t.teardown(() => rm(work, { recursive: true, force: true }));
const root = join(work, 'root');
const rules = join(work, 'rules');
const state = join(work, 'state');
await mkdir(join(root, 'etc', 'ssh'), { recursive: true });
await mkdir(join(root, 'usr', 'bin'), { recursive: true });
await mkdir(join(root, 'var', 'lib', 'dpkg', 'info'), { recursive: true });
await mkdir(rules);
await writeFile(join(root, 'etc', 'ssh', 'sshd_config'), 'PermitRootLogin no\n');
await writeFile(join(root, 'etc', 'machine-id'), 'abcdefabcdefabcdefabcdefabcdef12\n');
await writeFile(join(root, 'usr', 'bin', 'tool'), Buffer.alloc(3 * 1024 * 1024, 7), { mode: 0o755 });
await chmod(join(root, 'usr', 'bin', 'tool'), 0o4755);
await chown(join(root, 'etc', 'ssh', 'sshd_config'), 1234, 5678);
await symlink('../usr/bin/tool', join(root, 'etc', 'tool-link'));
await writeFile(join(root, 'var', 'lib', 'dpkg', 'status'), [
  'Package: openssh-server', 'Status: install ok installed', 'Architecture: amd64', 'Version: 1:9.2p1-2+deb12u3',
  'Conffiles:', ' /etc/ssh/sshd_config 0123456789abcdef0123456789abcdef', 'Description: ssh server', '',
].join('\n'));
await writeFile(join(root, 'var', 'lib', 'dpkg', 'info', 'openssh-server.list'), '/etc\n/etc/ssh\n/etc/ssh/sshd_config\n');
await writeFile(join(rules, 'test.yaml'), 'watch:\n  - path: /etc/**\n    content: true\n  - path: /usr/bin/**\n');

const sha256sum = async (path: string): Promise<string> => (await must('sha256sum', [path])).split(' ')[0] ?? '';

t.test('a baseline of a built root has the right hashes, modes, owners, links and packages', async (t) => {
  const out = join(work, 'b.json');
  const r = await drift(['baseline', '--root', root, '--image-id', 'img-1', '--image-version', '7', '--rules', rules, '--out', out, '--state-dir', state]);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stderr, /baseline of image img-1: 1 package, \d+ files/);
  const b = JSON.parse(await readFile(out, 'utf8')) as Baseline;
  t.equal(b.schema, 'drift.manifest/v1');
  t.same(b.host.image, { id: 'img-1', version: '7' });
  const files = b.files ?? {};
  t.equal(files['/usr/bin/tool']?.sha256, await sha256sum(join(root, 'usr', 'bin', 'tool')), 'large file hash equals sha256sum');
  t.equal(files['/usr/bin/tool']?.mode, '4755', 'setuid kept in the mode');
  t.equal(files['/etc/ssh/sshd_config']?.sha256, await sha256sum(join(root, 'etc', 'ssh', 'sshd_config')));
  t.equal(files['/etc/ssh/sshd_config']?.content, 'PermitRootLogin no\n');
  t.equal(files['/etc/ssh/sshd_config']?.uid, 1234);
  t.equal(files['/etc/ssh/sshd_config']?.gid, 5678);
  t.equal(files['/etc/ssh/sshd_config']?.owner, 'dpkg:openssh-server');
  t.equal(files['/etc/ssh/sshd_config']?.conffile, true);
  t.equal(files['/etc/tool-link']?.type, 'symlink');
  t.equal(files['/etc/tool-link']?.target, '../usr/bin/tool');
  t.same(b.packages, { 'dpkg:openssh-server:amd64': { version: '1:9.2p1-2+deb12u3', source: 'openssh-server' } });
  t.equal(b.processes, undefined, 'an offline root has no processes');
  t.equal(b.ports, undefined, 'an offline root has no ports');
  t.equal(b.signature, undefined, 'unsigned without --sign-key');
});

t.test('two baselines of an unchanged root are byte-identical apart from collectedAt', async (t) => {
  const a = join(work, 'a1.json');
  const b = join(work, 'a2.json');
  t.equal((await drift(['baseline', '--root', root, '--image-id', 'img-1', '--rules', rules, '--out', a, '--state-dir', state])).code, 0);
  t.equal((await drift(['baseline', '--root', root, '--image-id', 'img-1', '--rules', rules, '--out', b, '--state-dir', state, '--force-rehash'])).code, 0);
  const strip = (s: string): string => s.replace(/"collectedAt":"[^"]*"/, '');
  t.equal(strip(await readFile(a, 'utf8')), strip(await readFile(b, 'utf8')));
});

t.test('--proc adds processes and ports; --sign-key signs; --stamp writes the image identity', async (t) => {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const port = (server.address() as { port: number }).port;
  t.equal((await drift(['keygen', '--out', join(work, 'bake')])).code, 0);
  const out = join(work, 'signed.json');
  const r = await drift(['baseline', '--root', root, '--proc', '/proc', '--image-id', 'img-2', '--rules', rules,
    '--sign-key', join(work, 'bake.key'), '--out', out, '--stamp', '--state-dir', state]);
  t.equal(r.code, 0, r.stderr);
  const b = JSON.parse(await readFile(out, 'utf8')) as Baseline;
  t.ok(b.signature?.keyId, 'signed');
  // Services only (test/agent/cli/services.test.ts has the full case): this test
  // runner is a child of a shell, not a service, so its port is not recorded.
  t.ok(b.processes, 'processes were collected');
  t.ok(b.ports, 'ports were collected');
  t.notOk(b.ports?.[`tcp:127.0.0.1:${port}`], 'the test\'s listening port is not a service\'s');
  const stamp = JSON.parse(await readFile(join(root, 'etc', 'drift', 'image.json'), 'utf8')) as { id: string; baselineDigest: string };
  t.equal(stamp.id, 'img-2');
  t.match(stamp.baselineDigest, /^sha256:[0-9a-f]{64}$/);
  t.match(r.stderr, new RegExp(stamp.baselineDigest.replace(':', ':')));
  await rm(join(root, 'etc', 'drift'), { recursive: true });
});

t.test('bad arguments give exit 2 and a one-line reason', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['baseline', '--out', join(work, 'x.json')], /--image-id/],
    [['baseline', '--image-id', 'x'], /--out/],
    [['baseline', '--image-id', 'x', '--out', join(work, 'x.json'), '--root', root, '--rules', join(work, 'nope')], /nope/],
    [['baseline', '--image-id', 'x', '--out', join(work, 'x.json'), '--root', root, '--sign-key', join(work, 'missing.key')], /missing\.key/],
    [['nonsense'], /unknown command/],
  ];
  for (const [args, reason] of cases) {
    const r = await drift(args);
    t.equal(r.code, 2, `${args.join(' ')} exits 2`);
    t.match(r.stderr.split('\n')[0] ?? '', reason, `${args.join(' ')}: ${r.stderr.trim()}`);
  }
});

t.test('every command has --help, and --version works', async (t) => {
  const v = await drift(['--version']);
  t.equal(v.code, 0);
  t.match(v.stdout, /^\d+\.\d+\.\d+\n$/);
  const top = await drift(['--help']);
  t.equal(top.code, 0);
  const commands = [...top.stdout.matchAll(/^ {2}([a-z][a-z-]*)\b/gm)].map((m) => m[1] ?? '').filter((c) => c !== 'help');
  t.ok(commands.includes('baseline') && commands.includes('scan'), `commands listed: ${commands.join(', ')}`);
  for (const c of commands) {
    const h = await drift([c, '--help']);
    t.equal(h.code, 0, `${c} --help exits 0`);
    t.match(h.stdout, new RegExp(`Usage: drift ${c}`));
  }
});
