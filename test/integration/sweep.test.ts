import t from 'tap';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { drift } from '../helpers/run.js';
import { instanceDrift, startS3Output, startSsmServer } from '../helpers/ssm-server.js';
import { MOTO_ENV } from '../helpers/moto.js';
import { makeRoot, startCollector } from '../e2e/helpers.js';
import { parseTargets, TARGETS_LIMITS } from '../../agent/remote/sweep.js';

/**
 * `drift scan --targets`: ssm targets against the local SSM server (which runs the
 * received commands on roots this test builds), the summary table, the worst exit
 * code, and the manifests posted to a real collector showing in /v1/hosts with `via`.
 */

const work = await mkdtemp(join(tmpdir(), 'drift-sweep-'));
t.teardown(() => rm(work, { recursive: true, force: true }));
const must = async (args: string[]): Promise<void> => {
  const r = await drift(args);
  if (r.code !== 0) throw new Error(`drift ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
};
const HOST_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const ssm = await startSsmServer();
t.teardown(() => ssm.close());

// The image: a small root, baked once (baseline at etc/drift/baseline.json, stamped).
const image = await makeRoot(join(work, 'image'), { machineId: '', hostname: 'localhost' });
await writeFile(join(image, 'etc/machine-id'), ''); // as images ship it: empty until first boot
await mkdir(join(image, 'etc/drift'), { recursive: true });
await must(['baseline', '--root', image, '--image-id', 'img-sweep', '--out', join(image, 'etc/drift/baseline.json'), '--stamp', '--state-dir', join(work, 'bake')]);

/** An instance of image img-sweep: a copy of the image's root with its own first-boot identity. */
async function instance(id: string, n: number): Promise<string> {
  const root = join(work, id);
  await cp(image, root, { recursive: true, preserveTimestamps: true });
  await writeFile(join(root, 'etc/machine-id'), `${`${n}`.padStart(32, 'a')}\n`);
  await writeFile(join(root, 'etc/hostname'), `web-${n}\n`);
  ssm.instances.set(id, { path: `${await instanceDrift(join(work, `${id}-bin`), root, join(work, `${id}-state`))}:${HOST_PATH}` });
  return root;
}
const CLEAN = 'i-00000000000000001';
const DRIFTED = 'i-00000000000000002';
const BIG = 'i-00000000000000003';
const NODRIFT = 'i-00000000000000004';
await instance(CLEAN, 1);
const drifted = await instance(DRIFTED, 2);
await writeFile(join(drifted, 'etc/ssh/sshd_config'), 'PermitRootLogin yes\n');
const big = await instance(BIG, 3);
// Enough incompressible drift that the verdict cannot carry the manifest.
await mkdir(join(big, 'etc/big'));
for (let i = 0; i < 400; i++) await writeFile(join(big, 'etc/big', randomBytes(8).toString('hex')), randomBytes(32).toString('base64'));
ssm.instances.set(NODRIFT, { path: HOST_PATH });
const baselineFile = join(image, 'etc/drift/baseline.json');

const env = { ...MOTO_ENV };
const targetsFile = join(work, 'targets.txt');
await writeFile(targetsFile, [
  '# the web cohort',
  `ssm://${CLEAN} img-sweep`,
  `ssm://${DRIFTED}   # edited sshd_config`,
  `ssm://${BIG}`,
  `ssm://${NODRIFT}`,
  '',
].join('\n'));
const sweepArgs = (file: string, ...more: string[]) => ['scan', '--targets', file, '--endpoint', ssm.endpoint, '--region', 'us-east-1', ...more];

