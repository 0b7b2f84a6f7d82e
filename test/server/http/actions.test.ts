import t from 'tap';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { loadRuleSet } from '../../../agent/rules/load.js';
import { compare } from '../../../agent/engine/compare.js';
import { buildApp } from '../../../server/http/app.js';
import { Store } from '../../../server/store/store.js';
import { FleetBuilder } from '../helpers/ledger.js';
import { drift } from '../../helpers/run.js';

const ENROLL = 'enroll-secret-0123456789';
const ADMIN = 'admin-token-0123456789abc';
const MIN = 60_000;
const rules = await loadRuleSet([]);
const auth = { authorization: `Bearer ${ADMIN}` };

async function setup(t: { teardown(fn: () => unknown): void }, clock?: { now: number }) {
  const dir = mkdtempSync(join(tmpdir(), 'drift-actions-http-'));
  const store = Store.open(join(dir, 'drift.db'));
  const app = buildApp({
    store, enrollSecret: ENROLL, adminToken: ADMIN, baselineKeys: [generateKeyPairSync('ed25519').publicKey], rules, compare,
    maxBody: 1024 * 1024, silentAfterMs: 15 * MIN, ...(clock ? { now: () => clock.now } : {}),
  });
  t.teardown(async () => { await app.close(); store.close(); rmSync(dir, { recursive: true, force: true }); });
  const fleet = new FleetBuilder(store);
  fleet.image('ami-1');
  return { app, store, fleet, dir };
}

t.test('plan, admit, update, cancel, pause and metrics over the admin API', async (t) => {
  const clock = { now: Date.parse('2026-06-01T10:00:00Z') };
  const { app, fleet } = await setup(t, clock);
  for (let i = 0; i < 10; i++) fleet.enroll(`h${i}`, 'ami-1', clock.now, `i-00${i}`);
  for (const dt of [0, 10, 20]) for (let i = 0; i < 10; i++) fleet.report(`h${i}`, clock.now + dt * MIN, i === 4 ? ['/etc/ssh/sshd_config'] : []);
  clock.now += 20 * MIN;

  t.equal((await app.inject({ method: 'GET', url: '/v1/actions' })).statusCode, 401, 'the ledger needs the admin token');
  const bad = await app.inject({ method: 'POST', url: '/v1/actions/plan', headers: auth, payload: { policy: { windows: ['* 99 * * *'] } } });
  t.equal(bad.statusCode, 400);
  t.match(bad.json(), { error: { code: 'DRIFT_ERR_USAGE', message: /policy.windows.*not a cron expression/ } });
  const unknownKey = await app.inject({ method: 'POST', url: '/v1/actions/plan', headers: auth, payload: { policy: { maxInflight: 9 } } });
  t.equal(unknownKey.statusCode, 400, 'a misspelt guard is refused, not silently defaulted');

  // Hostile admin bodies are bounded: lists, texts, provider names.
  for (const [payload, why] of [
    [{ provider: 'command', hosts: Array.from({ length: 101 }, (_, i) => `h${i}`) }, 'more than 100 hosts'],
    [{ provider: 'command', hosts: ['h1'], reason: 'x'.repeat(2001) }, 'a reason over 2,000 characters'],
    [{ provider: 'Command; rm -rf /' }, 'a provider name that is not a name'],
    [{ provider: 'command', force: 'x', extra: 1 }, 'an unknown key'],
  ] as const) {
    const r = await app.inject({ method: 'POST', url: '/v1/actions', headers: auth, payload });
    t.equal(r.statusCode, 400, why);
  }
  t.equal((await app.inject({ method: 'GET', url: '/v1/actions?limit=100000', headers: auth })).statusCode, 400, 'list limit bounded');
  t.equal((await app.inject({ method: 'GET', url: '/v1/actions?state=planned,evil', headers: auth })).statusCode, 400, 'states checked');

  const policy = { minHealthy: 0.8 };
  const plan = await app.inject({ method: 'POST', url: '/v1/actions/plan', headers: auth, payload: { policy, requireInstanceId: true } });
  t.equal(plan.statusCode, 200);
  t.match(plan.json(), { paused: false, admit: [{ hostId: 'h4', instanceId: 'i-004', cohort: 'ami-1|' }], blocked: [] });

  const admit = await app.inject({ method: 'POST', url: '/v1/actions', headers: auth, payload: { policy, provider: 'aws-autoscaling', actor: 'audit', requireInstanceId: true } });
  t.equal(admit.statusCode, 200);
  const [action] = (admit.json() as { admitted: { id: string; state: string; instanceId: string }[] }).admitted;
  t.match(action, { state: 'planned', instanceId: 'i-004' });
  if (!action) return;

  const wrong = await app.inject({ method: 'PATCH', url: `/v1/actions/${action.id}`, headers: auth, payload: { state: 'verified' } });
  t.equal(wrong.statusCode, 409);
  t.match(wrong.json(), { error: { code: 'DRIFT_ERR_CONFLICT', message: /is planned; it cannot become verified/ } });
  const huge = await app.inject({ method: 'PATCH', url: `/v1/actions/${action.id}`, headers: auth, payload: { state: 'started', progress: { x: 'y'.repeat(70_000) } } });
  t.equal(huge.statusCode, 413, 'progress is bounded');
  const started = await app.inject({ method: 'PATCH', url: `/v1/actions/${action.id}`, headers: auth, payload: { state: 'started', providerRef: 'surge-1', attempt: true } });
  t.match(started.json(), { state: 'started', providerRef: 'surge-1', attempts: 1 });
  t.equal((await app.inject({ method: 'GET', url: '/v1/actions/nope', headers: auth })).statusCode, 404);

  const replacement = await app.inject({ method: 'GET', url: `/v1/actions/${action.id}/replacement?instance=i-new`, headers: auth });
  t.same(replacement.json(), { state: 'waiting', hostId: null, findings: [] });
  fleet.enroll('n1', 'ami-1', clock.now, 'i-new');
  t.match((await app.inject({ method: 'GET', url: `/v1/actions/${action.id}/replacement?instance=i-new`, headers: auth })).json(), { state: 'clean', hostId: 'n1' });

  const paused = await app.inject({ method: 'PUT', url: '/v1/enforcement', headers: auth, payload: { paused: true, reason: 'game day' } });
  t.match(paused.json(), { paused: true, reason: 'game day' });
  const cancel = await app.inject({ method: 'POST', url: `/v1/actions/${action.id}/cancel`, headers: auth, payload: { reason: 'wrong host' } });
  t.match(cancel.json(), { state: 'cancelled' });
  const shown = (await app.inject({ method: 'GET', url: `/v1/actions/${action.id}`, headers: auth })).json() as { events: { state: string; note: string }[] };
  t.same(shown.events.map((e) => e.state), ['planned', 'started', 'cancelled']);
  t.match(shown.events[2]?.note, /wrong host/);

  const again = await app.inject({ method: 'POST', url: '/v1/actions', headers: auth, payload: { policy, provider: 'aws-autoscaling', actor: 'audit' } });
  t.match(again.json(), { admitted: [], blocked: [{ hostId: 'h4', blocked: [{ guard: 'paused' }] }] });
  const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
  t.match(metrics, /drift_actions_total\{provider="aws-autoscaling",result="cancelled"\} 1/);
  t.match(metrics, /drift_guard_blocks_total\{guard="paused"\} 1/);
  t.match(metrics, /drift_guard_blocks_total\{guard="breaker"\} 0/);
});

