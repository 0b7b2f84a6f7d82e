/**
 * Enforcement figures (README "Enforcement"):
 *  1. collector admission with 10,000 hosts in the fleet and 10,000 actions in the ledger:
 *     a plan, an admission pass over the whole fleet, and one operator admission (drift replace);
 *  2. time from a drifted report (POST /v1/reports accepted) to the provider's call, with
 *     the enforce pass started right after the report (in production add the enforce schedule,
 *     5 minutes by default, and the persistence guard).
 * Real parts: a SQLite file in /tmp, the HTTP app on 127.0.0.1, the audit passes over HTTP,
 * the webhook provider posting to a receiver on 127.0.0.1.
 *   node dist/bench/enforce.js [--hosts 10000] [--runs 15]
 */
import { createServer } from 'node:http';
import { generateKeyPairSync, createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { loadRuleSet } from '../agent/rules/load.js';
import { compare } from '../agent/engine/compare.js';
import { signBaseline } from '../agent/sign.js';
import { baselineDigest } from '../agent/baseline.js';
import { buildApp } from '../server/http/app.js';
import { Store } from '../server/store/store.js';
import { Ledger } from '../server/fleet/actions.js';
import { GuardPolicySchema } from '../server/fleet/guards.js';
import { parseAuditConfig } from '../server/audit/config.js';
import { LedgerClient } from '../server/audit/ledger-client.js';
import { enforcePass } from '../server/audit/passes.js';
import { makeProvider } from '../server/audit/providers/index.js';
import { fullReport, imageSections, manifestOf } from '../test/server/helpers/fleet.js';
import type { Finding } from '../agent/protocol/finding.js';

const arg = (name: string, def: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
};
const HOSTS = arg('hosts', 10_000);
const RUNS = arg('runs', 15);
const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)] as number; };
const ms = (x: number): string => `${x.toFixed(1)} ms`;