t.test('a sweep: a report per target, the table, exit = the worst, a failed target reported and the rest scanned', async (t) => {
  const r = await drift(sweepArgs(targetsFile, '--concurrency', '3'), { env });
  t.equal(r.code, 2, 'exit 2: one target failed');
  t.match(r.stdout, /drift sweep: 4 targets, 2 drifted, 1 clean, 1 failed; exit 2/);
  t.match(r.stdout, /^TARGET\s+VIA\s+STATUS\s+CRITICAL\s+HIGH\s+MEDIUM\s+LOW\s+EXIT$/m);
  t.match(r.stdout, new RegExp(`^ssm://${CLEAN}\\s+ssm\\s+clean\\s+0\\s+0\\s+0\\s+0\\s+0$`, 'm'));
  t.match(r.stdout, new RegExp(`^ssm://${DRIFTED}\\s+ssm\\s+drifted\\s+\\d+\\s+\\d+\\s+\\d+\\s+\\d+\\s+1$`, 'm'));
  t.match(r.stdout, new RegExp(`^ssm://${NODRIFT}\\s+ssm\\s+error\\s+-\\s+-\\s+-\\s+-\\s+2$`, 'm'));
  t.match(r.stdout, new RegExp(`ssm://${NODRIFT}: ssm ${NODRIFT}: drift is not installed on the instance`));
  t.match(r.stdout, /\/etc\/ssh\/sshd_config/, 'the drifted host\'s report is printed');
  const json = await drift(sweepArgs(targetsFile, '--format', 'json'), { env });
  t.equal(json.code, 2);
  const out = JSON.parse(json.stdout) as { schema: string; exit: number; targets: Array<{ target: string; status: string; exit: number; report: { summary: { findings: number } } | null }> };
  t.equal(out.schema, 'drift.sweep/v1');
  t.same(out.targets.map((x) => [x.target, x.status, x.exit]), [[`ssm://${CLEAN}`, 'clean', 0], [`ssm://${DRIFTED}`, 'drifted', 1], [`ssm://${BIG}`, 'drifted', 1], [`ssm://${NODRIFT}`, 'error', 2]]);
  const two = join(work, 'two.txt');
  await writeFile(two, `ssm://${CLEAN}\nssm://${DRIFTED}\n`);
  const worst1 = await drift(sweepArgs(two), { env });
  t.equal(worst1.code, 1, 'without the failing target, the worst is 1');
  const one = join(work, 'one.txt');
  await writeFile(one, `ssm://${CLEAN}\n`);
  t.equal((await drift(sweepArgs(one), { env })).code, 0, 'all clean: 0');
});

t.test('an image id on a target\'s line that is not the one the host was judged against fails that target', async (t) => {
  const file = join(work, 'wrong-image.txt');
  await writeFile(file, `ssm://${CLEAN} img-other\n`);
  const r = await drift(sweepArgs(file), { env });
  t.equal(r.code, 2);
  t.match(r.stdout, /was judged against image img-sweep, but the targets file says img-other \(line 1\)/);
});

/** A collector for one test, with its admin token in a file and the image's baseline pushed. */
async function collectorWithBaseline(t: { teardown(fn: () => unknown): void }, name: string): Promise<{ collector: Awaited<ReturnType<typeof startCollector>>; tokenFile: string }> {
  const token = 'sweep-admin-token-0123456789';
  const collector = await startCollector(join(work, `${name}.db`), { adminToken: token });
  t.teardown(() => collector.close());
  const tokenFile = join(work, `${name}.token`);
  await writeFile(tokenFile, `${token}\n`, { mode: 0o600 });
  await must(['baseline', 'push', baselineFile, '--collector', collector.url, '--admin-token-file', tokenFile]);
  return { collector, tokenFile };
}

t.test('posting: whole manifests become the hosts\' reports in /v1/hosts, marked via ssm; one that did not fit is not posted and says so', async (t) => {
  const { collector, tokenFile } = await collectorWithBaseline(t, 'collector');
  const r = await drift(sweepArgs(targetsFile, '--collector', collector.url, '--admin-token-file', tokenFile), { env });
  t.equal(r.code, 2, r.stderr);
  t.match(r.stdout, /EXIT\s+POSTED$/m);
  t.match(r.stdout, new RegExp(`^ssm://${CLEAN}\\s.*\\s0\\s+yes$`, 'm'));
  t.match(r.stdout, new RegExp(`^ssm://${BIG}\\s.*\\s1\\s+no: manifest did not fit in SSM's 24,000-character output \\(use --ssm-output-s3 s3://BUCKET/PREFIX\\)$`, 'm'));
  t.match(r.stdout, new RegExp(`^ssm://${NODRIFT}\\s.*\\s2\\s+no: scan failed$`, 'm'));
  const hosts = await drift(['hosts', '--collector', collector.url, '--admin-token-file', tokenFile, '--format', 'json']);
  t.equal(hosts.code, 0, hosts.stderr);
  const list = (JSON.parse(hosts.stdout) as { hosts: Array<{ id: string; via: string; status: string; imageId: string | null; findings: number }> }).hosts;
  t.same(list.map((h) => [h.id, h.via, h.status, h.imageId]), [
    [`ssm:${CLEAN}`, 'ssm', 'clean', 'img-sweep'],
    [`ssm:${DRIFTED}`, 'ssm', 'drifted', 'img-sweep'],
  ]);
  const table = await drift(['hosts', '--collector', collector.url, '--admin-token-file', tokenFile]);
  t.match(table.stdout, /^HOST\s+ID\s+IMAGE\s+STATUS\s+FINDINGS\s+LAST SEEN\s+VIA\s+SNOWFLAKE$/m);
  t.match(table.stdout, new RegExp(`^web-1\\s+ssm:${CLEAN}\\s+img-sweep\\s+clean\\s+0\\s+\\S+\\s+ssm\\s`, 'm'), 'drift hosts shows how each host reports');
  const fleet = await drift(['scan', '--collector', collector.url, '--admin-token-file', tokenFile, '--fleet', '--format', 'json']);
  const cohorts = (JSON.parse(fleet.stdout) as { cohorts: Array<{ imageId: string; hosts: number; drifted: number }> }).cohorts;
  t.same(cohorts.map((c) => [c.imageId, c.hosts, c.drifted]), [['img-sweep', 2, 1]], 'agentless hosts form their image\'s cohort');
  // A second sweep reports again under the same ids (no duplicate hosts).
  const onlyClean = join(work, 'only-clean.txt');
  await writeFile(onlyClean, `ssm://${CLEAN}\n`);
  const again = await drift(sweepArgs(onlyClean, '--collector', collector.url, '--admin-token-file', tokenFile), { env });
  t.equal(again.code, 0);
  t.equal(collector.store.listHosts().length, 2);
});

