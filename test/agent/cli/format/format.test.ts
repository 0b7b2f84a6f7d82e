import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { ManifestSchema, type Manifest } from '../../../../agent/protocol/manifest.js';
import { emptyRuleSet, type RuleSet } from '../../../../agent/protocol/rules.js';
import { compare } from '../../../../agent/engine/compare.js';
import { buildReport, exitCodeOf } from '../../../../agent/engine/report.js';
import type { Report } from '../../../../agent/protocol/finding.js';
import { format, FORMATS, useColor, type FormatName } from '../../../../agent/cli/format/index.js';
import { fixtures } from '../../../helpers/paths.js';

// UPDATE_GOLDEN=1 rewrites the golden files from the current output (review the git diff).
const UPDATE = process.env['UPDATE_GOLDEN'] === '1';

const load = (name: string): Manifest => ManifestSchema.parse(JSON.parse(readFileSync(fixtures('engine', name), 'utf8')));
const baseline = load('baseline.json');
const manifest = load('manifest.json');

const at = (line: number) => ({ source: { file: '/etc/drift/rules.d/site.yaml', line, col: 5 } });
const rules: RuleSet = {
  ...emptyRuleSet(),
  vars: { cloudInitUser: 'admin' },
  expect: [{ path: '/etc/passwd', change: 'modified', lines: ['^${cloudInitUser}:'], why: 'the cloud-init default user', ...at(3) }],
  policy: [
    { match: { kind: 'package' }, severity: 'high', action: 'replace', ...at(8) },
    { match: { kind: 'file', path: '/etc/**' }, severity: 'high', action: 'replace', ...at(11) },
    { match: { kind: 'file', path: '/etc/ssh/**' }, severity: 'critical', action: 'replace', ...at(14) },
    { match: { kind: 'file', path: '/usr/{bin,sbin,local/bin}/**' }, severity: 'critical', action: 'replace', ...at(17) },
    { match: { kind: 'process' }, severity: 'high', action: 'replace', ...at(20) },
    { match: { kind: 'port' }, severity: 'low', action: 'report', ...at(23) },
    { match: { kind: 'file', path: '/etc/alternatives/**' }, severity: 'low', action: 'report', ...at(26) },
    { match: { kind: 'file', path: '/etc/cron.daily/**', change: 'removed' }, severity: 'low', action: 'ignore', ...at(29) },
  ],
};

const target = 'web-1 (i-0123456789abcdef0)';
const image = { imageId: 'ami-0a1b2c3d4e5f67890', digest: `sha256:${'ab'.repeat(32)}` };
const drifted = buildReport({ target, baseline: image, findings: compare({ baseline, manifest, rules }), unread: manifest.unread });
const clean = buildReport({ target: 'bake-7f3a', baseline: image, findings: compare({ baseline, manifest: baseline, rules }), unread: [] });

const EXT: Record<FormatName, string> = { text: 'txt', json: 'json', markdown: 'md', junit: 'xml', prometheus: 'prom' };
const SCANNED = new Date('2026-11-25T00:00:00Z');

function golden(t: Test, name: string, actual: string): void {
  const path = fixtures('golden', name);
  if (UPDATE || !existsSync(path)) {
    if (!UPDATE) t.fail(`golden file ${name} was missing; written now, rerun to check`);
    writeFileSync(path, actual);
  }
  t.equal(actual, readFileSync(path, 'utf8'), `${name} matches its golden file (UPDATE_GOLDEN=1 to regenerate)`);
}

t.test('the drifted report holds findings of every kind, a diff, and no ignored finding', async (t) => {
  t.same([...new Set(drifted.findings.map((f) => f.kind))], ['package', 'file', 'process', 'port']);
  t.ok(drifted.findings.some((f) => f.diff !== undefined));
  t.notOk(drifted.findings.some((f) => f.key === '/etc/cron.daily/apt-compat'), 'action ignore is dropped by buildReport');
  t.same(drifted.summary.bySeverity, { low: 2, medium: 0, high: 7, critical: 4 });
  t.equal(drifted.summary.findings, drifted.findings.length);
  t.equal(exitCodeOf(drifted), 1);
  const none = { added: 0, removed: 0, modified: 0 };
  t.same(clean.summary, { findings: 0, bySeverity: { low: 0, medium: 0, high: 0, critical: 0 }, byKind: { package: none, file: none, process: none, port: none, coverage: none } });
  t.same(drifted.summary.byKind.package, { added: 1, removed: 1, modified: 1 });
  t.equal(exitCodeOf(clean), 0);
  t.same(drifted.unread, manifest.unread);
});