const dir = mkdtempSync(join(tmpdir(), 'drift-bench-enforce-'));
try {
  // ── 1. admission ───────────────────────────────────────────────────────
  const store = Store.open(join(dir, 'admission.db'));
  const T0 = Date.parse('2026-06-01T10:00:00Z');
  const sections = imageSections();
  const base = manifestOf(sections, { hostname: 'bake', machineId: 'bake', imageId: 'ami-1' });
  store.putBaseline({ imageId: 'ami-1', digest: baselineDigest(base), keyId: 'bake', baseline: base, now: 0 });
  const stored = store.getBaseline('ami-1') ?? null;
  const finding = (p: string): Finding => ({ kind: 'file', key: p, change: 'modified', changed: ['sha256'], before: null, after: null, severity: 'high', action: 'replace', rule: null, explanation: p });
  let t = performance.now();
  store.db.transaction(() => {
    for (let i = 0; i < HOSTS; i++) {
      const id = createHash('md5').update(String(i)).digest('hex');
      const host = store.enroll({ id, hostname: `web-${i}`, imageId: 'ami-1', keyHash: Buffer.alloc(16, 1), now: T0 });
      // 1% snowflakes, each with its own drift, two reports apart.
      const drift = i % 100 === 0 ? [finding(`/etc/own-${i}`)] : [];
      const root = `sha256:${createHash('sha256').update(drift.length ? id : 'clean').digest('hex')}`;
      for (const [seq, at] of [[1, T0], [2, T0 + 20 * 60_000]] as const) {
        store.saveReport({ host: { ...host, findings: seq === 1 ? 0 : drift.length }, seq, now: at, hostname: host.hostname, imageId: 'ami-1', role: null, digests: { root } as never, kind: 'digests', baseline: stored, findings: drift, machineId: id });
      }
    }
    // 10,000 actions of the past (replacements already verified or failed, weeks ago).
    const ins = store.db.prepare(`INSERT INTO actions (id, host_id, hostname, instance_id, cohort, reason, findings, provider, actor, state, created_at, updated_at)
      VALUES (?, ?, ?, NULL, 'ami-1|', 'old', '[]', 'aws-autoscaling', 'audit', ?, ?, ?)`);
    for (let i = 0; i < 10_000; i++) ins.run(`old-${i}`, `gone-${i}`, `gone-${i}`, i % 10 === 0 ? 'failed' : 'verified', T0 - 30 * 86_400_000, T0 - 30 * 86_400_000);
  })();
  const buildMs = performance.now() - t;
  const ledger = new Ledger(store, { silentAfterMs: 3 * 3_600_000, verifiesBaselines: true });
  const now = T0 + 21 * 60_000;
  const policy = GuardPolicySchema.parse({ minReports: 2, minPersistMs: 60_000, maxInFlightPerCohort: 20, maxPerHour: 1000, minHealthy: 0.5 });
  const plans: number[] = [];
  let planned = 0;
  for (let r = 0; r < RUNS; r++) { t = performance.now(); planned = ledger.plan(now, policy, false).admit.length; plans.push(performance.now() - t); }
  // One admission pass over the whole fleet (admits up to the in-flight budget), undone after each run.
  const passes: number[] = [];
  let admitted = 0;
  for (let r = 0; r < RUNS; r++) {
    t = performance.now();
    admitted = ledger.admit(now, { policy, provider: 'bench', actor: 'audit', requireInstanceId: false }).admitted.length;
    passes.push(performance.now() - t);
    store.db.exec(`DELETE FROM actions WHERE provider = 'bench'`);
  }
  // One operator admission (drift replace HOST), undone after each run.
  const singles: number[] = [];
  const someone = createHash('md5').update('100').digest('hex');
  for (let r = 0; r < RUNS; r++) {
    t = performance.now();
    ledger.admit(now, { policy, provider: 'bench', actor: 'operator', requireInstanceId: false, hosts: [someone], reason: 'bench' });
    singles.push(performance.now() - t);
    store.db.exec(`DELETE FROM actions WHERE provider = 'bench'`);
  }
  store.close();
  console.log(`admission: ${HOSTS} hosts (${HOSTS / 100} snowflakes), 10,000 past actions; fleet built in ${ms(buildMs)}`);
  console.log(`  plan (whole fleet):            median ${ms(median(plans))} over ${RUNS} runs (${planned} would be admitted)`);
  console.log(`  admission pass (whole fleet):  median ${ms(median(passes))} (${admitted} admitted per pass) = ${(admitted / (median(passes) / 1000)).toFixed(0)} admissions/s`);
  console.log(`  one named host (drift replace): median ${ms(median(singles))} = ${(1000 / median(singles)).toFixed(1)} requests/s`);

  // ── 2. drifted report → provider call ──────────────────────────────────
  const key = generateKeyPairSync('ed25519');
  const store2 = Store.open(join(dir, 'latency.db'));
  const app = buildApp({ store: store2, enrollSecret: 'enroll-secret-0123456789', adminToken: 'admin-token-0123456789', baselineKeys: [key.publicKey], rules: await loadRuleSet([]), compare, maxBody: 64 * 1024 * 1024, silentAfterMs: 15 * 60_000 });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  const signed = signBaseline(manifestOf(sections, { hostname: 'bake', machineId: 'bake', imageId: 'ami-2' }), key.privateKey);
  await fetch(`${url}/v1/baselines/ami-2`, { method: 'PUT', headers: { authorization: 'Bearer admin-token-0123456789', 'content-type': 'application/json' }, body: JSON.stringify(signed) });
  let called = 0;
  let calledAt = 0;
  const hook = createServer((req, res) => { req.resume(); req.on('end', () => { called++; calledAt = performance.now(); res.writeHead(202).end(); }); });
  await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
  writeFileSync(join(dir, 'hook.secret'), 'webhook-secret-0123456789\n');
  writeFileSync(join(dir, 'admin.token'), 'admin-token-0123456789\n');
  const cfg = parseAuditConfig({
    collector: url, adminTokenFile: join(dir, 'admin.token'), mode: 'enforce',
    guards: { minReports: 1, minPersistMs: 0, maxInFlightPerCohort: 1000, maxPerHour: 10_000, minHealthy: 0, cooldownMs: 0 },
    provider: { kind: 'webhook', url: `http://127.0.0.1:${(hook.address() as AddressInfo).port}/`, secretFile: join(dir, 'hook.secret') },
  }, 'bench');
  const deps = { cfg, token: 'admin-token-0123456789', ledger: new LedgerClient(url, 'admin-token-0123456789'), provider: await makeProvider(cfg.provider), now: Date.now, sleep: async () => {}, log: () => {}, owner: 'bench', leaseMs: 300_000 };
  const enrollHost = async (id: string): Promise<string> => {
    const r = await fetch(`${url}/v1/enroll`, { method: 'POST', headers: { authorization: 'Bearer enroll-secret-0123456789', 'content-type': 'application/json' }, body: JSON.stringify({ hostId: id, hostname: id, imageId: 'ami-2' }) });
    return ((await r.json()) as { nodeKey: string }).nodeKey;
  };
  // A cohort of 20 clean hosts, so one drifted host is a snowflake.
  for (let i = 0; i < 20; i++) {
    const k = await enrollHost(`clean-${i}`);
    await fetch(`${url}/v1/reports`, { method: 'POST', headers: { authorization: `Bearer ${k}`, 'content-type': 'application/json' }, body: JSON.stringify(fullReport(1, manifestOf(sections, { hostname: `clean-${i}`, machineId: `clean-${i}`, imageId: 'ami-2', baselineDigest: baselineDigest(signed) }))) });
  }
  const lat: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    const id = `drifted-${r}`;
    const k = await enrollHost(id);
    const drifted = imageSections();
    (drifted.files as Record<string, unknown>)['/usr/local/bin/backdoor'] = { type: 'file', mode: '0755', uid: 0, gid: 0, size: 20, sha256: 'e'.repeat(64) };
    const body = JSON.stringify(fullReport(1, manifestOf(drifted, { hostname: id, machineId: id, imageId: 'ami-2', baselineDigest: baselineDigest(signed) })));
    const before = called;
    const res = await fetch(`${url}/v1/reports`, { method: 'POST', headers: { authorization: `Bearer ${k}`, 'content-type': 'application/json' }, body });
    const accepted = performance.now();
    if (!((await res.json()) as { accepted: boolean }).accepted) throw new Error('report not accepted');
    await enforcePass(deps);
    if (called !== before + 1) throw new Error(`expected one provider call, saw ${called - before}`);
    lat.push(calledAt - accepted);
  }
  hook.close();
  await app.close();
  store2.close();
  console.log(`drifted report accepted → webhook provider called (enforce pass started at once): median ${ms(median(lat))}, min ${ms(Math.min(...lat))}, max ${ms(Math.max(...lat))} over ${RUNS} runs`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
