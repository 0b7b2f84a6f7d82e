import t from 'tap';
import { gzipSync } from 'node:zlib';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { repoRoot } from '../helpers/paths.js';
import { SSM_COMMANDS, SSM_COMMANDS_WHOLE } from '../../agent/remote/ssm.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { drift } from '../helpers/run.js';
import { startS3Output, startSsmServer, type SsmServer } from '../helpers/ssm-server.js';
import { MOTO_ENV } from '../helpers/moto.js';
import { formatVerdict, parseVerdict, VERDICT_MAX_CHARS, VERDICT_MAX_INFLATED, WHOLE_VERDICT_LIMITS } from '../../agent/cli/format/verdict.js';
import { buildReport } from '../../agent/engine/report.js';
import type { Finding } from '../../agent/protocol/finding.js';

/**
 * A verdict comes from another machine: hostile input. Bounded in size before and after
 * inflating, checked against its schema, and escaped when printed.
 */

const line = (value: unknown): string => `drift.verdict/v1 ${gzipSync(JSON.stringify(value)).toString('base64')}\n`;
const report = (findings: Finding[], target = 'host') => buildReport({ target, baseline: { imageId: 'img', digest: 'sha256:00', signature: { status: 'unsigned', keyId: null } }, findings, unread: [] });
const fileFinding = (key: string, diff: string): Finding => ({
  kind: 'file', key, change: 'modified', changed: ['sha256'], before: null, after: null, severity: 'medium', action: 'report', rule: null, explanation: `${key} changed`, diff,
});

/** An instance whose "drift" prints `output` and exits 1: what an attacker controlling it could print. */
const fakeInstance = (ssm: SsmServer, work: string) => async (id: string, output: string): Promise<void> => {
  const dir = join(work, id);
  await mkdir(dir);
  await writeFile(join(dir, 'verdict'), output);
  await writeFile(join(dir, 'drift'), `#!/bin/sh\ncat '${join(dir, 'verdict')}'\nexit 1\n`, { mode: 0o755 });
  ssm.instances.set(id, { path: `${dir}:/usr/bin:/bin` });
};

t.test('round trip, and a verdict over the cap is cut with the counts kept', async (t) => {
  const small = report([fileFinding('/etc/a', '-a\n+b\n')]);
  const v = parseVerdict(formatVerdict(small), 'test');
  t.same(v.report, JSON.parse(JSON.stringify(small)));
  t.same(v.truncated, { manifest: false, findings: 0, diffs: 0, unread: 0 });
  const many = report(Array.from({ length: 3000 }, (_, i) => fileFinding(`/etc/${i.toString(36)}-${Math.random().toString(36)}`, `+${Math.random().toString(36).repeat(40)}\n`)));
  const out = formatVerdict(many);
  t.ok(out.length <= VERDICT_MAX_CHARS, `${out.length} characters`);
  const cut = parseVerdict(out, 'test');
  t.equal(cut.report.summary.findings, 3000, 'the summary still counts every finding');
  t.ok(cut.truncated.findings > 0 && cut.truncated.diffs > 0);
  t.equal(cut.report.findings.length + cut.truncated.findings, 3000);
  t.ok(cut.report.findings.every((f) => (f.diff ?? '').length < 500), 'diffs are cut');
});

t.test('hostile verdicts are refused with the reason', async (t) => {
  const bomb = `drift.verdict/v1 ${gzipSync(Buffer.alloc(VERDICT_MAX_INFLATED + 1, 0x20)).toString('base64')}\n`;
  t.ok(bomb.length < 24_000, `the bomb is ${bomb.length} characters`);
  t.throws(() => parseVerdict(bomb, 'w'), { message: /^w: verdict inflates to more than 16777216 bytes; refused/ });
  t.throws(() => parseVerdict('x'.repeat(24_001), 'w'), { message: /^w: output is 24001 characters/ });
  t.throws(() => parseVerdict('hello\n', 'w'), { message: /holds no drift\.verdict\/v1 line/ });
  t.throws(() => parseVerdict('drift.verdict/v1 !!!\n', 'w'), { message: /not base64/ });
  t.throws(() => parseVerdict('drift.verdict/v1 aGVsbG8=\n', 'w'), { message: /not gzip/ });
  t.throws(() => parseVerdict(line({ schema: 'drift.verdict/v1', report: { ...report([]), summary: { findings: -1 } }, truncated: { manifest: false, findings: 0, diffs: 0, unread: 0 } }), 'w'), { message: /fails drift\.verdict\/v1 at report\.summary/ });
  t.throws(() => parseVerdict(line({ schema: 'drift.verdict/v1', report: report([]), truncated: { manifest: false, findings: 0, diffs: 0, unread: 0 }, manifest: { schema: 'nope' } }), 'w'), { message: /at manifest\./ });
  const text = JSON.stringify({ schema: 'drift.verdict/v1', report: { ...report([]), target: 'DEEP' }, truncated: { manifest: false, findings: 0, diffs: 0, unread: 0 } })
    .replace('"DEEP"', `${'['.repeat(100_000)}1${']'.repeat(100_000)}`);
  t.throws(() => parseVerdict(`drift.verdict/v1 ${gzipSync(text).toString('base64')}\n`, 'w'), { message: /^w: verdict nests JSON deeper than 32 levels/ });
});