t.test('--ssm-output-s3: every ssm manifest is read whole from S3 and posted, the big one too', async (t) => {
  const { collector, tokenFile } = await collectorWithBaseline(t, 'collector-s3');
  const moto = await startS3Output(t, ssm, 'drift-sweep-out');
  const r = await drift(sweepArgs(targetsFile, '--collector', collector.url, '--admin-token-file', tokenFile, '--ssm-output-s3', 's3://drift-sweep-out/sweeps', '--s3-endpoint', moto.endpoint), { env });
  t.equal(r.code, 2, r.stderr);
  t.match(r.stdout, new RegExp(`^ssm://${BIG}\\s+ssm\\s+drifted\\s.*\\s1\\s+yes$`, 'm'), 'the big host is posted');
  t.notMatch(r.stdout, /truncated/);
  t.match(r.stdout, new RegExp(`^ssm://${NODRIFT}\\s.*\\s2\\s+no: scan failed$`, 'm'));
  const big = collector.store.hostById(`ssm:${BIG}`);
  t.ok(big, 'the collector keeps the big host');
  const hosts = await drift(['hosts', '--collector', collector.url, '--admin-token-file', tokenFile, '--format', 'json']);
  const list = (JSON.parse(hosts.stdout) as { hosts: Array<{ id: string; via: string; status: string; findings: number }> }).hosts;
  t.same(list.map((h) => [h.id, h.via, h.status]), [[`ssm:${CLEAN}`, 'ssm', 'clean'], [`ssm:${DRIFTED}`, 'ssm', 'drifted'], [`ssm:${BIG}`, 'ssm', 'drifted']]);
  t.ok((list.find((h) => h.id === `ssm:${BIG}`)?.findings ?? 0) >= 400, 'the collector judged the whole manifest: every added file is a finding');
});

