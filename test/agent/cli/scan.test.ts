import t from 'tap';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { driftBin } from '../../helpers/paths.js';
import { drift, run } from '../../helpers/run.js';

/** `drift scan` as a user runs it: exit codes, signatures, formats, colour. */

const work = await mkdtemp(join(tmpdir(), 'drift-scan-'));
t.teardown(() => rm(work, { recursive: true, force: true }));
const root = join(work, 'root');
const rules = join(work, 'rules');
const state = join(work, 'state');
await mkdir(join(root, 'etc'), { recursive: true });
await mkdir(rules);
await writeFile(join(root, 'etc', 'app.conf'), 'listen = 80\n');
await writeFile(join(rules, 'test.yaml'), 'watch:\n  - path: /etc/**\n    content: true\n');
const common = ['--rules', rules, '--state-dir', state];
// Setup steps throw rather than assert: tap ends a file whose top level goes idle after an assertion.
const setup = async (args: string[]): Promise<void> => {
  const r = await drift(args);
  if (r.code !== 0) throw new Error(`drift ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
};
await setup(['keygen', '--out', join(work, 'bake')]);
await setup(['keygen', '--out', join(work, 'other')]);
const baseline = join(work, 'baseline.json');
await setup(['baseline', '--root', root, '--image-id', 'img', '--sign-key', join(work, 'bake.key'), '--out', baseline, ...common]);

t.test('a signed baseline: the right key scans, another key or a tampered file is trouble', async (t) => {
  const ok = await drift(['scan', '--root', root, '--baseline', baseline, '--pubkey', join(work, 'bake.pub'), ...common]);
  t.equal(ok.code, 0, ok.stdout + ok.stderr);
  t.match(ok.stdout, /^drift: no drift on /);
  const wrong = await drift(['scan', '--root', root, '--baseline', baseline, '--pubkey', join(work, 'other.pub'), ...common]);
  t.equal(wrong.code, 2);
  t.match(wrong.stderr, /signed by key [0-9a-f]{16}, which is not among the trusted public keys/);
  const tampered = join(work, 'tampered.json');
  await writeFile(tampered, (await readFile(baseline, 'utf8')).replace('listen = 80', 'listen = 81'));
  const bad = await drift(['scan', '--root', root, '--baseline', tampered, '--pubkey', join(work, 'bake.pub'), ...common]);
  t.equal(bad.code, 2);
  t.match(bad.stderr, /does not verify/);
  t.equal(bad.stdout, '', 'nothing is reported from a baseline that is refused');
});

t.test('bad input is trouble with a one-line reason', async (t) => {
  const notJson = join(work, 'broken.json');
  await writeFile(notJson, '{"schema": ');
  const cases: Array<[string[], RegExp]> = [
    [['scan', '--root', root, ...common], /--baseline/],
    [['scan', '--root', root, '--baseline', notJson, ...common], /broken\.json is not valid JSON/],
    [['scan', '--root', root, '--baseline', join(work, 'missing.json'), ...common], /cannot read baseline .*missing\.json: ENOENT/],
    [['scan', '--root', root, '--baseline', baseline, '--format', 'xml', ...common], /--format must be one of text, json, markdown, junit/],
    [['scan', '--root', root, '--baseline', join(rules, 'test.yaml'), ...common], /not valid JSON/],
    [['scan', '--host', 'x'], /--collector/],
  ];
  for (const [args, reason] of cases) {
    const r = await drift(args);
    t.equal(r.code, 2, `${args.join(' ')} exits 2`);
    t.match(r.stderr.trim().split('\n')[0] ?? '', reason, r.stderr.trim());
  }
});

t.test('drift: exit 1 in every format, and a saved manifest compares the same', async (t) => {
  const host = join(work, 'host');
  await mkdir(join(host, 'etc'), { recursive: true });
  await writeFile(join(host, 'etc', 'app.conf'), 'listen = 8080\n');
  const outputs: Record<string, string> = {};
  for (const format of ['text', 'json', 'markdown', 'junit']) {
    const r = await drift(['scan', '--root', host, '--baseline', baseline, '--format', format, ...common]);
    t.equal(r.code, 1, `${format}: drift found`);
    outputs[format] = r.stdout;
  }
  t.match(outputs['text'], /drift: 1 finding \(1 medium\)/);
  t.match(outputs['text'], /^\s+\+listen = 8080$/m);
  const report = JSON.parse(outputs['json'] ?? '') as { summary: { findings: number }; findings: Array<{ key: string; change: string }> };
  t.same(report.findings.map((f) => `${f.change} ${f.key}`), ['modified /etc/app.conf']);
  t.match(outputs['markdown'], /```diff/);
  t.match(outputs['junit'], /<failure type="medium"/);

  // The same host as a saved manifest (a baseline of it is a manifest too).
  const saved = join(work, 'host-manifest.json');
  t.equal((await drift(['baseline', '--root', host, '--image-id', 'img', '--out', saved, ...common])).code, 0);
  const fromFile = await drift(['scan', '--manifest', saved, '--baseline', baseline, '--format', 'json', ...common]);
  t.equal(fromFile.code, 1);
  const again = JSON.parse(fromFile.stdout) as typeof report;
  t.same(again.findings, report.findings, 'same findings from the saved manifest');
});

t.test('colour only on a terminal, and never with NO_COLOR', async (t) => {
  const host = join(work, 'host');
  const cmd = `${process.execPath} ${driftBin} scan --root ${host} --baseline ${baseline} ${common.join(' ')}`;
  // script(1) gives the command a real pseudo-terminal.
  const { NO_COLOR: _inherited, ...env } = process.env;
  const tty = await run('script', ['-qec', cmd, '/dev/null'], { env: { ...env, TERM: 'xterm' } });
  t.match(tty.stdout, /\u001b\[/, 'ANSI colour on a TTY');
  const noColor = await run('script', ['-qec', cmd, '/dev/null'], { env: { ...env, TERM: 'xterm', NO_COLOR: '1' } });
  t.notMatch(noColor.stdout, /\u001b\[/, 'none with NO_COLOR');
  const piped = await drift(['scan', '--root', host, '--baseline', baseline, ...common], { env: { NO_COLOR: '' } });
  t.notMatch(piped.stdout, /\u001b\[/, 'none into a pipe');
});
