import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { remoteFleet, fleetSummary, type HostSummary, type CohortView } from '../../agent/cli/remote.js';
import type { AuditConfig, PassName } from './config.js';
import type { ActionWire, BlockedWire, LedgerClient } from './ledger-client.js';
import { ProviderError, type Provider, type ReplaceContext } from './providers/contract.js';
import { readTargets } from '../../agent/remote/sweep.js';
import { loadSweepBaselines, postSweep, runSweep } from '../../agent/cli/commands/scan-agentless.js';
import { TRUST_DIR } from '../../agent/sign.js';

/**
 * The passes of `drift audit` (DESIGN.md §1, §6): enforce, verify, silent, report.
 * Each pass is one function of the config, a ledger client, a provider and a clock,
 * so tests run them against a real collector with an injected clock.
 */

export interface AuditDeps {
  cfg: AuditConfig;
  ledger: LedgerClient;
  /** The collector's admin token (the report pass reads the fleet views with it). */
  token: string;
  provider: Provider;
  now: () => number;
  sleep: (ms: number) => Promise<void>;
  log: (msg: string, fields?: Record<string, unknown>) => void;
  /** Who this audit is in the ledger (host and config): it holds a lease on the actions it carries out. */
  owner: string;
  /** How long a lease lasts without renewal (every ledger update and every poll renews it). */
  leaseMs: number;
}

/** A lease long enough to cover the longest wait between two ledger updates of a provider. */
export function leaseFor(cfg: AuditConfig): number {
  const p = cfg.provider as { timeout?: number; poll?: number };
  return Math.min(3_600_000, Math.max(300_000, (p.timeout ?? 0) + 60_000, (p.poll ?? 0) * 4, cfg.retry.backoff * 2 ** cfg.retry.attempts));
}

export interface EnforceResult {
  mode: 'dry-run' | 'enforce';
  /** dry-run: what enforce would admit now. */
  wouldReplace: { hostId: string; hostname: string; reason: string }[];
  blocked: BlockedWire[];
  /** enforce: actions carried out in this pass (resumed and new), in their final state. */
  done: ActionWire[];
}

const RESUMABLE = ['planned', 'started'] as const;

/**
 * enforce: in dry-run, ask for the plan and report it. In enforce mode, first resume
 * every action this provider left planned or started (a restart, even after kill -9,
 * continues them from their saved progress and never repeats a step), then admit new
 * ones through the collector's guards and carry them out.
 */
export async function enforcePass(d: AuditDeps): Promise<EnforceResult> {
  const { cfg, ledger, provider } = d;
  if (cfg.mode === 'dry-run') {
    const plan = await ledger.plan(cfg.guards, provider.requiresInstanceId);
    for (const a of plan.admit) d.log('dry-run: would replace', { host: a.hostId, reason: a.reason });
    return { mode: 'dry-run', wouldReplace: plan.admit.map((a) => ({ hostId: a.hostId, hostname: a.hostname, reason: a.reason })), blocked: plan.blocked, done: [] };
  }
  const leasedElsewhere = (a: ActionWire): boolean => a.owner !== null && a.owner !== d.owner && a.leaseUntil !== null && Date.parse(a.leaseUntil) > d.now();
  const mine = (a: ActionWire): boolean => (a.provider === provider.name || a.provider === 'any') && !leasedElsewhere(a);
  const resumed = (await ledger.list(RESUMABLE)).filter(mine);
  for (const a of resumed) d.log('resuming action', { action: a.id, host: a.hostId, state: a.state });
  const { admitted, blocked } = await ledger.admit(cfg.guards, provider.name, provider.requiresInstanceId);
  for (const a of admitted) d.log('admitted', { action: a.id, host: a.hostId, reason: a.reason });
  const seen = new Set<string>();
  const todo = [...resumed, ...admitted].filter((a) => (seen.has(a.id) ? false : (seen.add(a.id), true)));
  const done = await Promise.all(todo.map((a) => runAction(d, a)));
  return { mode: 'enforce', wouldReplace: [], blocked, done };
}

/**
 * Carry out one action: mark it started, call the provider, retry what is worth
 * retrying within `retry.attempts` with doubling backoff, and record every
 * transition. A validation failure opens the cohort's breaker.
 */
