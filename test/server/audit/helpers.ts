import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { loadRuleSet } from '../../../agent/rules/load.js';
import { compare } from '../../../agent/engine/compare.js';
import { buildApp } from '../../../server/http/app.js';
import { Store } from '../../../server/store/store.js';
import { Ledger } from '../../../server/fleet/actions.js';
import { parseAuditConfig, type AuditConfig } from '../../../server/audit/config.js';
import { LedgerClient } from '../../../server/audit/ledger-client.js';
import type { AuditDeps } from '../../../server/audit/passes.js';
import { makeProvider } from '../../../server/audit/providers/index.js';
import { FleetBuilder } from '../helpers/ledger.js';

export const ADMIN = 'admin-token-0123456789abc';
export const MIN = 60_000;

/**
 * A real collector on 127.0.0.1 with an injected clock, a fleet written into its
 * store, and the audit daemon's dependencies pointed at it.
 */
export async function auditWorld(t: { teardown(fn: () => unknown): void }, start = Date.parse('2026-06-01T10:00:00Z')) {
  const dir = mkdtempSync(join(tmpdir(), 'drift-audit-'));
  const store = Store.open(join(dir, 'drift.db'));
  const clock = { now: start };
  const app = buildApp({
    store, enrollSecret: 'enroll-secret-0123456789', adminToken: ADMIN, baselineKeys: [generateKeyPairSync('ed25519').publicKey],
    rules: await loadRuleSet([]), compare, maxBody: 1024 * 1024, silentAfterMs: 15 * MIN, now: () => clock.now,
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  t.teardown(async () => { await app.close(); store.close(); rmSync(dir, { recursive: true, force: true }); });
  const fleet = new FleetBuilder(store);
  const ledger = new Ledger(store, { silentAfterMs: 15 * MIN, verifiesBaselines: true });
  const logs: { msg: string; fields: Record<string, unknown> }[] = [];
  const deps = async (config: Record<string, unknown>): Promise<AuditDeps & { cfg: AuditConfig }> => {
    const cfg = parseAuditConfig({ collector: url, adminTokenFile: join(dir, 'unused'), report: { dir: join(dir, 'reports') }, ...config }, 'test config');
    return {
      cfg, token: ADMIN, ledger: new LedgerClient(url, ADMIN), provider: await makeProvider(cfg.provider),
      now: () => clock.now, sleep: async (ms) => { clock.now += ms; }, log: (msg, fields = {}) => { logs.push({ msg, fields }); },
      owner: 'test-audit', leaseMs: 300_000,
    };
  };
  return { dir, url, store, clock, fleet, ledger, deps, logs };
}

/** n hosts of ami-1 with instance ids, three reports 10 minutes apart; `drifted` maps host index → drifted paths. */
export function seedFleet(w: Awaited<ReturnType<typeof auditWorld>>, n: number, drifted: Record<number, string[]>): void {
  w.fleet.image('ami-1');
  const t0 = w.clock.now;
  for (let i = 0; i < n; i++) w.fleet.enroll(`h${i}`, 'ami-1', t0, `i-${String(i).padStart(4, '0')}`);
  for (const dt of [0, 10, 20]) for (let i = 0; i < n; i++) w.fleet.report(`h${i}`, t0 + dt * MIN, drifted[i] ?? []);
  w.clock.now = t0 + 20 * MIN;
}
