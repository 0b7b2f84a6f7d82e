import t from 'tap';
import { createServer, type IncomingMessage } from 'node:http';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { enforcePass, reportPass, silentPass, verifyPass } from '../../../server/audit/passes.js';
import { parseAuditConfig } from '../../../server/audit/config.js';
import { auditWorld, MIN, seedFleet } from './helpers.js';

const GUARDS = { minReports: 2, minPersistMs: 5 * MIN, minHealthy: 0.8 };

t.test('dry-run is the default; enforce then does exactly what the plan said', async (t) => {
  const w = await auditWorld(t);
  seedFleet(w, 10, { 2: ['/etc/ssh/sshd_config'], 7: ['/usr/bin/sudo'] });
  const log = join(w.dir, 'calls.log');
  const provider = { kind: 'command', argv: ['/bin/sh', '-c', `{ cat; echo; env | grep ^DRIFT_ | sort; } >> ${log}`] };

  const dry = await w.deps({ guards: { ...GUARDS, maxInFlightPerCohort: 1 }, provider });
  t.equal(dry.cfg.mode, 'dry-run', 'no mode: dry-run');
  const plan = await enforcePass(dry);
  t.same(plan.wouldReplace.map((p) => p.hostId), ['h2'], 'one per cohort in flight: the first candidate');
  t.same(plan.blocked.map((b) => [b.hostId, b.blocked.map((g) => g.guard)]), [['h7', ['in-flight']]]);
  t.same(w.ledger.list(), [], 'a dry run writes nothing to the ledger');

  const live = await w.deps({ mode: 'enforce', guards: { ...GUARDS, maxInFlightPerCohort: 1 }, provider });
  const done = await enforcePass(live);
  t.same(done.done.map((a) => [a.hostId, a.state]), [['h2', 'succeeded']], 'the plan, carried out');
  t.same(done.blocked, plan.blocked);
  const calls = readFileSync(log, 'utf8');
  t.match(calls, /"schema":"drift.action\/v1"/);
  t.match(calls, /"hostId":"h2"/);
  t.match(calls, /DRIFT_HOSTNAME=host-h2\nDRIFT_HOST_ID=h2\nDRIFT_INSTANCE_ID=i-0002/);
  const events = w.ledger.events(done.done[0]?.id ?? '').map((e) => e.state);
  t.same(events, ['planned', 'started', 'succeeded'], 'every transition journaled');
});

t.test('command failures: a refusal fails at once, a timeout and exit 75 are retried within limits, never run twice at once', async (t) => {
  const w = await auditWorld(t);
  seedFleet(w, 10, { 1: ['/etc/a'], 5: ['/etc/b'], 8: ['/etc/c'] });
  const count = join(w.dir, 'count');
  writeFileSync(count, '');
  const script = `echo "$DRIFT_HOST_ID $DRIFT_ATTEMPT" >> ${count}; case $DRIFT_HOST_ID in h1) echo "terraform: state locked" >&2; exit 3;; h5) exit 75;; h8) sleep 30;; esac`;
  const d = await w.deps({
    mode: 'enforce', guards: { ...GUARDS, maxInFlightPerCohort: 3, minHealthy: 0.5 },
    provider: { kind: 'command', argv: ['/bin/sh', '-c', script], timeout: '300ms' }, retry: { attempts: 3, backoff: '1s' },
  });
  const r = await enforcePass(d);
  const by = Object.fromEntries(r.done.map((a) => [a.hostId, a]));
  t.equal(by['h1']?.state, 'failed');
  t.match(by['h1']?.error, /^command: command \/bin\/sh exited 3: terraform: state locked$/);
  t.equal(by['h1']?.attempts, 1, 'a refusal is not retried');
  t.equal(by['h5']?.state, 'failed');
  t.match(by['h5']?.error, /exited 75.*gave up after 3 attempt\(s\)/);
  t.equal(by['h8']?.state, 'failed');
  t.match(by['h8']?.error, /timed out after 300 ms and was killed.*gave up after 3/);
  const lines = readFileSync(count, 'utf8').trim().split('\n').sort();
  t.same(lines, ['h1 1', 'h5 1', 'h5 2', 'h5 3', 'h8 1', 'h8 2', 'h8 3'], 'one run per attempt, attempts counted');
  const again = await enforcePass(d);
  t.same(again.done, [], 'failed actions are not taken up again');
  t.ok(again.blocked.every((b) => b.blocked.some((g) => g.guard === 'cooldown')), 'their hosts are in cooldown');
});