t.test('the README lists the commands an SSM scan runs, as the code sends them', async (t) => {
  const readme = await readFile(join(repoRoot, 'README.md'), 'utf8');
  for (const c of [...SSM_COMMANDS, ...SSM_COMMANDS_WHOLE]) t.ok(readme.includes(`\n${c}\n`), c);
});

t.test('an instance answering a hostile verdict: exit 2, or printed escaped', async (t) => {
  const work = await mkdtemp(join(tmpdir(), 'drift-verdict-'));
  t.teardown(() => rm(work, { recursive: true, force: true }));
  const ssm = await startSsmServer();
  t.teardown(() => ssm.close());
  const fake = fakeInstance(ssm, work);
  await fake('i-0000000000000dd01', `drift.verdict/v1 ${gzipSync(Buffer.alloc(VERDICT_MAX_INFLATED + 1, 0x20)).toString('base64')}\n`);
  await fake('i-0000000000000dd02', formatVerdict(report([fileFinding('/etc/\u001b]0;pwned\u0007\u202eevil', '+\u001b[2J\n')], 'web-1\u001b[31m')));
  const scan = (id: string) => drift(['scan', '--ssm', id, '--endpoint', ssm.endpoint, '--region', 'us-east-1'], { env: MOTO_ENV });
  const bomb = await scan('i-0000000000000dd01');
  t.equal(bomb.code, 2);
  t.match(bomb.stderr, /ssm i-0000000000000dd01 \(command [0-9a-f-]+\): verdict inflates to more than 16777216 bytes; refused/);
  const esc = await scan('i-0000000000000dd02');
  t.equal(esc.code, 1, esc.stderr);
  t.notOk(/[\u001b\u0007\u202e]/.test(esc.stdout), 'no control characters or bidi overrides reach the terminal');
  t.match(esc.stdout, /\\x1b|\\u202e/, 'they are shown escaped');
});

t.test('a whole verdict has its own bounds, and one read from S3 is hostile input too', async (t) => {
  const long = `drift.verdict/v1 ${'A'.repeat(30_000)}\n`;
  t.throws(() => parseVerdict(long, 'w'), { message: /^w: output is 30018 characters, more than a verdict's 24000/ });
  t.throws(() => parseVerdict(long, 'w', WHOLE_VERDICT_LIMITS), { message: /^w: verdict is not gzip/ }, 'the S3 bound lets a long verdict through to the next checks');
  t.throws(() => parseVerdict(line({ a: 'x'.repeat(2000) }), 'w', { maxInflated: 1000 }), { message: /^w: verdict inflates to more than 1000 bytes; refused/ });
  const work = await mkdtemp(join(tmpdir(), 'drift-verdict-s3-'));
  t.teardown(() => rm(work, { recursive: true, force: true }));
  const ssm = await startSsmServer();
  t.teardown(() => ssm.close());
  const moto = await startS3Output(t, ssm, 'drift-hostile');
  const fake = fakeInstance(ssm, work);
  await fake('i-0000000000000ee01', 'drift.verdict/v1 !!!\n');
  await fake('i-0000000000000ee02', line({ schema: 'drift.verdict/v1', report: report([]), truncated: { manifest: false, findings: 0, diffs: 0, unread: 0 }, manifest: { schema: 'nope' } }));
  await fake('i-0000000000000ee03', formatVerdict(report([fileFinding('/etc/\u001b]0;pwned\u0007', '+x\n')])));
  const scan = (id: string) => drift(['scan', '--ssm', id, '--endpoint', ssm.endpoint, '--region', 'us-east-1', '--ssm-output-s3', 's3://drift-hostile/out', '--s3-endpoint', moto.endpoint], { env: MOTO_ENV });
  const b64 = await scan('i-0000000000000ee01');
  t.equal(b64.code, 2);
  t.match(b64.stderr, /ssm i-0000000000000ee01 \(command [0-9a-f-]+, s3:\/\/drift-hostile\/out\/[0-9a-f-]+\/i-0000000000000ee01\/awsrunShellScript\/0\.awsrunShellScript\/stdout\): verdict is not base64/);
  const schema = await scan('i-0000000000000ee02');
  t.equal(schema.code, 2);
  t.match(schema.stderr, /\): verdict fails drift\.verdict\/v1 at manifest\./);
  const esc = await scan('i-0000000000000ee03');
  t.equal(esc.code, 1, esc.stderr);
  t.notOk(/[\u001b\u0007]/.test(esc.stdout), 'no control characters reach the terminal');
});
