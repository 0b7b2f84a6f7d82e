import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Store } from '../../../server/store/store.js';
import { Ledger } from '../../../server/fleet/actions.js';
import { GuardPolicySchema, GUARDS, type GuardPolicy } from '../../../server/fleet/guards.js';
import { FleetBuilder } from '../helpers/ledger.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const T0 = Date.parse('2026-06-01T00:00:00Z');
const SILENT = 15 * MIN;

const tmp = (t: { teardown(fn: () => void): void }): string => {
  const dir = mkdtempSync(join(tmpdir(), 'drift-ledger-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
};

function open(t: { teardown(fn: () => void): void }, file?: string): { store: Store; ledger: Ledger; fleet: FleetBuilder; file: string } {
  const f = file ?? join(tmp(t), 'drift.db');
  const store = Store.open(f);
  t.teardown(() => store.close());
  return { store, ledger: new Ledger(store, { silentAfterMs: SILENT, verifiesBaselines: true }), fleet: new FleetBuilder(store), file: f };
}

const policy = (p: Partial<GuardPolicy> = {}): GuardPolicy => GuardPolicySchema.parse({ minReports: 2, minPersistMs: 5 * MIN, minHealthy: 0.5, ...p });
const AUDIT = { provider: 'command', actor: 'audit', requireInstanceId: false };

t.test('a snowflake is admitted only once its drift persisted; the plan names each guard', async (t) => {
  const { ledger, fleet } = open(t);
  fleet.image('ami-1');
  for (let i = 0; i < 10; i++) fleet.enroll(`h${i}`, 'ami-1', T0);
  for (let i = 0; i < 10; i++) fleet.report(`h${i}`, T0, i === 3 ? ['/etc/ssh/sshd_config'] : []);
  let plan = ledger.plan(T0, policy(), false);
  t.same(plan.admit, [], 'one report is not yet persistent drift');
  t.equal(plan.blocked.length, 1);
  t.same(plan.blocked[0]?.blocked.map((b) => b.guard), ['persistence']);
  t.match(plan.blocked[0]?.blocked[0]?.why, /1 report\(s\).*needs 2 reports/);

  for (let i = 0; i < 10; i++) fleet.report(`h${i}`, T0 + 10 * MIN, i === 3 ? ['/etc/ssh/sshd_config'] : []);
  plan = ledger.plan(T0 + 10 * MIN, policy(), false);
  t.same(plan.admit.map((a) => a.hostId), ['h3']);
  t.match(plan.admit[0]?.reason, /file \/etc\/ssh\/sshd_config modified/);
  const r = ledger.admit(T0 + 10 * MIN, { ...AUDIT, policy: policy() });
  t.same(r.admitted.map((a) => [a.hostId, a.state, a.cohort]), [['h3', 'planned', 'ami-1|']], 'enforce admits exactly what the plan said');
  const again = ledger.admit(T0 + 11 * MIN, { ...AUDIT, policy: policy() });
  t.same(again.admitted, [], 'never admitted twice');
  t.same(again.blocked[0]?.blocked.map((b) => b.guard), ['host-in-flight', 'cooldown', 'in-flight']);
  t.same(ledger.plan(T0 + 11 * MIN, policy({ maxInFlightPerCohort: 5, minHealthy: 0.9 }), false).blocked[0]?.blocked.map((b) => b.guard),
    ['host-in-flight', 'cooldown', 'min-healthy'], '10 hosts, one in flight: another would leave 8 of 10 healthy');
});

t.test('unknown images, unverified baselines, silent hosts, no instance id, pause and windows all block by name', async (t) => {
  const { ledger, fleet, store } = open(t);
  fleet.image('ami-signed');
  fleet.image('ami-unsigned', null);
  for (let i = 0; i < 5; i++) fleet.enroll(`s${i}`, 'ami-signed', T0);
  for (let i = 0; i < 5; i++) fleet.enroll(`u${i}`, 'ami-unsigned', T0);
  fleet.enroll('x0', 'ami-nobaseline', T0);
  const drift = (now: number): void => {
    for (let i = 0; i < 5; i++) fleet.report(`s${i}`, now, i === 0 ? ['/etc/a'] : i === 1 ? ['/etc/b'] : []);
    for (let i = 0; i < 5; i++) fleet.report(`u${i}`, now, i === 0 ? ['/etc/a'] : []);
  };
  drift(T0); drift(T0 + 10 * MIN);
  const now = T0 + 10 * MIN;
  const byHost = (p: ReturnType<Ledger['plan']>): Record<string, string[]> => Object.fromEntries(p.blocked.map((b) => [b.hostId, b.blocked.map((g) => g.guard)]));

  let plan = ledger.plan(now, policy(), true);
  t.same(byHost(plan)['u0'], ['unverified-baseline', 'no-instance']);
  t.same(byHost(plan)['s0'], ['no-instance']);
  t.equal(byHost(plan)['x0'], undefined, 'a host that never reported has no drift to replace for');

  // s1 goes silent: reported, not replaced.
  for (const id of ['s0', 's2', 's3', 's4']) fleet.report(id, now + 20 * MIN, id === 's0' ? ['/etc/a'] : []);
  plan = ledger.plan(now + 20 * MIN, policy(), false);
  t.same(byHost(plan)['s1']?.[0], 'silent');
  t.same(plan.admit.map((a) => a.hostId), ['s0']);

  ledger.setPaused(now, true, 'incident 7');
  plan = ledger.plan(now + 20 * MIN, policy(), false);
  t.equal(plan.paused, true);
  t.same(byHost(plan)['s0'], ['paused']);
  t.same(ledger.admit(now + 20 * MIN, { ...AUDIT, policy: policy() }).admitted, [], 'paused admits nothing');
  ledger.setPaused(now, false, null);

  // 2026-06-01 00:30 UTC is a Monday night: outside working hours.
  plan = ledger.plan(now + 20 * MIN, policy({ windows: ['* 9-16 * * 1-5'] }), false);
  t.same(byHost(plan)['s0'], ['window']);
  plan = ledger.plan(now + 20 * MIN, policy({ windows: ['* 9-16 * * 1-5', '* 0 * * *'] }), false);
  t.same(plan.admit.map((a) => a.hostId), ['s0'], 'a second window that matches opens it');
  t.ok(store.db.prepare('SELECT count(*) FROM actions').pluck().get() === 0, 'plans write nothing');
});

t.test('an operator names a host: guarded, journaled when blocked, --force bypasses all but one action per host', async (t) => {
  const { ledger, fleet } = open(t);
  fleet.image('ami-1');
  for (let i = 0; i < 4; i++) fleet.enroll(`h${i}`, 'ami-1', T0);
  for (let i = 0; i < 4; i++) fleet.report(`h${i}`, T0, []);
  const op = { provider: 'webhook', actor: 'operator', requireInstanceId: false, policy: policy(), reason: 'kernel CVE' };
  const r = ledger.admit(T0, { ...op, hosts: ['h1'] });
  t.same(r.admitted, []);
  t.same(r.blocked[0]?.blocked.map((b) => b.guard), ['no-drift']);
  const journal = ledger.list({ hostId: 'h1' });
  t.same(journal.map((a) => [a.state, a.actor, a.reason]), [['blocked', 'operator', 'kernel CVE']]);
  t.match(journal[0]?.error, /no-drift/);

  const forced = ledger.admit(T0, { ...op, hosts: ['h1'], force: 'replacing by hand after incident 9' });
  t.same(forced.admitted.map((a) => [a.hostId, a.state, a.forced]), [['h1', 'planned', 'replacing by hand after incident 9']]);
  const twice = ledger.admit(T0, { ...op, hosts: ['h1'], force: 'again' });
  t.same(twice.blocked[0]?.blocked.map((b) => b.guard), ['host-in-flight']);
  t.throws(() => ledger.admit(T0, { ...op, force: 'all of them' }), { code: 'DRIFT_ERR_USAGE' });
  t.throws(() => ledger.admit(T0, { ...op, hosts: ['nope'] }), { code: 'DRIFT_ERR_NOT_FOUND' });
});

t.test('state moves are checked, journaled, bounded; progress survives a reopen', async (t) => {
  const { ledger, fleet, file, store } = open(t);
  fleet.image('ami-1');
  for (let i = 0; i < 4; i++) fleet.enroll(`h${i}`, 'ami-1', T0);
  for (const at of [T0, T0 + 10 * MIN]) for (let i = 0; i < 4; i++) fleet.report(`h${i}`, at, i === 0 ? ['/etc/x'] : []);
  const [a] = ledger.admit(T0 + 10 * MIN, { ...AUDIT, policy: policy({ minHealthy: 0.5 }) }).admitted;
  if (!a) throw new Error('expected an admission');
  t.throws(() => ledger.update(T0, a.id, { state: 'verified' }), { code: 'DRIFT_ERR_CONFLICT', message: /planned; it cannot become verified/ });
  ledger.update(T0 + 11 * MIN, a.id, { state: 'started', providerRef: 'exec-1', progress: { step: 'surged', desired: 6 }, attempt: true });
  t.throws(() => ledger.update(T0, a.id, { state: 'started', progress: { big: 'x'.repeat(70_000) } }), { code: 'DRIFT_ERR_TOO_LARGE' });
  store.close();
  const again = open(t, file).ledger;
  const b = again.get(a.id);
  t.same([b?.state, b?.providerRef, b?.progress, b?.attempts, b?.startedAt], ['started', 'exec-1', { step: 'surged', desired: 6 }, 1, T0 + 11 * MIN]);
  again.update(T0 + 12 * MIN, a.id, { state: 'succeeded' });
  t.throws(() => again.cancel(T0, a.id, 'late'), { code: 'DRIFT_ERR_CONFLICT' });
  t.same(again.events(a.id).map((e) => e.state), ['planned', 'started', 'succeeded']);
});

t.test('two ledgers on one database never exceed a budget together', async (t) => {
  const first = open(t);
  const second = open(t, first.file);
  first.fleet.image('ami-1');
  for (let i = 0; i < 20; i++) first.fleet.enroll(`h${String(i).padStart(2, '0')}`, 'ami-1', T0);
  for (const at of [T0, T0 + 10 * MIN]) for (let i = 0; i < 20; i++) first.fleet.report(`h${String(i).padStart(2, '0')}`, at, i < 4 ? [`/etc/own-${i}`] : []);
  const p = policy({ maxInFlightPerCohort: 3, minHealthy: 0.5 });
  const a = first.ledger.admit(T0 + 10 * MIN, { ...AUDIT, policy: p, hosts: ['h00', 'h01'] });
  const b = second.ledger.admit(T0 + 10 * MIN, { ...AUDIT, policy: p });
  t.equal(a.admitted.length + b.admitted.length, 3, 'the cohort budget of 3 holds across both');
  t.same(b.blocked.map((x) => x.blocked.map((g) => g.guard)), [['host-in-flight', 'cooldown'], ['host-in-flight', 'cooldown'], ['in-flight']]);
});

t.test('verify: a clean replacement verifies; one drifted the same way fails and opens the breaker', async (t) => {
  const { ledger, fleet } = open(t);
  fleet.image('ami-1');
  for (let i = 0; i < 6; i++) fleet.enroll(`h${i}`, 'ami-1', T0);
  for (const at of [T0, T0 + 10 * MIN]) for (let i = 0; i < 6; i++) fleet.report(`h${i}`, at, i < 2 ? [`/etc/own-${i}`] : []);
  const p = policy({ maxInFlightPerCohort: 2, minHealthy: 0.5 });
  const admitted = ledger.admit(T0 + 10 * MIN, { ...AUDIT, policy: p }).admitted;
  t.equal(admitted.length, 2);
  for (const a of admitted) { ledger.update(T0 + 11 * MIN, a.id, { state: 'started' }); ledger.update(T0 + 12 * MIN, a.id, { state: 'succeeded' }); }
  const [a0, a1] = [admitted.find((a) => a.hostId === 'h0'), admitted.find((a) => a.hostId === 'h1')];
  fleet.enroll('n0', 'ami-1', T0 + 13 * MIN); fleet.report('n0', T0 + 13 * MIN, []);
  fleet.enroll('n1', 'ami-1', T0 + 13 * MIN); fleet.report('n1', T0 + 13 * MIN, ['/etc/own-1']);
  let v = ledger.verify(T0 + 14 * MIN);
  t.same(v.verified, [], 'the old hosts still report: not yet verified');
  t.same(v.tripped, [], 'n0 is clean; n1 shares the cohort with n0, so the clean one answers first');
  for (const h of ['h2', 'h3', 'h4', 'h5', 'n0', 'n1']) fleet.report(h, T0 + 30 * MIN, h === 'n1' ? ['/etc/own-1'] : []);
  v = ledger.verify(T0 + 30 * MIN);
  t.same(v.verified.map((a) => a.id).sort(), [a0?.id, a1?.id].sort(), 'old hosts silent and a clean new host of the cohort');
  t.same(ledger.breakers(), []);

  // A second round whose only new host drifts the same way.
  fleet.enroll('z', 'ami-1', T0 + 31 * MIN);
  for (const at of [T0 + 31 * MIN, T0 + 40 * MIN]) fleet.report('z', at, ['/etc/z']);
  const [az] = ledger.admit(T0 + 40 * MIN, { ...AUDIT, policy: p }).admitted;
  if (!az) throw new Error('expected z admitted');
  ledger.update(T0 + 41 * MIN, az.id, { state: 'started' });
  ledger.update(T0 + 42 * MIN, az.id, { state: 'succeeded' });
  fleet.enroll('z2', 'ami-1', T0 + 43 * MIN); fleet.report('z2', T0 + 43 * MIN, ['/etc/z']);
  v = ledger.verify(T0 + 43 * MIN);
  t.same(v.tripped.map((a) => [a.id, a.state]), [[az.id, 'failed']]);
  t.match(ledger.breakers()[0], { cohort: 'ami-1|', actionId: az.id, reason: /drifted the same way \(file \/etc\/z modified\)/ });
  fleet.report('n1', T0 + 44 * MIN, ['/etc/own-1']);
  fleet.report('n1', T0 + 55 * MIN, ['/etc/own-1']);
  const plan = ledger.plan(T0 + 55 * MIN, p, false);
  t.ok(plan.blocked.every((b) => b.blocked.some((g) => g.guard === 'breaker')), 'an open breaker holds the whole cohort');
  t.ok(ledger.closeBreaker('ami-1|'));
});

t.test('drift storm: fleet-wide drift replaces nothing; 20 snowflakes over a simulated day stay within every budget', async (t) => {
  const { ledger, fleet, store } = open(t);
  fleet.image('ami-1');
  const ids = Array.from({ length: 50 }, (_, i) => `h${String(i).padStart(2, '0')}`);
  for (const id of ids) fleet.enroll(id, 'ami-1', T0);
  const p = policy({ maxInFlightPerCohort: 2, maxPerHour: 5, minHealthy: 0.9, cooldownMs: 6 * HOUR });

  // Every host drifts the same way: fleet-wide, a rebake, never a replacement.
  for (const at of [T0, T0 + 10 * MIN, T0 + 20 * MIN]) for (const id of ids) fleet.report(id, at, ['/etc/ssl/openssl.cnf']);
  const storm = ledger.admit(T0 + 20 * MIN, { ...AUDIT, policy: p });
  t.equal(storm.admitted.length, 0, 'zero replacements for fleet-wide drift');
  t.equal(storm.blocked.length, 50);
  t.ok(storm.blocked.every((b) => b.blocked[0]?.guard === 'fleet-wide'), 'each names the fleet-wide guard');

  // 20 of 50 drift each in its own way; the rest are clean again (the image was rebaked).
  const own = new Set(ids.slice(0, 20));
  const live = new Set(ids);
  let next = 0;
  const seen = { maxInFlight: 0, maxHour: 0, minHealthy: 1, replaced: 0, blockedUnnamed: 0 };
  const started: number[] = [];
  for (let now = T0 + HOUR; now <= T0 + 25 * HOUR; now += 5 * MIN) {
    for (const id of live) fleet.report(id, now, own.has(id) ? [`/etc/own/${id}`] : []);
    // Actions take 20 minutes: then the old host is gone and a clean one replaces it.
    for (const a of ledger.list({ states: ['planned', 'started'] })) {
      if (a.state === 'planned') { ledger.update(now, a.id, { state: 'started' }); started.push(now); continue; }
      if (now - (a.startedAt ?? now) >= 20 * MIN) {
        ledger.update(now, a.id, { state: 'succeeded' });
        live.delete(a.hostId);
        own.delete(a.hostId);
        const fresh = `n${next++}`;
        fleet.enroll(fresh, 'ami-1', now);
        fleet.report(fresh, now, []);
        live.add(fresh);
        seen.replaced++;
      }
    }
    ledger.verify(now);
    const r = ledger.admit(now, { ...AUDIT, policy: p });
    for (const b of r.blocked) if (b.blocked.length === 0 || !b.blocked.every((g) => (GUARDS as readonly string[]).includes(g.guard))) seen.blockedUnnamed++;
    const flying = ledger.list({ states: ['planned', 'started'] }).length;
    seen.maxInFlight = Math.max(seen.maxInFlight, flying);
    const inHour = Number(store.db.prepare(`SELECT count(*) FROM actions WHERE created_at > ? AND state != 'blocked'`).pluck().get(now - HOUR));
    seen.maxHour = Math.max(seen.maxHour, inHour);
    const hosts = store.listHosts().filter((h) => live.has(h.id) || ledger.list({ hostId: h.id, states: ['planned', 'started'] }).length > 0);
    const unhealthy = flying + hosts.filter((h) => h.lastSeen === null || now - h.lastSeen > SILENT).length;
    seen.minHealthy = Math.min(seen.minHealthy, (hosts.length - unhealthy) / hosts.length);
  }
  t.equal(seen.replaced, 20, 'every snowflake was replaced within the day');
  t.ok(seen.maxInFlight <= 2, `never more than 2 in flight (saw ${seen.maxInFlight})`);
  t.ok(seen.maxHour <= 5, `never more than 5 admitted in any hour (saw ${seen.maxHour})`);
  t.ok(seen.minHealthy >= 0.9, `the cohort never fell under 90% healthy (saw ${seen.minHealthy})`);
  t.equal(seen.blockedUnnamed, 0, 'every blocked candidate names its guard');
  t.equal(ledger.list({ states: ['verified'], limit: 1000 }).length, 20, 'every replacement verified');
});
