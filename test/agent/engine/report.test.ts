import t from 'tap';
import type { Finding } from '../../../agent/protocol/finding.js';
import { buildReport, exitCodeOf, linkCauses } from '../../../agent/engine/report.js';
import { describeModeChange } from '../../../agent/engine/explain.js';

const finding = (key: string, severity: Finding['severity'], action: Finding['action']): Finding => ({
  kind: 'file', key, change: 'added', changed: [], before: null,
  after: { type: 'file', mode: '0644', uid: 0, gid: 0 }, severity, action, rule: null, explanation: `${key} added`,
});

t.test('a report counts every severity, drops ignored findings, keeps unread', async (t) => {
  const r = buildReport({
    target: 'web-1',
    baseline: { imageId: 'ami-1', digest: `sha256:${'1'.repeat(64)}` },
    findings: [finding('/a', 'critical', 'replace'), finding('/b', 'low', 'report'), finding('/c', 'high', 'ignore')],
    unread: [{ path: '/root', reason: 'EACCES' }],
  });
  t.equal(r.schema, 'drift.report/v1');
  t.same(r.findings.map((f) => f.key), ['/a', '/b']);
  const none = { added: 0, removed: 0, modified: 0 };
  t.same(r.summary, { findings: 2, bySeverity: { low: 1, medium: 0, high: 0, critical: 1 }, byKind: { package: none, file: { ...none, added: 2 }, process: none, port: none, coverage: none } });
  t.same(r.baseline.signature, { status: 'unverified', keyId: null }, 'a report never claims a verified baseline by default');
  t.same(r.unread, [{ path: '/root', reason: 'EACCES' }]);
  t.equal(exitCodeOf(r), 1);
  const onlyIgnored = buildReport({ target: 'x', baseline: { imageId: 'i', digest: 'd' }, findings: [finding('/c', 'high', 'ignore')], unread: [] });
  t.equal(exitCodeOf(onlyIgnored), 0, 'ignored findings are not drift');
});

t.test('mode changes name the special bits gained and lost', async (t) => {
  t.equal(describeModeChange('0755', '4755'), 'mode 0755 → 4755 (setuid gained)');
  t.equal(describeModeChange('2755', '0755'), 'mode 2755 → 0755 (setgid lost)');
  t.equal(describeModeChange('0777', '1777'), 'mode 0777 → 1777 (sticky gained)');
  t.equal(describeModeChange('4755', '2755'), 'mode 4755 → 2755 (setuid lost, setgid gained)');
  t.equal(describeModeChange('0644', '0600'), 'mode 0644 → 0600');
});

const file = (key: string, change: Finding['change'], owner?: string): Finding => ({
  kind: 'file', key, change, changed: [], before: change === 'added' ? null : { type: 'file', mode: '0644', uid: 0, gid: 0, ...(owner ? { owner } : {}) },
  after: change === 'removed' ? null : { type: 'file', mode: '0644', uid: 0, gid: 0, ...(owner ? { owner } : {}) },
  severity: 'medium', action: 'report', rule: null, explanation: `${key} ${change}`,
});
const pkg = (key: string, change: Finding['change']): Finding => ({
  kind: 'package', key, change, changed: [], before: null, after: null, severity: 'high', action: 'replace', rule: null, explanation: key,
});

t.test('linkCauses: files of a package with a finding, paths below a new or removed folder, nothing else', async (t) => {
  const linked = linkCauses([
    pkg('dpkg:ncurses-bin:amd64', 'removed'),
    pkg('dpkg:libc6:amd64', 'modified'),
    file('/usr/bin/clear', 'removed', 'dpkg:ncurses-bin'),
    file('/usr/lib/x86_64-linux-gnu/libc.so.6', 'modified', 'dpkg:libc6:amd64'),
    file('/etc/ssh/sshd_config', 'modified', 'dpkg:openssh-server'),
    file('/opt/a', 'added'), file('/opt/a/b', 'added'), file('/opt/a/b/c', 'added'),
    file('/srv/gone', 'removed'), file('/srv/gone/x', 'removed'), file('/srv/kept/y', 'removed'),
    file('/opt/a/b/changed', 'modified'),
  ]);
  const causes = Object.fromEntries(linked.map((f) => [f.key, f.cause ? `${f.cause.kind} ${f.cause.key}` : null]));
  t.same(causes, {
    'dpkg:ncurses-bin:amd64': null,
    'dpkg:libc6:amd64': null,
    '/usr/bin/clear': 'package dpkg:ncurses-bin:amd64',
    '/usr/lib/x86_64-linux-gnu/libc.so.6': 'package dpkg:libc6:amd64',
    '/etc/ssh/sshd_config': null,
    '/opt/a': null,
    '/opt/a/b': 'file /opt/a',
    '/opt/a/b/c': 'file /opt/a',
    '/srv/gone': null,
    '/srv/gone/x': 'file /srv/gone',
    '/srv/kept/y': null,
    '/opt/a/b/changed': null,
  });
});

t.test("linkCauses: a folder's own package cause is the root cause; a stale cause from the wire is replaced", async (t) => {
  const linked = linkCauses([
    pkg('dpkg:vendor:amd64', 'added'),
    file('/opt/vendor', 'added', 'dpkg:vendor'),
    file('/opt/vendor/unowned', 'added'),
    { ...file('/etc/motd', 'modified'), cause: { kind: 'package', key: 'dpkg:forged:amd64' } },
  ]);
  t.same(linked.map((f) => f.cause ?? null), [null, { kind: 'package', key: 'dpkg:vendor:amd64' }, { kind: 'package', key: 'dpkg:vendor:amd64' }, null]);
});

t.test('linkCauses: 4,000 nested new folders all name the topmost one', async (t) => {
  const deep = Array.from({ length: 4000 }, (_, i) => `/d${'/x'.repeat(i)}`);
  const linked = linkCauses(deep.map((k) => file(k, 'added')));
  t.equal(linked.filter((f) => f.cause?.key === '/d').length, 3999);
});