t.test('webhook: signed, retried on 5xx and 429, refused on 4xx, a replay refused by the receiver', async (t) => {
  const w = await auditWorld(t);
  seedFleet(w, 10, { 3: ['/etc/a'], 6: ['/etc/b'] });
  const secret = 'webhook-secret-0123456789';
  writeFileSync(join(w.dir, 'hook.secret'), `${secret}\n`, { mode: 0o600 });
  const seen = new Set<string>();
  const got: { action: string; status: number }[] = [];
  const attempts = new Map<string, number>();
  const srv = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const ts = String(req.headers['x-drift-timestamp']);
      const sig = String(req.headers['x-drift-signature']);
      const want = `sha256=${createHmac('sha256', secret).update(`${ts}.${body}`).digest('hex')}`;
      const answer = (status: number): void => { got.push({ action: String(req.headers['x-drift-action-id']), status }); res.writeHead(status).end(); };
      if (sig.length !== want.length || !timingSafeEqual(Buffer.from(sig), Buffer.from(want))) return answer(401);
      if (seen.has(sig)) return answer(409);
      seen.add(sig);
      const a = JSON.parse(body) as { id: string; hostId: string };
      if (a.id !== req.headers['x-drift-action-id']) return answer(400);
      const n = (attempts.get(a.id) ?? 0) + 1;
      attempts.set(a.id, n);
      if (a.hostId === 'h6') return answer(422);
      return answer(n === 1 ? 503 : n === 2 ? 429 : 202);
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => srv.close(() => r())));
  const url = `http://127.0.0.1:${(srv.address() as AddressInfo).port}/drift`;
  const d = await w.deps({
    mode: 'enforce', guards: { ...GUARDS, maxInFlightPerCohort: 2, minHealthy: 0.5 },
    provider: { kind: 'webhook', url, secretFile: join(w.dir, 'hook.secret') }, retry: { attempts: 4, backoff: '2s' },
  });
  const r = await enforcePass(d);
  const by = Object.fromEntries(r.done.map((a) => [a.hostId, a]));
  t.equal(by['h3']?.state, 'succeeded');
  t.equal(by['h3']?.attempts, 3, '503, then 429, then 202');
  t.equal(by['h6']?.state, 'failed');
  t.match(by['h6']?.error, /answered 422$/);
  t.equal(by['h6']?.attempts, 1);
  t.notOk(got.some((g) => g.status === 401), 'every request was signed with the secret');

  // A captured request sent again is refused by the receiver (same timestamp and signature).
  const body = JSON.stringify({ id: 'x', hostId: 'h3' });
  const ts = '1780000000';
  const headers = { 'content-type': 'application/json', 'x-drift-timestamp': ts, 'x-drift-signature': `sha256=${createHmac('sha256', secret).update(`${ts}.${body}`).digest('hex')}`, 'x-drift-action-id': 'x' };
  t.equal((await fetch(url, { method: 'POST', headers, body })).status, 503, 'the first delivery reaches the receiver');
  t.equal((await fetch(url, { method: 'POST', headers, body })).status, 409, 'the replay is refused');
});

t.test('config: strict, with clear errors', async (t) => {
  const base = { collector: 'http://127.0.0.1:1', adminTokenFile: '/x', provider: { kind: 'command', argv: ['/bin/true'] } };
  t.throws(() => parseAuditConfig({ ...base, mode: 'yes' }, 'a.yaml'), { code: 'DRIFT_ERR_CONFIG', message: /^a.yaml: mode: / });
  t.throws(() => parseAuditConfig({ ...base, guards: { maxInflight: 1 } }, 'a.yaml'), { message: /a.yaml: guards: unknown key maxInflight/ });
  t.throws(() => parseAuditConfig({ ...base, schedules: { enforce: '*/5 * *' } }, 'a.yaml'), { message: /schedules.enforce: schedule .* must be a 5-field cron expression/ });
  t.throws(() => parseAuditConfig({ ...base, provider: { kind: 'ftp' } }, 'a.yaml'), { message: /provider.kind/ });
  t.throws(() => parseAuditConfig({ ...base, provider: { kind: 'command', argv: [] } }, 'a.yaml'), { message: /provider.argv/ });
  t.throws(() => parseAuditConfig({ ...base, retry: { attempts: 100 } }, 'a.yaml'), { message: /retry.attempts/ });
  t.equal(parseAuditConfig(base, 'a.yaml').retry.backoff, 5000);
});

