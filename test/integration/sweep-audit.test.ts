import t from 'tap';
import { spawn } from 'node:child_process';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { drift } from '../helpers/run.js';
import { driftBin } from '../helpers/paths.js';
import { instanceDrift, startSsmServer } from '../helpers/ssm-server.js';
import { MOTO_ENV } from '../helpers/moto.js';
import { makeRoot, startCollector } from '../e2e/helpers.js';
import { parseAuditConfig } from '../../server/audit/config.js';

/**
 * `drift audit`'s sweep pass: the daemon (a real process) sweeps ssm targets on its own
 * cron schedule through the local SSM server and posts the manifests to a real collector.
 */

const work = await mkdtemp(join(tmpdir(), 'drift-sweep-audit-'));
t.teardown(() => rm(work, { recursive: true, force: true }));
const must = async (args: string[]): Promise<void> => {
  const r = await drift(args);
  if (r.code !== 0) throw new Error(`drift ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
};
const HOST_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const ssm = await startSsmServer();
t.teardown(() => ssm.close());
const image = await makeRoot(join(work, 'image'), { machineId: '', hostname: 'localhost' });
await writeFile(join(image, 'etc/machine-id'), '');
await mkdir(join(image, 'etc/drift'), { recursive: true });
await must(['baseline', '--root', image, '--image-id', 'img-audit', '--out', join(image, 'etc/drift/baseline.json'), '--stamp', '--state-dir', join(work, 'bake')]);
const GOOD = 'i-0aaaaaaaaaaaaaaa1';
const GONE = 'i-0aaaaaaaaaaaaaaa2';
const root = join(work, GOOD);
await cp(image, root, { recursive: true, preserveTimestamps: true });
await writeFile(join(root, 'etc/machine-id'), `${'b'.repeat(32)}\n`);
await writeFile(join(root, 'etc/motd'), 'Hacked.\n');
ssm.instances.set(GOOD, { path: `${await instanceDrift(join(work, 'bin'), root, join(work, 'state'))}:${HOST_PATH}` });
ssm.instances.set(GONE, { path: HOST_PATH });

const token = 'audit-admin-token-0123456789';
const collector = await startCollector(join(work, 'collector.db'), { adminToken: token });
t.teardown(() => collector.close());
const tokenFile = join(work, 'admin.token');
await writeFile(tokenFile, `${token}\n`, { mode: 0o600 });
await must(['baseline', 'push', join(image, 'etc/drift/baseline.json'), '--collector', collector.url, '--admin-token-file', tokenFile]);
const targets = join(work, 'targets.txt');
await writeFile(targets, `ssm://${GOOD} img-audit\nssm://${GONE}\n`);

const config = (schedules: Record<string, string>): string => [
  `collector: ${collector.url}`,
  `adminTokenFile: ${tokenFile}`,
  'provider: { kind: command, argv: [/bin/false] }',
  `schedules: ${JSON.stringify(schedules)}`,
  `sweep: { targets: ${targets}, concurrency: 2, timeout: 1m, region: us-east-1, endpoint: "${ssm.endpoint}" }`,
  `report: { dir: ${join(work, 'reports')} }`,
].join('\n');

t.test('the config: a sweep schedule needs a sweep section; bad values are refused with the key', async (t) => {
  const base = { collector: collector.url, adminTokenFile: tokenFile, provider: { kind: 'command', argv: ['/bin/false'] } };
  t.throws(() => parseAuditConfig({ ...base, schedules: { sweep: '0 * * * *' } }, 'a.yaml'), { message: /^a\.yaml: sweep: schedules\.sweep is set, but there is no sweep: \{ targets: FILE \}/ });
  t.throws(() => parseAuditConfig({ ...base, sweep: { targets: 'x', concurrency: 0 } }, 'a.yaml'), { message: /^a\.yaml: sweep\.concurrency: / });
  t.throws(() => parseAuditConfig({ ...base, sweep: { targets: 'x', nope: 1 } }, 'a.yaml'), { message: /unknown key nope/ });
  const ok = parseAuditConfig({ ...base, schedules: { sweep: '0 */6 * * *' }, sweep: { targets: 'x' } }, 'a.yaml');
  t.equal(ok.sweep?.concurrency, 8);
  t.equal(ok.sweep?.timeout, 300_000);
});

t.test('drift audit --once sweep: the targets scanned, the whole manifest posted, the failure logged', async (t) => {
  const file = join(work, 'once.yaml');
  await writeFile(file, config({}));
  const r = await drift(['audit', '--config', file, '--once', 'sweep'], { env: MOTO_ENV });
  t.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { msg: string; target?: string; error?: string; result?: { posted: number; failed: number; drifted: number } });
  t.match(lines.find((l) => l.msg === 'sweep: target failed'), { target: `ssm://${GONE}`, error: /drift is not installed/ });
  t.match(lines.find((l) => l.msg === 'pass done')?.result, { posted: 1, failed: 1, drifted: 1 });
  const host = collector.store.hostById(`ssm:${GOOD}`);
  t.equal(host?.via, 'ssm');
  t.ok((host?.findings ?? 0) > 0, 'the drifted agentless host has its findings on the collector');
  const hosts = await drift(['hosts', '--collector', collector.url, '--admin-token-file', tokenFile, '--format', 'json']);
  t.match(JSON.parse(hosts.stdout), { hosts: [{ id: `ssm:${GOOD}`, via: 'ssm', status: 'drifted', imageId: 'img-audit' }] });
});

t.test('the daemon runs the sweep on its own schedule', async (t) => {
  const file = join(work, 'daemon.yaml');
  await writeFile(file, config({ sweep: '*/1 * * * * *' }));
  const before = collector.store.hostById(`ssm:${GOOD}`)?.lastSeq ?? 0;
  const child = spawn(process.execPath, [driftBin, 'audit', '--config', file], { env: { ...process.env, ...MOTO_ENV }, stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
  let out = '';
  const done = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), 60_000);
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString('utf8');
      if (out.includes('"msg":"sweep done"')) { clearTimeout(timer); resolve(true); }
    });
    child.once('exit', () => { clearTimeout(timer); resolve(false); });
  });
  t.ok(done, `a scheduled sweep ran: ${out.slice(-500)}`);
  t.match(out, /"schedules":\{[^}]*"sweep":"\*\/1 \* \* \* \* \*"/, 'the start line names the sweep schedule');
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  t.equal(await exited, 0, 'SIGTERM stops it cleanly');
  t.ok((collector.store.hostById(`ssm:${GOOD}`)?.lastSeq ?? 0) > before, 'the scheduled sweep posted a newer report');
});