t.test('drift actions and drift replace, as an operator runs them', async (t) => {
  const { app, fleet, dir } = await setup(t);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  const tokenFile = join(dir, 'admin.token');
  writeFileSync(tokenFile, `${ADMIN}\n`, { mode: 0o600 });
  const now = Date.now();
  for (let i = 0; i < 5; i++) fleet.enroll(`h${i}`, 'ami-1', now);
  for (let i = 0; i < 5; i++) fleet.report(`h${i}`, now, i === 1 ? ['/etc/shadow'] : []);
  const base = ['--collector', url, '--admin-token-file', tokenFile];

  const blocked = await drift(['replace', 'h1', ...base, '--reason', 'looks odd']);
  t.equal(blocked.code, 1, 'held back by a guard: exit 1');
  t.match(blocked.stdout, /blocked: host-h1 \(h1\):\n  persistence: .*\n  min-healthy: /);

  const forced = await drift(['replace', 'h1', ...base, '--reason', 'confirmed compromise, ticket SEC-1', '--force', '--format', 'json']);
  t.equal(forced.code, 0, forced.stderr);
  const admitted = (JSON.parse(forced.stdout) as { admitted: { id: string; forced: string }[] }).admitted;
  t.equal(admitted[0]?.forced, 'confirmed compromise, ticket SEC-1');

  const list = await drift(['actions', ...base, 'list']);
  t.equal(list.code, 0, list.stderr);
  t.match(list.stdout, /^enforcement on\n/);
  t.match(list.stdout, /planned\s+host-h1 \(h1\)\s+any .*confirmed compromise/);
  t.match(list.stdout, /blocked\s+host-h1 \(h1\)\s+any .*looks odd — persistence:/);

  const show = await drift(['actions', ...base, 'show', admitted[0]?.id.slice(0, 8) ?? '']);
  t.equal(show.code, 0, show.stderr);
  t.match(show.stdout, /planned\s+admitted by force: confirmed compromise/);

  t.equal((await drift(['actions', ...base, 'pause', '--reason', 'freeze'])).code, 0);
  t.match((await drift(['actions', ...base, 'list'])).stdout, /^enforcement PAUSED: freeze/);
  t.equal((await drift(['actions', ...base, 'resume'])).code, 0);
  const cancel = await drift(['actions', ...base, 'cancel', admitted[0]?.id ?? '', '--reason', 'changed my mind']);
  t.match(cancel.stdout, /cancelled/);
  const late = await drift(['actions', ...base, 'cancel', admitted[0]?.id ?? '']);
  t.equal(late.code, 2);
  t.match(late.stderr, /409 DRIFT_ERR_CONFLICT: action .* is cancelled; it cannot become cancelled \(it is final\)/);
  const noToken = await drift(['actions', '--collector', url, 'list']);
  t.equal(noToken.code, 2);
  t.match(noToken.stderr, /--admin-token-file FILE is required/);
});