t.test('verify, silent and report passes: rebake line, actions, blocked and silent hosts in markdown and JSON', async (t) => {
  const w = await auditWorld(t);
  w.fleet.image('ami-1');
  const t0 = w.clock.now;
  for (let i = 0; i < 10; i++) w.fleet.enroll(`h${i}`, 'ami-1', t0, `i-${i}`);
  for (const dt of [0, 10, 20]) for (let i = 0; i < 10; i++) if (!(i === 9 && dt > 0)) w.fleet.report(`h${i}`, t0 + dt * MIN, i < 7 ? ['/etc/ssl/openssl.cnf'] : []);
  w.clock.now = t0 + 20 * MIN;
  const d = await w.deps({ guards: GUARDS, provider: { kind: 'command', argv: ['/bin/true'] }, silent: { interval: '5m', multiple: 3 } });
  const s = await silentPass(d);
  t.same(s.silent.map((h) => h.id), ['h9'], 'the host that stopped reporting 20 minutes ago is silent (3 × 5m)');
  t.same((await verifyPass(d)).verified, []);
  const { report, files } = await reportPass(d);
  t.same(report.rebake, ['rebake image ami-1: file /etc/ssl/openssl.cnf modified on 7 hosts (70%)']);
  t.same(files.map((f) => f.replace(/.*\./, '')), ['md', 'json']);
  const md = readFileSync(files[0] as string, 'utf8');
  t.match(md, /## Rebake\n- rebake image ami-1: file \/etc\/ssl\/openssl.cnf modified on 7 hosts/);
  t.match(md, /## Blocked\n- host-h\d \(h\d\): fleet-wide/);
  t.match(md, /## Silent\n- host-h9 \(h9\)/);
  t.same(JSON.parse(readFileSync(files[1] as string, 'utf8')).schema, 'drift.audit-report/v1');
  t.same(readdirSync(join(w.dir, 'reports')).filter((f) => f.endsWith('.tmp')), [], 'no half-written files');
});

t.test('webhook: a receiver that never answers times out, is retried within limits, then the action fails', async (t) => {
  const w = await auditWorld(t);
  seedFleet(w, 10, { 4: ['/etc/a'] });
  writeFileSync(join(w.dir, 'hook.secret'), 'webhook-secret-0123456789\n', { mode: 0o600 });
  let requests = 0;
  const srv = createServer(() => { requests++; /* never answers */ });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => { srv.closeAllConnections(); srv.close(() => r()); }));
  const d = await w.deps({
    mode: 'enforce', guards: GUARDS, retry: { attempts: 2, backoff: '1s' },
    provider: { kind: 'webhook', url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}/`, secretFile: join(w.dir, 'hook.secret'), timeout: '200ms' },
  });
  const r = await enforcePass(d);
  t.equal(r.done[0]?.state, 'failed');
  t.match(r.done[0]?.error, /webhook: webhook http:\/\/127.0.0.1:\d+\/: no answer within 200 ms \(gave up after 2 attempt\(s\)\)/);
  t.equal(requests, 2, 'one request per attempt');
});

t.test('one audit at a time: an action another audit holds a live lease on is left alone until the lease runs out', async (t) => {
  const w = await auditWorld(t);
  seedFleet(w, 10, { 3: ['/etc/a'] });
  const log = join(w.dir, 'runs.log');
  const d = await w.deps({ mode: 'enforce', guards: GUARDS, provider: { kind: 'command', argv: ['/bin/sh', '-c', `echo "$DRIFT_HOST_ID" >> ${log}`] } });
  const [a] = w.ledger.admit(w.clock.now, { policy: d.cfg.guards, provider: 'command', actor: 'audit', requireInstanceId: false }).admitted;
  if (!a) throw new Error('expected an admission');
  w.ledger.update(w.clock.now, a.id, { state: 'started', owner: 'other-host:/etc/drift/audit.yaml', leaseMs: 300_000, note: 'started elsewhere' });
  t.throws(() => w.ledger.update(w.clock.now, a.id, { state: 'succeeded', owner: 'test-audit' }), { code: 'DRIFT_ERR_CONFLICT', message: /being carried out by other-host/ });

  const first = await enforcePass(d);
  t.same(first.done, [], 'the other audit\'s action is not taken over while its lease runs');
  t.throws(() => readFileSync(log), 'the provider was not called');

  w.clock.now += 6 * MIN;
  const second = await enforcePass(d);
  t.same(second.done.map((x) => [x.id, x.state, x.owner]), [[a.id, 'succeeded', 'test-audit']], 'taken over once the lease ran out, and done once');
  t.equal(readFileSync(log, 'utf8'), 'h3\n');
  const [b] = w.ledger.admit(w.clock.now, { policy: d.cfg.guards, provider: 'command', actor: 'operator', requireInstanceId: false, hosts: ['h5'], force: 'test' }).admitted;
  w.ledger.update(w.clock.now, b?.id ?? '', { state: 'started', owner: 'other-host:/etc/drift/audit.yaml' });
  t.match(w.ledger.cancel(w.clock.now, b?.id ?? '', 'wrong host'), { state: 'cancelled' }, 'an operator cancel needs no lease');
});
