import t from 'tap';
import type { Finding } from '../../../agent/protocol/finding.js';
import { buildReport, exitCodeOf } from '../../../agent/engine/report.js';
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
  t.same(r.summary, { findings: 2, bySeverity: { low: 1, medium: 0, high: 0, critical: 1 } });
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
