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

t.test('signatures are checked by default with the trust folder; every report says what was checked', async (t) => {
  const trust = join(work, 'keys');
  await mkdir(trust, { recursive: true });
  await writeFile(join(trust, 'bake.pub'), await readFile(join(work, 'bake.pub')));
  const scan = (args: string[]) => drift(['scan', '--root', root, ...args, ...common]);

  const verified = await scan(['--baseline', baseline, '--trust-dir', trust, '--format', 'json']);
  t.equal(verified.code, 0, verified.stderr);
  t.equal(verified.stderr, '', 'no warning for a verified baseline');
  const keyId = (JSON.parse(verified.stdout) as { baseline: { signature: { status: string; keyId: string } } }).baseline.signature;
  t.match(keyId, { status: 'verified', keyId: /^[0-9a-f]{16}$/ });
  const text = await scan(['--baseline', baseline, '--trust-dir', trust]);
  t.match(text.stdout.split('\n')[1], /^baseline sha256:[0-9a-f]{64} of image img: signature verified \(key [0-9a-f]{16}\)$/);

  const tampered = join(work, 'tampered-trust.json');
  await writeFile(tampered, (await readFile(baseline, 'utf8')).replace('listen = 80', 'listen = 81'));
  const bad = await scan(['--baseline', tampered, '--trust-dir', trust]);
  t.equal(bad.code, 2, 'a tampered baseline is refused without --pubkey');
  t.match(bad.stderr, /does not verify/);
  t.equal(bad.stdout, '');

  const unsignedFile = join(work, 'unsigned.json');
  await setup(['baseline', '--root', root, '--image-id', 'img', '--out', unsignedFile, ...common]);
  const stripped = await scan(['--baseline', unsignedFile, '--trust-dir', trust]);
  t.equal(stripped.code, 2, 'an unsigned baseline where keys are trusted is refused: a stripped signature looks just like it');
  t.match(stripped.stderr, /baseline is not signed, but public keys are configured/);

  const none = join(work, 'no-keys');
  const unverified = await scan(['--baseline', baseline, '--trust-dir', none, '--format', 'json']);
  t.equal(unverified.code, 0);
  t.match(unverified.stderr, /^drift: warning: baseline .* is signed by key [0-9a-f]{16}, but no trusted key is at hand to verify it/);
  t.match(JSON.parse(unverified.stdout), { baseline: { signature: { status: 'unverified', keyId: /^[0-9a-f]{16}$/ } } });
  const unsigned = await scan(['--baseline', unsignedFile, '--trust-dir', none, '--format', 'json']);
  t.same((JSON.parse(unsigned.stdout) as { baseline: { signature: unknown } }).baseline.signature, { status: 'unsigned', keyId: null });
  t.match((await scan(['--baseline', unsignedFile, '--trust-dir', none])).stdout.split('\n')[1], /: UNSIGNED$/);
});

t.test('keys are hostile input: a private key, a huge file, a flooded trust folder are refused by name', async (t) => {
  const scan = (args: string[]) => drift(['scan', '--root', root, '--baseline', baseline, ...args, ...common]);
  const priv = await scan(['--pubkey', join(work, 'bake.key')]);
  t.equal(priv.code, 2);
  t.match(priv.stderr, /^drift: .*bake\.key is a private key, not a public key: give the \.pub file drift keygen wrote next to it/);

  const huge = join(work, 'huge-keys');
  await mkdir(huge);
  await writeFile(join(huge, 'big.pub'), 'A'.repeat(1024 * 1024));
  const big = await scan(['--trust-dir', huge]);
  t.equal(big.code, 2);
  t.match(big.stderr, /big\.pub is larger than 16384 bytes: not a PEM key/);

  const flood = join(work, 'flood-keys');
  await mkdir(flood);
  const pem = await readFile(join(work, 'bake.pub'));
  for (let i = 0; i < 65; i++) await writeFile(join(flood, `k${i}.pub`), pem);
  const many = await scan(['--trust-dir', flood]);
  t.equal(many.code, 2);
  t.match(many.stderr, /holds 65 keys, more than 64/);
});

