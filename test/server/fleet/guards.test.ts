import t from 'tap';
import { checkWindows, evaluate, GuardPolicySchema, inWindow, type CandidateHost, type LedgerView } from '../../../server/fleet/guards.js';

const at = (iso: string): number => Date.parse(iso);

t.test('windows are cron minutes in UTC', async (t) => {
  t.ok(inWindow([], at('2026-06-06T03:00:00Z')), 'no windows: any time');
  t.ok(inWindow(['* 9-16 * * 1-5'], at('2026-06-01T09:00:00Z')), 'Monday 09:00');
  t.ok(inWindow(['* 9-16 * * 1-5'], at('2026-06-01T16:59:59Z')), 'Monday 16:59:59');
  t.notOk(inWindow(['* 9-16 * * 1-5'], at('2026-06-01T17:00:00Z')), 'Monday 17:00');
  t.notOk(inWindow(['* 9-16 * * 1-5'], at('2026-06-06T10:00:00Z')), 'Saturday');
  t.ok(inWindow(['30 2 * * *'], at('2026-06-06T02:30:30Z')), 'one minute a day');
  t.equal(checkWindows(['* 9-16 * * 1-5']), null);
  t.match(checkWindows(['* 9-16 * *']), /5-field cron expression/);
  t.match(checkWindows(['* 99 * * *']), /not a cron expression/);
});

t.test('the policy is strict and bounded', async (t) => {
  t.throws(() => GuardPolicySchema.parse({ maxPerHour: 0 }));
  t.throws(() => GuardPolicySchema.parse({ minHealthy: 1.5 }));
  t.throws(() => GuardPolicySchema.parse({ windows: Array(33).fill('* * * * *') }), 'at most 32 windows');
  t.throws(() => GuardPolicySchema.parse({ maxInflight: 2 }), 'a misspelt key is refused, not ignored');
});

t.test('admissions count against the budgets of the candidates after them', async (t) => {
  const host = (id: string, score: number): CandidateHost => ({
    hostId: id, hostname: id, instanceId: `i-${id}`, cohort: 'ami|', status: 'drifted', imageKnown: true, baselineVerified: true, score,
    findings: [{ kind: 'file', key: `/etc/${id}`, change: 'modified', firstSeen: 0, reports: 9 }],
  });
  const ledger: LedgerView = { paused: false, inFlight: new Map(), lastHour: 4, busyHosts: new Set(), lastActionAt: new Map(), breakers: new Map() };
  const e = evaluate({
    candidates: [host('a', 0.5), host('b', 0.99), host('c', 0.9)], cohorts: new Map([['ami|', { hosts: 100, silent: 0 }]]),
    fleetWide: new Map(), ledger, policy: GuardPolicySchema.parse({ maxInFlightPerCohort: 5, maxPerHour: 5 }), now: 3_600_000, requireInstanceId: true,
  });
  t.same(e.admit.map((d) => d.host.hostId), ['b'], 'the oddest host goes first and takes the last slot of the hour');
  t.same(e.blocked.map((d) => [d.host.hostId, d.blocked.map((b) => b.guard)]), [['c', ['per-hour']], ['a', ['per-hour']]]);
});