export async function runAction(d: AuditDeps, action: ActionWire): Promise<ActionWire> {
  const { provider, cfg } = d;
  const lease = { owner: d.owner, leaseMs: d.leaseMs };
  const ledger = {
    update: (id: string, change: Parameters<LedgerClient['update']>[1]) => d.ledger.update(id, { ...change, ...lease }),
    get: (id: string) => d.ledger.get(id),
    replacement: (id: string, ids: readonly string[]) => d.ledger.replacement(id, ids),
    openBreaker: (cohort: string, reason: string, id: string) => d.ledger.openBreaker(cohort, reason, id),
  };
  let a = action;
  if (a.state === 'planned') a = await ledger.update(a.id, { state: 'started', attempt: true, note: `started by drift audit (${provider.name})` });
  else a = await ledger.update(a.id, { state: 'started', note: `resumed by drift audit (${provider.name}) from its saved progress` });
  let progress: Record<string, unknown> = isRecord(a.progress) ? { ...a.progress } : {};
  for (;;) {
    const ctx: ReplaceContext = {
      action: a,
      progress,
      save: async (p, ref) => {
        progress = { ...p };
        const note = typeof p['step'] === 'string' ? `step ${p['step']}` : `progress ${JSON.stringify(p).slice(0, 300)}`;
        a = await ledger.update(a.id, { state: 'started', progress: p, note, ...(ref !== undefined ? { providerRef: ref } : {}) });
      },
      replacement: (ids) => ledger.replacement(a.id, ids),
      checkCancelled: async () => {
        const now = await ledger.get(a.id);
        if (now.state === 'cancelled') throw new ProviderError('cancelled in the ledger', { cancelled: true });
        a = await ledger.update(a.id, { state: 'started' }); // renews the lease
      },
      now: d.now,
      sleep: d.sleep,
      log: (msg, fields) => d.log(msg, { action: a.id, ...fields }),
    };
    try {
      const r = await provider.replace(ctx);
      a = await ledger.update(a.id, { state: 'succeeded', note: r.note });
      d.log('replaced', { action: a.id, host: a.hostId, note: r.note });
      return a;
    } catch (err) {
      const pe = err instanceof ProviderError ? err : new ProviderError(err instanceof Error ? err.message : String(err), { retryable: false, cause: err });
      if (pe.cancelled) {
        d.log('action cancelled; stopping', { action: a.id });
        return await ledger.get(a.id);
      }
      const reason = `${provider.name}: ${pe.message}`;
      if (pe.retryable && a.attempts < cfg.retry.attempts) {
        const wait = cfg.retry.backoff * 2 ** (a.attempts - 1);
        d.log('provider failed; will retry', { action: a.id, attempt: a.attempts, waitMs: wait, reason });
        await d.sleep(wait);
        a = await ledger.update(a.id, { state: 'started', attempt: true, note: `attempt ${a.attempts} failed (${reason}); retrying` });
        continue;
      }
      const tail = pe.retryable ? ` (gave up after ${a.attempts} attempt(s))` : '';
      a = await ledger.update(a.id, { state: 'failed', error: `${reason}${tail}` });
      if (pe.validation) await ledger.openBreaker(a.cohort, `replacement of ${a.hostId} failed validation: ${pe.message}`, a.id);
      d.log('action failed', { action: a.id, host: a.hostId, reason: a.error });
      return a;
    }
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** verify: the collector checks each succeeded replacement (docs/api.md, POST /v1/actions/verify). */
export async function verifyPass(d: AuditDeps): Promise<{ verified: ActionWire[]; tripped: ActionWire[]; waiting: ActionWire[] }> {
  const v = await d.ledger.verify();
  for (const a of v.verified) d.log('replacement verified', { action: a.id, host: a.hostId });
  for (const a of v.tripped) d.log('replacement drifted the same way: breaker open', { action: a.id, cohort: a.cohort, reason: a.error });
  return v;
}

/** silent: hosts with no report for `silent.multiple` × `silent.interval`. Reported, never replaced for it unless guards.replaceSilent. */
export async function silentPass(d: AuditDeps): Promise<{ silent: HostSummary[] }> {
  const { hosts } = await remoteFleet(d.ledger.url, d.token);
  const limit = d.cfg.silent.interval * d.cfg.silent.multiple;
  const retired = new Set((await d.ledger.list(['succeeded', 'verified'])).map((a) => a.hostId));
  const silent = hosts.filter((h) => !retired.has(h.id) && (h.lastSeen === null || d.now() - Date.parse(h.lastSeen) > limit));
  for (const h of silent) d.log('host silent', { host: h.id, hostname: h.hostname, lastSeen: h.lastSeen });
  return { silent };
}

export interface FleetReport {
  schema: 'drift.audit-report/v1';
  at: string;
  mode: 'dry-run' | 'enforce';
  hosts: HostSummary[];
  cohorts: CohortView[];
  rebake: string[];
  actions: ActionWire[];
  blocked: BlockedWire[];
  silent: HostSummary[];
}

/**
 * report: a fleet report as markdown and JSON in `report.dir` (written whole, then
 * renamed), and optionally a webhook post with a Slack-compatible `text`.
 */
export async function reportPass(d: AuditDeps): Promise<{ report: FleetReport; files: string[] }> {
  const { hosts, cohorts } = await remoteFleet(d.ledger.url, d.token);
  const actions = await d.ledger.recent(200);
  const plan = await d.ledger.plan(d.cfg.guards, d.provider.requiresInstanceId);
  const { silent } = await silentPass(d);
  const rebake: string[] = [];
  for (const c of cohorts) {
    for (const f of c.fleetWide) rebake.push(`rebake image ${c.imageId ?? '(none)'}${c.role ? ` (role ${c.role})` : ''}: ${f.kind} ${f.key} ${f.change} on ${f.hosts} hosts (${Math.round(f.share * 100)}%)`);
  }
  const at = new Date(d.now()).toISOString();
  const report: FleetReport = { schema: 'drift.audit-report/v1', at, mode: d.cfg.mode, hosts, cohorts, rebake, actions, blocked: plan.blocked, silent };
  const md = [
    fleetSummary(hosts, cohorts, true).trimEnd(),
    '', '## Rebake', ...(rebake.length ? rebake.map((r) => `- ${r}`) : ['- nothing fleet-wide']),
    '', `## Actions (${d.cfg.mode})`, ...(actions.length ? actions.map((a) => `- ${a.state} ${a.hostname} (${a.hostId}) via ${a.provider}: ${a.reason}${a.error ? ` — ${a.error}` : ''}`) : ['- none']),
    '', '## Blocked', ...(plan.blocked.length ? plan.blocked.map((b) => `- ${b.hostname} (${b.hostId}): ${b.blocked.map((g) => g.guard).join(', ')}`) : ['- none']),
    '', '## Silent', ...(silent.length ? silent.map((h) => `- ${h.hostname} (${h.id}), last seen ${h.lastSeen ?? 'never'}`) : ['- none']),
    '',
  ].join('\n');
  await mkdir(d.cfg.report.dir, { recursive: true });
  const stamp = at.replace(/[:.]/g, '-');
  const files: string[] = [];
  for (const [ext, body] of [['md', md], ['json', `${JSON.stringify(report, null, 2)}\n`]] as const) {
    const file = join(d.cfg.report.dir, `fleet-${stamp}.${ext}`);
    await writeFile(`${file}.tmp`, body, { mode: 0o640 });
    await rename(`${file}.tmp`, file);
    files.push(file);
  }
  if (d.cfg.report.webhook) {
    // Unsigned, like Slack's incoming webhooks: the URL is the secret. Sent once; a refusal
    // or no answer is logged and the pass still succeeds (the files are written above).
    try {
      const res = await fetch(d.cfg.report.webhook, {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ text: reportText(report) }),
        redirect: 'error', signal: AbortSignal.timeout(30_000),
      });
      await res.body?.cancel();
      if (!res.ok) d.log('report webhook refused the report', { status: res.status });
    } catch (err) { d.log('report webhook unreachable', { error: (err as Error).message }); }
  }
  d.log('fleet report written', { files });
  return { report, files };
}

