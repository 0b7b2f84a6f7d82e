import { CronJob } from 'cron';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { readSecret } from '../config.js';
import { loadAuditConfig, PASSES, type AuditConfig, type PassName } from './config.js';
import { LedgerClient } from './ledger-client.js';
import { leaseFor, runPass, type AuditDeps, type EnforceResult } from './passes.js';
import { makeProvider } from './providers/index.js';

/** One JSON line per event on stdout; never a secret. */
export function jsonLog(service: string): (msg: string, fields?: Record<string, unknown>) => void {
  return (msg, fields = {}) => { process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), service, msg, ...fields })}\n`); };
}

export async function auditDeps(cfg: AuditConfig, configPath: string): Promise<AuditDeps> {
  const token = await readSecret(cfg.adminTokenFile, 'adminTokenFile');
  const provider = await makeProvider(cfg.provider);
  return {
    cfg, token, provider, ledger: new LedgerClient(cfg.collector, token),
    now: Date.now, sleep: (ms) => new Promise((r) => setTimeout(r, ms)), log: jsonLog('drift-audit'),
    // The same audit restarted (same host, same config) takes its own actions back at once.
    owner: `${hostname()}:${resolve(configPath)}`, leaseMs: leaseFor(cfg),
  };
}

/** `--once PASS`: run it now; the exit code is 1 when an action of the pass failed, else 0. */
export async function runOnce(configPath: string, pass: PassName): Promise<number> {
  const deps = await auditDeps(await loadAuditConfig(configPath), configPath);
  const result = await runPass(pass, deps);
  deps.log('pass done', { pass, result });
  if (pass === 'enforce') return (result as EnforceResult).done.some((a) => a.state === 'failed') ? 1 : 0;
  return 0;
}

/**
 * The daemon: one cron job per scheduled pass (UTC). A pass still running when its
 * next tick comes is not started twice. In enforce mode the enforce pass also runs at
 * start, so actions a crash left under way resume at once. Resolves when stopped.
 */
export async function runDaemon(configPath: string, signal: AbortSignal): Promise<void> {
  const cfg = await loadAuditConfig(configPath);
  const deps = await auditDeps(cfg, configPath);
  const running = new Set<PassName>();
  const tick = async (pass: PassName): Promise<void> => {
    if (running.has(pass)) { deps.log('pass still running; tick skipped', { pass }); return; }
    running.add(pass);
    try { await runPass(pass, deps); } catch (err) {
      deps.log('pass failed', { pass, error: err instanceof Error ? err.message : String(err) });
    } finally { running.delete(pass); }
  };
  const jobs: CronJob[] = [];
  for (const pass of PASSES) {
    const when = cfg.schedules[pass];
    if (when === undefined) continue;
    jobs.push(CronJob.from({ cronTime: when, timeZone: 'UTC', onTick: () => { void tick(pass); }, start: true }));
  }
  deps.log('started', { mode: cfg.mode, provider: deps.provider.name, collector: cfg.collector, schedules: cfg.schedules });
  if (cfg.mode === 'enforce') void tick('enforce');
  await new Promise<void>((resolve) => {
    if (signal.aborted) resolve();
    signal.addEventListener('abort', () => resolve(), { once: true });
  });
  for (const j of jobs) j.stop();
  deps.log('stopped; actions under way resume at the next start', {});
}