for (const fmt of FORMATS) {
  t.test(`${fmt}: golden files`, async (t) => {
    golden(t, `drifted.${EXT[fmt]}`, format(drifted, { format: fmt, color: false, now: SCANNED }));
    golden(t, `clean.${EXT[fmt]}`, format(clean, { format: fmt, color: false, now: SCANNED }));
    if (fmt === 'text') {
      golden(t, 'drifted.color.txt', format(drifted, { format: fmt, color: true }));
      golden(t, 'clean.color.txt', format(clean, { format: fmt, color: true }));
    }
  });
}

t.test('text: summary line, colour only when asked', async (t) => {
  const plain = format(drifted, { format: 'text', color: false });
  t.equal(plain.split('\n')[0], `drift: 13 findings (4 critical, 7 high, 2 low) on ${target} against image ami-0a1b2c3d4e5f67890`);
  t.notMatch(plain, /\u001b\[/);
  t.match(format(drifted, { format: 'text', color: true }), /\u001b\[1;31mCRITICAL \(4\)\u001b\[0m/);
  t.equal(format(clean, { format: 'text', color: false }), `drift: no drift on bake-7f3a against image ami-0a1b2c3d4e5f67890\nbaseline sha256:${'ab'.repeat(32)} of image ami-0a1b2c3d4e5f67890: signature NOT verified here\n`);
  t.ok(plain.indexOf('CRITICAL') < plain.indexOf('HIGH') && plain.indexOf('HIGH') < plain.indexOf('LOW'), 'critical first');
});

t.test('useColor: a TTY and no NO_COLOR', async (t) => {
  t.equal(useColor({ isTTY: true }, {}), true);
  t.equal(useColor({ isTTY: false }, {}), false);
  t.equal(useColor({}, {}), false);
  t.equal(useColor({ isTTY: true }, { NO_COLOR: '1' }), false);
  t.equal(useColor({ isTTY: true }, { NO_COLOR: '' }), true, 'an empty NO_COLOR does not count (no-color.org)');
  t.equal(useColor({ isTTY: true }, { TERM: 'dumb' }), false);
});

t.test('json: the report object, keys in canonical order, newline-terminated', async (t) => {
  const out = format(drifted, { format: 'json', color: false });
  t.ok(out.endsWith('}\n'));
  const parsed = JSON.parse(out) as Report;
  t.same(parsed, JSON.parse(JSON.stringify(drifted)));
  t.equal(parsed.schema, 'drift.report/v1');
  t.same(Object.keys(parsed), ['baseline', 'findings', 'schema', 'summary', 'target', 'unread']);
  t.same(Object.keys(parsed.findings[0] ?? {}), [...Object.keys(parsed.findings[0] ?? {})].sort());
});

t.test('markdown: a diff fence survives backticks in the diff', async (t) => {
  const tricky: Report = { ...drifted, findings: drifted.findings.map((f) => (f.diff ? { ...f, diff: '--- a/x\n+++ b/x\n@@ -1 +1 @@\n-```\n+````\n' } : f)) };
  const md = format(tricky, { format: 'markdown', color: false });
  t.match(md, /\n {2}`````diff\n/);
});

t.test('junit: escaped, and valid XML where xmllint is installed', async (t) => {
  const xml = format(drifted, { format: 'junit', color: false });
  t.match(xml, /name="added \/usr\/local\/bin\/&lt;x&amp;y&gt;"/);
  t.notMatch(xml, /<x&y>/);
  const nasty: Report = { ...clean, target: 'a"b\'c<d>&\u0001e' };
  const nastyXml = format(nasty, { format: 'junit', color: false });
  t.match(nastyXml, /name="no drift on a&quot;b&apos;c&lt;d&gt;&amp;\uFFFDe"/);
  const lint = spawnSync('xmllint', ['--noout', '-'], { input: xml });
  if (lint.error) {
    t.comment('xmllint not installed (libxml2-utils): well-formedness not checked by a parser');
    return;
  }
  t.equal(lint.status, 0, `xmllint: ${lint.stderr.toString()}`);
  t.equal(spawnSync('xmllint', ['--noout', '-'], { input: nastyXml }).status, 0);
  t.equal(spawnSync('xmllint', ['--noout', '-'], { input: format(clean, { format: 'junit', color: false }) }).status, 0);
});

t.test('prometheus: hostile target and image names cannot break out of their label', async (t) => {
  const nasty: Report = { ...clean, target: 'a"b\\c\nd\u0001e', baseline: { ...clean.baseline, imageId: 'img"} 1\ndrift_findings{x="y' } };
  const out = format(nasty, { format: 'prometheus', color: false, now: SCANNED });
  t.match(out, /\ndrift_findings\{target="a\\"b\\\\c\\nde",image="img\\"\} 1\\ndrift_findings\{x=\\"y",severity="low"\} 0\n/);
  t.equal(out.split('\n').filter((l) => l.startsWith('drift_findings{')).length, 4, 'one series per severity, no injected line');
});
