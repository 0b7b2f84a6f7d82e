import t from 'tap';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { drift } from '../helpers/run.js';
import { instanceDrift, startS3Output, startSsmServer, SSM_STDOUT_MAX } from '../helpers/ssm-server.js';
import { MOTO_ENV } from '../helpers/moto.js';
import { rootListing } from '../helpers/sshd.js';
import { SSM_COMMANDS, SSM_COMMANDS_WHOLE } from '../../agent/remote/ssm.js';

/**
 * `drift scan --ssm` with the real @aws-sdk/client-ssm against a local server speaking
 * SSM's JSON 1.1 protocol, which really runs the commands it receives with `sh -c` on an
 * "instance" whose / is a root folder this test builds (its drift is the built one).
 */

const work = await mkdtemp(join(tmpdir(), 'drift-ssm-'));
t.teardown(() => rm(work, { recursive: true, force: true }));
const setup = async (args: string[]): Promise<void> => {
  const r = await drift(args);
  if (r.code !== 0) throw new Error(`drift ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
};

/** A baked root: etc/app.conf watched with content, its baseline at etc/drift/baseline.json, stamped. */
async function bakedRoot(name: string, bake = true): Promise<string> {
  const root = join(work, name);
  await mkdir(join(root, 'etc', 'drift'), { recursive: true });
  await writeFile(join(root, 'etc', 'app.conf'), 'listen = 80\n');
  if (bake) {
    await setup(['baseline', '--root', root, '--image-id', 'img-ssm', '--out', join(root, 'etc/drift/baseline.json'), '--stamp',
      '--rules', rules, '--state-dir', join(work, `${name}-bake-state`)]);
  }
  return root;
}

const rules = join(work, 'rules');
await mkdir(rules);
await writeFile(join(rules, 'test.yaml'), 'watch:\n  - path: /etc/**\n    content: true\n');
const root = await bakedRoot('instance');
const bare = await bakedRoot('no-baseline', false);

const ssm = await startSsmServer();
t.teardown(() => ssm.close());
const HOST_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const GOOD = 'i-0123456789abcdef0';
const NO_DRIFT = 'i-0000000000000aaa1';
const NO_BASELINE = 'i-0000000000000bbb2';
// The instance's state folder is inside its root, as /var/lib/drift is on a host; an earlier
// scan there left a stat cache, as the instance's own agent would.
const goodState = join(root, 'var/lib/drift');
await mkdir(goodState, { recursive: true });
await drift(['scan', '--root', root, '--baseline', join(root, 'etc/drift/baseline.json'), '--state-dir', goodState, '--trust-dir', join(root, 'etc/drift/keys')]);
ssm.instances.set(GOOD, { path: `${await instanceDrift(join(work, 'bin-good'), root, goodState)}:${HOST_PATH}` });
ssm.instances.set(NO_DRIFT, { path: HOST_PATH });
ssm.instances.set(NO_BASELINE, { path: `${await instanceDrift(join(work, 'bin-bare'), bare, join(work, 'state-bare'))}:${HOST_PATH}` });

const env = { ...MOTO_ENV };
const scan = (id: string, ...more: string[]) => drift(['scan', '--ssm', id, '--endpoint', ssm.endpoint, '--region', 'us-east-1', ...more], { env });

t.test('a clean instance: exit 0, and the request is AWS-RunShellScript with the fixed commands for that instance', async (t) => {
  const before = ssm.commands.size;
  const r = await scan(GOOD);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /^drift: no drift on /);
  t.equal(ssm.malformed.length, 0, ssm.malformed.join('; '));
  t.equal(ssm.commands.size, before + 1, 'one command sent');
  const cmd = [...ssm.commands.values()].at(-1);
  t.equal(cmd?.document, 'AWS-RunShellScript');
  t.equal(cmd?.instanceId, GOOD);
  t.same(cmd?.commands, [...SSM_COMMANDS]);
  t.match(cmd?.commands.join('\n'), /drift scan --read-only --baseline \/etc\/drift\/baseline\.json --format verdict$/);
  t.equal(cmd?.outputS3, undefined, 'no S3 output without --ssm-output-s3');
  t.notOk(cmd?.commands.join('\n').includes(GOOD), 'the instance id is not interpolated into the commands');
  t.ok(ssm.requests.some((q) => q.target === 'AmazonSSM.GetCommandInvocation'), 'polled with GetCommandInvocation');
});

t.test('the scan writes nothing on the instance: its root, state folder included, lists the same before and after', async (t) => {
  const before = await rootListing(root);
  t.match(before, /^var\/lib\/drift\t/m, 'the listing covers the state folder');
  t.ok(before.split('\n').some((l) => l.startsWith('var/lib/drift/')), 'which holds what an earlier scan left');
  const clean = await scan(GOOD);
  t.equal(clean.code, 0, clean.stderr);
  t.equal(await rootListing(root), before, 'hashes, modes, owners, sizes and mtimes unchanged');
  // The flag the instance runs, locally: no state folder is even made.
  const local = ['scan', '--root', root, '--baseline', join(root, 'etc/drift/baseline.json'), '--trust-dir', join(root, 'etc/drift/keys'), '--state-dir', join(work, 'ro-state')];
  const ro = await drift([...local, '--read-only']);
  t.equal(ro.code, 0, ro.stderr);
  t.equal(existsSync(join(work, 'ro-state')), false, 'drift scan --read-only made no state folder');
  // After first boot (a machine-id): a read-only scan pins nothing, so its report claims no pin time.
  await writeFile(join(root, 'etc', 'machine-id'), '0123456789abcdef0123456789abcdef\n');
  t.teardown(() => rm(join(root, 'etc', 'machine-id'), { force: true }));
  const booted = await drift([...local, '--read-only', '--format', 'json']);
  t.equal((JSON.parse(booted.stdout) as { firstBoot?: unknown }).firstBoot, undefined, booted.stderr);
  t.equal(existsSync(join(work, 'ro-state')), false, 'and wrote no pins');
  const pinning = await drift([...local.slice(0, -1), join(work, 'rw-state'), '--format', 'json']);
  t.match(JSON.parse(pinning.stdout) as unknown, { firstBoot: { pinnedAt: String } }, 'a scan that may write pins says when it pinned');
  await rm(join(root, 'etc', 'machine-id'), { force: true });
  const repin = await drift([...local, '--read-only', '--repin']);
  t.equal(repin.code, 2);
  t.match(repin.stderr, /--repin writes pins; --read-only writes nothing/);
  const whole = await drift([...local, '--whole-verdict']);
  t.equal(whole.code, 2);
  t.match(whole.stderr, /--whole-verdict goes with --format verdict/);
  const remote = await scan(GOOD, '--read-only');
  t.equal(remote.code, 2);
  t.match(remote.stderr, /--ssm and --targets always run read-only/);
});

t.test('the AWS SDK\'s Node.js version warning is not printed; the operator may still ask for it', async (t) => {
  const quiet = await scan(GOOD);
  t.equal(quiet.code, 0, quiet.stderr);
  t.notMatch(quiet.stderr, /NodeVersionSupportWarning/);
  const asked = await drift(['scan', '--ssm', GOOD, '--endpoint', ssm.endpoint, '--region', 'us-east-1'], { env: { ...env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'false' } });
  t.equal(asked.code, 0, asked.stderr);
  if (Number(process.versions.node.split('.')[0]) < 22) t.match(asked.stderr, /NodeVersionSupportWarning/, 'the SDK\'s own switch decides; drift only sets it when unset');
});

t.test('a drifted instance: exit 1, the same findings in every format as a local scan', async (t) => {
  await writeFile(join(root, 'etc', 'app.conf'), 'listen = 8080\n');
  t.teardown(() => writeFile(join(root, 'etc', 'app.conf'), 'listen = 80\n'));
  const text = await scan(GOOD);
  t.equal(text.code, 1, text.stderr);
  t.match(text.stdout, /^\s+\+listen = 8080$/m);
  const json = await scan(GOOD, '--format', 'json');
  t.equal(json.code, 1);
  const report = JSON.parse(json.stdout) as { schema: string; findings: Array<{ change: string; key: string }>; truncated?: unknown };
  t.equal(report.schema, 'drift.report/v1');
  t.same(report.findings.map((f) => `${f.change} ${f.key}`), ['modified /etc/app.conf']);
  t.equal(report.truncated, undefined, 'a verdict that fits is not marked truncated');
  const local = await drift(['scan', '--root', root, '--baseline', join(root, 'etc/drift/baseline.json'), '--format', 'json', '--state-dir', join(work, 'state-local'), '--trust-dir', join(root, 'etc/drift/keys')]);
  t.equal(local.code, 1);
  const localReport = JSON.parse(local.stdout) as { findings: unknown[] };
  t.same(report.findings, localReport.findings, 'the findings equal a local scan of the same root');
});

t.test('a verdict that would exceed 24,000 characters comes back truncated and says so', async (t) => {
  const big = join(root, 'etc', 'big');
  await mkdir(big);
  t.teardown(() => rm(big, { recursive: true, force: true }));
  // Incompressible names and contents: 1,500 added files cannot fit in 24,000 characters.
  for (let i = 0; i < 1500; i++) await writeFile(join(big, randomBytes(12).toString('hex')), randomBytes(48).toString('base64'));
  const r = await scan(GOOD, '--format', 'json');
  t.equal(r.code, 1, r.stderr);
  const cmd = [...ssm.commands.values()].at(-1);
  t.ok(cmd && cmd.fullStdout <= SSM_STDOUT_MAX, `the instance printed ${cmd?.fullStdout} characters, within SSM's 24,000`);
  const report = JSON.parse(r.stdout) as { summary: { findings: number }; findings: unknown[]; truncated: { findings: number } };
  t.ok(report.summary.findings >= 1500, `the summary counts every finding (${report.summary.findings})`);
  t.ok(report.truncated.findings > 0, `${report.truncated.findings} findings left out, and the report says so`);
  t.equal(report.findings.length + report.truncated.findings, report.summary.findings, 'kept + left out = all');
  const text = await scan(GOOD);
  t.equal(text.code, 1);
  t.match(text.stdout, /truncated: the verdict had to fit in SSM's 24,000 characters of output: \d+ least severe findings left out/);
});

t.test('--ssm-output-s3: SSM writes the whole output to S3, and the whole report is read from there', async (t) => {
  const moto = await startS3Output(t, ssm, 'drift-ssm-out');
  const s3 = moto.s3;
  const big = join(root, 'etc', 'big');
  await mkdir(big);
  t.teardown(() => rm(big, { recursive: true, force: true }));
  for (let i = 0; i < 1500; i++) await writeFile(join(big, randomBytes(12).toString('hex')), randomBytes(48).toString('base64'));
  const before = await rootListing(root);
  const s3Args = ['--ssm-output-s3', 's3://drift-ssm-out/runs/drift/', '--s3-endpoint', moto.endpoint];
  const r = await scan(GOOD, '--format', 'json', ...s3Args);
  t.equal(r.code, 1, r.stderr);
  t.equal(await rootListing(root), before, 'still nothing written on the instance');
  const cmd = [...ssm.commands.values()].at(-1);
  t.same(cmd?.commands, [...SSM_COMMANDS_WHOLE]);
  t.same(cmd?.outputS3, { bucket: 'drift-ssm-out', prefix: 'runs/drift' }, 'SendCommand names the bucket and the prefix (without its trailing slash)');
  t.ok(cmd && cmd.fullStdout > SSM_STDOUT_MAX, `the instance printed ${cmd?.fullStdout} characters, more than SSM's 24,000`);
  const key = `runs/drift/${cmd?.id ?? '?'}/${GOOD}/awsrunShellScript/0.awsrunShellScript/stdout`;
  t.equal(cmd?.s3Keys[0], key, 'the output went where the SSM agent puts it');
  const object = await s3.send(new GetObjectCommand({ Bucket: 'drift-ssm-out', Key: key }));
  const whole = (await object.Body?.transformToString()) ?? '';
  t.equal(whole.length, cmd?.fullStdout, 'the object is the whole output');
  t.match(whole, /^drift\.verdict\/v1 [A-Za-z0-9+/]+={0,2}\n$/);
  const report = JSON.parse(r.stdout) as { summary: { findings: number }; findings: unknown[]; truncated?: unknown };
  t.ok(report.summary.findings >= 1500, `${report.summary.findings} findings`);
  t.equal(report.findings.length, report.summary.findings, 'every finding is in the report');
  t.equal(report.truncated, undefined, 'nothing was cut');
  const text = await scan(GOOD, ...s3Args);
  t.equal(text.code, 1, text.stderr);
  t.notMatch(text.stdout, /truncated:/);
  const noBucket = await scan(GOOD, '--ssm-output-s3', 's3://drift-no-such-bucket/x', '--s3-endpoint', moto.endpoint);
  t.equal(noBucket.code, 2);
  t.match(noBucket.stderr, /ssm i-0123456789abcdef0: s3:\/\/drift-no-such-bucket\/x\/[0-9a-f-]+\/i-0123456789abcdef0\/awsrunShellScript\/0\.awsrunShellScript\/stdout: cannot read the command's output: (NoSuchBucket|NoSuchKey)/);
  for (const [bad, why] of [['s3://', /is not s3:\/\/BUCKET\/PREFIX/], ['s3://Bad_Bucket/x', /is not s3:\/\/BUCKET\/PREFIX/], ['s3://bucket/a/../b', /no empty, \. or \.\. parts/], ['https://bucket/x', /is not s3:\/\/BUCKET\/PREFIX/]] as const) {
    const u = await scan(GOOD, '--ssm-output-s3', bad);
    t.equal(u.code, 2, bad);
    t.match(u.stderr, why, bad);
  }
  const lone = await scan(GOOD, '--s3-endpoint', moto.endpoint);
  t.equal(lone.code, 2);
  t.match(lone.stderr, /--s3-endpoint goes with --ssm-output-s3/);
});

t.test('an instance without drift, or without its baseline: exit 2 naming what is missing', async (t) => {
  const none = await scan(NO_DRIFT);
  t.equal(none.code, 2);
  t.match(none.stderr, /ssm i-0000000000000aaa1: drift is not installed on the instance \(no drift on its PATH\).*install the drift-agent package/);
  t.equal(none.stdout, '');
  const bareScan = await scan(NO_BASELINE);
  t.equal(bareScan.code, 2);
  t.match(bareScan.stderr, /drift is installed but cannot use the baked baseline \/etc\/drift\/baseline\.json.*ENOENT/);
});

t.test('an unknown instance, a bad id, no region: exit 2 with the reason', async (t) => {
  const unknown = await scan('i-0fffffffffffffff0');
  t.equal(unknown.code, 2);
  t.match(unknown.stderr, /SendCommand AWS-RunShellScript failed: InvalidInstanceId/);
  const bad = await scan('i-123; rm -rf /');
  t.equal(bad.code, 2);
  t.match(bad.stderr, /is not an instance id/);
  const noRegion = await drift(['scan', '--ssm', GOOD, '--endpoint', ssm.endpoint], { env: { ...env, AWS_REGION: '', AWS_DEFAULT_REGION: '' } });
  t.equal(noRegion.code, 2);
  t.match(noRegion.stderr, /no AWS region: pass --region/);
});

t.test('--timeout bounds the wait for an instance that never answers', async (t) => {
  const HANG = 'i-0000000000000ccc3';
  const hangDir = join(work, 'bin-hang');
  await mkdir(hangDir);
  // A drift that never ends: the scan must give up at its --timeout, not poll forever.
  await writeFile(join(hangDir, 'drift'), '#!/bin/sh\nexec sleep 30\n', { mode: 0o755 });
  ssm.instances.set(HANG, { path: `${hangDir}:${HOST_PATH}` });
  const r = await scan(HANG, '--timeout', '2s');
  t.equal(r.code, 2);
  t.match(r.stderr, /no result within 2000 ms \(command [0-9a-f-]+ may still run/);
});
