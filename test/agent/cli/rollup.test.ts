import t from 'tap';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { drift } from '../../helpers/run.js';

/**
 * Roll-ups as a user meets them: a package removed with the files it owned, and a new
 * folder tree, each read as one finding in text and markdown, every finding kept (and
 * linked by `cause`) in JSON.
 */

const work = await mkdtemp(join(tmpdir(), 'drift-rollup-'));
t.teardown(() => rm(work, { recursive: true, force: true }));
const root = join(work, 'root');
const state = join(work, 'state');
const rules = join(work, 'rules');
const TOOLS = Array.from({ length: 12 }, (_, i) => `/usr/bin/tool${String(i).padStart(2, '0')}`);

const status = (withTools: boolean): string => [
  'Package: base-files', 'Status: install ok installed', 'Architecture: amd64', 'Version: 12.4', 'Description: base', '',
  ...(withTools ? ['Package: ncurses-bin', 'Status: install ok installed', 'Architecture: amd64', 'Version: 6.4-4', 'Description: tools', ''] : []),
].join('\n');

async function put(path: string, content: string, mode = 0o644): Promise<void> {
  await mkdir(join(root, path, '..'), { recursive: true });
  await writeFile(join(root, path), content);
  await chmod(join(root, path), mode);
}

await mkdir(rules, { recursive: true });
await writeFile(join(rules, 'watch.yaml'), 'watch:\n  - path: /usr/bin/**\n  - path: /opt/**\n  - path: /etc/**\n');
await put('etc/os-release', 'ID=debian\n');
await put('var/lib/dpkg/status', status(true));
await put('var/lib/dpkg/info/base-files.list', '/.\n/etc\n/etc/os-release\n');
await put('var/lib/dpkg/info/ncurses-bin.list', ['/.', '/usr', '/usr/bin', ...TOOLS].join('\n') + '\n');
for (const tool of TOOLS) await put(tool.slice(1), `#!/bin/sh\necho ${tool}\n`, 0o755);
await mkdir(join(root, 'opt'), { recursive: true });

const common = ['--rules', rules, '--state-dir', state];
const baseline = join(work, 'baseline.json');
const made = await drift(['baseline', '--root', root, '--image-id', 'img-1', '--out', baseline, ...common]);
if (made.code !== 0) throw new Error(`drift baseline: ${made.stderr}`);

// The host drifts: ncurses-bin is purged (status entry, list and files gone), a vendor tree appears.
await put('var/lib/dpkg/status', status(false));
await rm(join(root, 'var/lib/dpkg/info/ncurses-bin.list'));
for (const tool of TOOLS) await rm(join(root, tool.slice(1)));
await put('opt/vendor/agent/bin/run', '#!/bin/sh\n', 0o755);
await put('opt/vendor/agent/etc/agent.conf', 'key=1\n');

const scan = (format: string) => drift(['scan', '--root', root, '--baseline', baseline, '--format', format, '--trust-dir', join(work, 'no-keys'), ...common]);

t.test('json keeps every finding and links each consequence to its root cause', async (t) => {
  const r = await scan('json');
  t.equal(r.code, 1, r.stderr);
  const report = JSON.parse(r.stdout) as { findings: Array<{ kind: string; key: string; change: string; cause?: { kind: string; key: string } }>; summary: { findings: number } };
  const pkg = report.findings.find((f) => f.kind === 'package');
  t.same(pkg && { key: pkg.key, change: pkg.change, cause: pkg.cause }, { key: 'dpkg:ncurses-bin:amd64', change: 'removed', cause: undefined });
  const tools = report.findings.filter((f) => TOOLS.includes(f.key));
  t.equal(tools.length, TOOLS.length, 'one finding per file the package owned');
  t.ok(tools.every((f) => f.change === 'removed' && f.cause?.kind === 'package' && f.cause.key === 'dpkg:ncurses-bin:amd64'), 'each names the package as its cause');
  const vendor = report.findings.filter((f) => f.key.startsWith('/opt/vendor'));
  t.same(vendor.map((f) => f.key), ['/opt/vendor', '/opt/vendor/agent', '/opt/vendor/agent/bin', '/opt/vendor/agent/bin/run', '/opt/vendor/agent/etc', '/opt/vendor/agent/etc/agent.conf']);
  t.same(vendor[0]?.cause, undefined, 'the new top folder is the cause');
  t.ok(vendor.slice(1).every((f) => f.cause?.kind === 'file' && f.cause.key === '/opt/vendor'), 'everything below it points at the top folder, not at its parent');
  t.equal(report.summary.findings, report.findings.length);
});