t.test('the image stamp decides which baseline applies: another image is refused before collecting', async (t) => {
  const stamped = join(work, 'stamped');
  await mkdir(join(stamped, 'etc'), { recursive: true });
  await writeFile(join(stamped, 'etc', 'app.conf'), 'listen = 80\n');
  await setup(['baseline', '--root', stamped, '--image-id', 'img-A', '--stamp', '--out', join(work, 'a.json'), ...common]);
  const other = join(work, 'b.json');
  await setup(['baseline', '--root', root, '--image-id', 'img-B', '--out', other, ...common]);
  const refused = await drift(['scan', '--root', stamped, '--baseline', other, '--trust-dir', join(work, 'no-keys'), ...common]);
  t.equal(refused.code, 2);
  t.match(refused.stderr, /this host was baked from image "img-A" \(.*stamped\/etc\/drift\/image\.json\), not "img-B" \(the image of .*b\.json\); scan with image img-A's baseline, or pass --any-image/);
  t.equal(refused.stdout, '', 'no report of the thousands of differences between two images');
  const forced = await drift(['scan', '--root', stamped, '--baseline', other, '--any-image', '--trust-dir', join(work, 'no-keys'), ...common]);
  t.not(forced.code, 2, forced.stderr);
  const own = await drift(['scan', '--root', stamped, '--baseline', join(work, 'a.json'), '--trust-dir', join(work, 'no-keys'), ...common]);
  t.equal(own.code, 0, own.stderr);
});

t.test('--format prometheus: a node_exporter textfile', async (t) => {
  const host = join(work, 'host');
  const before = Math.floor(Date.now() / 1000);
  const r = await drift(['scan', '--root', host, '--baseline', baseline, '--format', 'prometheus', '--trust-dir', join(work, 'keys'), ...common]);
  t.equal(r.code, 1, r.stderr);
  t.match(r.stdout, new RegExp(`^# HELP drift_findings .*\\n# TYPE drift_findings gauge\\n`));
  t.match(r.stdout, new RegExp(`\\ndrift_findings\\{target="${host.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}",image="img",severity="medium"\\} 1\\n`));
  t.match(r.stdout, /\ndrift_unread_paths\{[^}]*\} 0\n/);
  t.match(r.stdout, /\ndrift_baseline_verified\{[^}]*\} 1\n/);
  const at = Number(/\ndrift_last_scan_timestamp_seconds\{[^}]*\} (\d+)\n/.exec(r.stdout)?.[1]);
  t.ok(at >= before && at <= Math.floor(Date.now() / 1000), 'the scan time is now');
  for (const line of r.stdout.trimEnd().split('\n')) t.match(line, /^(# (HELP|TYPE) drift_\w+ .+|drift_\w+\{(\w+="(?:[^"\\]|\\.)*",?)+\} \d+)$/, `exposition format: ${line}`);
});

t.test('--next-steps says what to do next, and the rule it prints, pasted as is, silences the finding', async (t) => {
  const host = join(work, 'host');
  const keys = ['--trust-dir', join(work, 'keys')];
  const r = await drift(['scan', '--root', host, '--baseline', baseline, '--next-steps', ...keys, ...common]);
  t.equal(r.code, 1);
  t.match(r.stderr, /\nWhat next:\n {2}Exit code 1: drift found \(as diff\(1\): 0 no drift, 1 drift found, 2 trouble\)/);
  t.match(r.stderr, new RegExp(`The baseline is ${baseline.replace(/[.]/g, '\\.')} \\(image img, verified with key [0-9a-f]{16}\\)`));
  const full = /\n {4}npx drift scan (.*) --finding (\S+) --format json\n/.exec(r.stderr);
  t.ok(full, 'a command to see one finding in full');
  t.equal(full?.[2], '/etc/app.conf');
  const one = await drift(['scan', '--root', host, '--baseline', baseline, '--finding', '/etc/app.conf', '--format', 'json', ...keys, ...common]);
  t.equal(one.code, 1);
  t.match(JSON.parse(one.stdout), { findings: [{ key: '/etc/app.conf', before: { content: 'listen = 80\n' }, after: { content: 'listen = 8080\n' } }] });
  const none = await drift(['scan', '--root', host, '--baseline', baseline, '--finding', '/etc/nothing', ...keys, ...common]);
  t.equal(none.code, 2);
  t.match(none.stderr, /no finding has the key "\/etc\/nothing"/);

  const yaml = r.stderr.slice(r.stderr.indexOf('    policy:')).split('\n').filter((l) => l.startsWith('    ')).map((l) => l.slice(4)).join('\n');
  t.equal(yaml, 'policy:\n  - match: { kind: file, path: "/etc/app.conf" }\n    severity: low\n    action: ignore');
  const site = join(work, 'site-rules');
  await mkdir(site, { recursive: true });
  await writeFile(join(site, 'site.yaml'), `${yaml}\n`);
  const quiet = await drift(['scan', '--root', host, '--baseline', baseline, '--rules', site, ...keys, ...common]);
  t.equal(quiet.code, 0, `the pasted rule is valid and silences the finding: ${quiet.stderr}${quiet.stdout}`);
});