t.test('the agentless endpoint: admin token only, host id by scheme, never an agent\'s host', async (t) => {
  const token = 'sweep-admin-token-0123456789';
  const collector = await startCollector(join(work, 'collector2.db'), { adminToken: token });
  t.teardown(() => collector.close());
  const post = (body: unknown, auth = token) => fetch(`${collector.url}/v1/agentless/reports`, { method: 'POST', headers: { authorization: `Bearer ${auth}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  t.equal((await post({}, 'enroll-s3cret')).status, 401, 'the enrollment secret cannot post on behalf of a host');
  const wrongId = await post({ schema: 'drift.agentless-report/v1', via: 'ssm', report: { schema: 'drift.report-request/v1', seq: 1, collectedAt: 'x', hostId: 'ssh:web-1', host: { hostname: 'h', machineId: 'm' }, digests: { root: `sha256:${'0'.repeat(64)}` } } });
  t.equal(wrongId.status, 400);
  t.match(((await wrongId.json()) as { error: { message: string } }).error.message, /report\.hostId must be "ssm:"/);
  collector.store.enroll({ id: 'ssm:i-00000000000000009', hostname: 'agent', imageId: null, keyHash: Buffer.alloc(16), now: Date.now() });
  const m = { schema: 'drift.manifest/v1', host: { hostname: 'h', machineId: 'm' }, collectedAt: new Date().toISOString(), agent: { version: '0' }, digests: { root: 'sha256:' + '0'.repeat(64) }, unread: [] };
  const agentHost = await post({ schema: 'drift.agentless-report/v1', via: 'ssm', report: { schema: 'drift.report-request/v1', seq: 1, collectedAt: m.collectedAt, hostId: 'ssm:i-00000000000000009', host: m.host, digests: m.digests, manifest: m } });
  t.equal(agentHost.status, 409, 'a host enrolled by an agent is not overwritten by a sweep');
  const refused = await post({ schema: 'drift.agentless-report/v1', via: 'ssm', report: { schema: 'drift.report-request/v1', seq: 1, collectedAt: m.collectedAt, hostId: 'ssm:i-00000000000000008', host: m.host, digests: m.digests, manifest: m } });
  t.equal(refused.status, 422, 'digests that do not match the manifest are refused');
  t.equal(collector.store.hostById('ssm:i-00000000000000008'), undefined, 'and leave no empty host behind');
});

t.test('targets files: comments, ssh and ssm, and clear errors with line numbers', async (t) => {
  const ok = parseTargets('# x\nssm://i-0123456789abcdef0 ami-1\n\nssh://root@10.0.0.1:2222\nssh://web-2 img/v2 # why\n', 'f');
  t.same(ok.map((x) => [x.via, x.line, x.imageId ?? null]), [['ssm', 2, 'ami-1'], ['ssh', 4, null], ['ssh', 5, 'img/v2']]);
  const bad: Array<[string, RegExp]> = [
    ['ssm://i-1\n', /^f:1: f:1: "i-1" is not an instance id|^f:1: .*is not an instance id/],
    ['\n\nhttp://x\n', /^f:3: "http:\/\/x" is not a target; write ssh:\/\/\[user@\]host\[:port\] or ssm:\/\/i-…/],
    ['ssm://i-0123456789abcdef0 a b\n', /^f:1: .*write one target and at most an image id/],
    ['ssm://i-0123456789abcdef0 $(id)\n', /^f:1: "\$\(id\)" is not an image id/],
    ['ssh://a@b:99999\n', /^f:1: .*port 99999 is outside 1-65535/],
    ['ssm://i-0123456789abcdef0\nssm://i-0123456789abcdef0\n', /^f:2: ssm:\/\/i-0123456789abcdef0 is listed twice \(first at line 1\)/],
    ['# nothing\n', /^f: no targets/],
    [`${'x'.repeat(TARGETS_LIMITS.lineChars + 1)}\n`, /^f:1: line is 1025 characters, more than 1024/],
    ['\n'.repeat(TARGETS_LIMITS.lines + 1), /^f: 10002 lines, more than 10000/],
    ['ssm://i-0123456789abcdef0 \u001b[31mred\n', /^f:1: "\\u001b\[31mred" is not an image id/],
  ];
  for (const [text, want] of bad) t.throws(() => parseTargets(text, 'f'), { message: want }, JSON.stringify(text.slice(0, 40)));
  const huge = join(work, 'huge.txt');
  await writeFile(huge, Buffer.alloc(TARGETS_LIMITS.bytes + 1, 0x0a));
  const r = await drift(sweepArgs(huge), { env });
  t.equal(r.code, 2);
  t.match(r.stderr, /targets file .*huge\.txt is 1048577 bytes, more than 1048576; split the sweep/);
});

t.test('ssh targets go to the ssh collection (and need a baseline); the sweep goes on when it fails', async (t) => {
  const file = join(work, 'mixed.txt');
  await writeFile(file, `ssh://root@127.0.0.1:1\nssm://${CLEAN}\n`);
  const noBaseline = await drift(sweepArgs(file), { env });
  t.equal(noBaseline.code, 2);
  t.match(noBaseline.stderr, /ssh:\/\/ targets need --baseline FILE/);
  const r = await drift(sweepArgs(file, '--baseline', baselineFile), { env });
  t.equal(r.code, 2);
  t.match(r.stdout, /^ssh:\/\/root@127\.0\.0\.1:1\s+ssh\s+error\s.*2$/m);
  t.match(r.stdout, /^ssh:\/\/root@127\.0\.0\.1:1: .*(no SSH credentials|refused|unreachable)/m, 'the ssh failure is named');
  t.match(r.stdout, new RegExp(`^ssm://${CLEAN}\\s+ssm\\s+clean`, 'm'), 'the ssm target was scanned all the same');
  const conc = await drift(sweepArgs(file, '--concurrency', '0'), { env });
  t.equal(conc.code, 2);
  t.match(conc.stderr, /--concurrency must be a whole number from 1 to 64/);
});