/** Names listed per section of the webhook text; the rest are counted. */
const TEXT_NAMES = 20;
/** Slack cuts a message at 40,000 characters; stay well below. */
const TEXT_MAX = 30_000;

/**
 * The report as Slack-compatible text: a summary line, then drifted hosts, rebake
 * lines, actions and silent hosts, each list cut at TEXT_NAMES. Host names and file
 * keys come from hosts: `&`, `<` and `>` are escaped, so a host named `<!channel>`
 * cannot notify a channel nor pass a link off as ours.
 */
export function reportText(r: FleetReport): string {
  const drifted = r.hosts.filter((h) => h.status === 'drifted');
  const replaced = r.actions.filter((a) => a.state === 'succeeded' || a.state === 'verified').length;
  const cut = (items: string[]): string[] => (items.length > TEXT_NAMES ? [...items.slice(0, TEXT_NAMES), `… and ${items.length - TEXT_NAMES} more`] : items);
  const section = (title: string, items: string[]): string[] => (items.length ? [`${title}:`, ...cut(items).map((i) => `- ${i}`)] : []);
  const lines = [
    `drift fleet report ${r.at}: ${r.hosts.length} hosts, ${drifted.length} drifted, ${r.silent.length} silent; ${replaced} replaced, ${r.blocked.length} blocked`,
    ...section('drifted', drifted.map((h) => `${h.hostname} (${h.id})`)),
    ...section('rebake', r.rebake),
    ...section(`actions (${r.mode})`, r.actions.map((a) => `${a.state} ${a.hostname} (${a.hostId}) via ${a.provider}${a.error ? `: ${a.error}` : ''}`)),
    ...section('silent', r.silent.map((h) => `${h.hostname} (${h.id}), last seen ${h.lastSeen ?? 'never'}`)),
  ];
  const text = lines.map((l) => l.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')).join('\n');
  return text.length > TEXT_MAX ? `${text.slice(0, TEXT_MAX)}\n… cut; the whole report is in report.dir` : text;
}

export interface SweepPassResult {
  targets: number;
  clean: number;
  drifted: number;
  failed: number;
  posted: number;
  results: { target: string; via: string; status: string; exit: number; posted: string | null; error: string | null }[];
}

/**
 * sweep: scan the agentless targets of `sweep.targets` (read at every pass, so an
 * inventory export can rewrite it) and post each whole manifest to the collector as
 * that host's report, the same way `drift scan --targets --collector` does. A target
 * that fails is logged and the pass goes on; the pass itself fails only when the
 * targets file cannot be read.
 */
export async function sweepPass(d: AuditDeps): Promise<SweepPassResult> {
  const s = d.cfg.sweep;
  if (!s) throw new Error('the sweep pass needs sweep: { targets: FILE } in the config');
  const targets = await readTargets(s.targets);
  const baselines = await loadSweepBaselines(targets, { files: s.baseline ? [s.baseline] : [], pubkeys: [], trustDir: TRUST_DIR, rules: [] });
  const results = await runSweep(targets, {
    concurrency: s.concurrency, timeoutMs: s.timeout, baselines,
    ...(s.region ? { region: s.region } : {}), ...(s.endpoint ? { endpoint: s.endpoint } : {}),
  });
  await postSweep(results, d.cfg.collector, d.token, {});
  for (const r of results) {
    if (r.status === 'error') d.log('sweep: target failed', { target: r.target, error: r.error });
    else if (r.posted !== 'yes') d.log('sweep: not posted', { target: r.target, status: r.status, why: r.posted });
  }
  const count = (st: string): number => results.filter((r) => r.status === st).length;
  const out: SweepPassResult = {
    targets: results.length, clean: count('clean'), drifted: count('drifted'), failed: count('error'), posted: results.filter((r) => r.posted === 'yes').length,
    results: results.map((r) => ({ target: r.target, via: r.via, status: r.status, exit: r.exit, posted: r.posted ?? null, error: r.error ?? null })),
  };
  d.log('sweep done', { targets: out.targets, clean: out.clean, drifted: out.drifted, failed: out.failed, posted: out.posted });
  return out;
}

export async function runPass(name: PassName, d: AuditDeps): Promise<unknown> {
  switch (name) {
    case 'enforce': return enforcePass(d);
    case 'verify': return verifyPass(d);
    case 'silent': return silentPass(d);
    case 'report': return reportPass(d);
    case 'sweep': return sweepPass(d);
    default: {
      const never: never = name;
      throw new Error(`unknown pass ${String(never)}`);
    }
  }
}