t.test('text: a summary first, then one finding per cause listing what followed from it', async (t) => {
  const r = await scan('text');
  t.equal(r.code, 1);
  const lines = r.stdout.split('\n');
  t.match(lines[0], /^drift: 19 findings \(/);
  t.match(lines[1], /^baseline sha256:[0-9a-f]{64} of image img-1: UNSIGNED$/);
  t.match(r.stdout, /\n {2}package: 1 removed\n {2}file: 6 added, 12 removed\n/, 'counts by kind and change');
  t.match(r.stdout, /\nworst:\n {2}high removed package dpkg:ncurses-bin:amd64 \(and 12 following from it\)\n {2}high added file \/opt\/vendor \(and 5 following from it\)\n/);
  t.match(r.stdout, /- package dpkg:ncurses-bin:amd64\n.*\n.*\n {4}12 files it owned went with it: -\/usr\/bin\/tool00, .*-\/usr\/bin\/tool09, and 2 more \(--format json lists every one\)\n/);
  t.match(r.stdout, /\+ file \/opt\/vendor\n.*\n.*\n {4}5 paths below it came with it: \+\/opt\/vendor\/agent, /);
  t.notMatch(r.stdout, /^ {2}- file \/usr\/bin\/tool/m, 'no consequence printed as a finding of its own');
  t.ok(r.stdout.indexOf('worst') < r.stdout.indexOf('\nHIGH (2)'), 'the summary comes before the findings');
});

t.test('markdown: the same roll-up, the path not repeated in the explanation', async (t) => {
  const r = await scan('markdown');
  t.equal(r.code, 1);
  t.match(r.stdout, /\n {2}- 12 files it owned went with it: /);
  t.notMatch(r.stdout, /`\/opt\/vendor`: \/opt\/vendor/, 'the key is not repeated after itself');
});

t.test('a consequence more severe than its cause is not hidden under it', async (t) => {
  const site = join(work, 'severe-rules');
  await mkdir(site, { recursive: true });
  await writeFile(join(site, 'policy.yaml'), 'policy:\n  - match: { kind: file, path: /opt/vendor/agent/bin/** }\n    severity: critical\n    action: replace\n');
  const r = await drift(['scan', '--root', root, '--baseline', baseline, '--rules', site, '--trust-dir', join(work, 'no-keys'), ...common]);
  t.equal(r.code, 1);
  t.match(r.stdout, /\nCRITICAL \(2\)\n {2}\+ file \/opt\/vendor\/agent\/bin\n(.*\n){2} {2}\+ file \/opt\/vendor\/agent\/bin\/run\n/, 'the critical ones are findings of their own');
  t.match(r.stdout, /\n {4}3 paths below it came with it: \+\/opt\/vendor\/agent, \+\/opt\/vendor\/agent\/etc, \+\/opt\/vendor\/agent\/etc\/agent\.conf\n/);
  const json = JSON.parse((await drift(['scan', '--root', root, '--baseline', baseline, '--rules', site, '--format', 'json', ...common])).stdout) as { findings: Array<{ key: string; cause?: { key: string } }> };
  t.equal(json.findings.find((f) => f.key === '/opt/vendor/agent/bin/run')?.cause?.key, '/opt/vendor', 'the JSON still names the cause');
});
