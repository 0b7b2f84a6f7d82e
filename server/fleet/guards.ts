import { CronTime } from 'cron';
import { z } from 'zod';

/**
 * Guard rails of replacement (DESIGN.md §6), pure: from the facts about each
 * candidate host, its cohort and the actions ledger at one moment, which hosts may be
 * replaced now and, for every other one, each guard that holds it back. The ledger
 * (actions.ts) gathers the facts and admits inside one transaction, so what this
 * decides is what happens, even with several actors asking at once.
 */

/** Every guard, as named in "blocked" answers, the audit report and `drift_guard_blocks_total{guard}`. */
export const GUARDS = [
  'paused',              // the global switch (drift actions pause)
  'silent',              // the host stopped reporting; silence alone is no reason to replace unless the policy says so
  'unknown-image',       // no baseline for its image: drift cannot tell what it should be
  'unverified-baseline', // its baseline was not verified against a trusted signing key
  'fleet-wide',          // its drift is shared by most of its cohort: rebake, replacing will not cure it
  'persistence',         // its drift has not lasted the required reports and time yet
  'host-in-flight',      // an action on this host is already under way
  'cooldown',            // this host was acted on too recently
  'breaker',             // replacements in its cohort came back drifted: the image is suspect
  'window',              // outside every allowed time window
  'in-flight',           // the cohort already has its budget of replacements under way
  'per-hour',            // the fleet already started its budget of replacements this hour
  'min-healthy',         // replacing it would leave too few healthy hosts in its cohort
  'no-instance',         // the provider needs a cloud instance id and the host never reported one
  'no-drift',            // asked for by name, but it has no finding whose policy action is replace
] as const;
export type GuardName = (typeof GUARDS)[number];

/** What a policy may say. Every guard is on by default; defaults are conservative. */
export const GuardPolicySchema = z.strictObject({
  /** A finding counts once it was seen in at least this many reports... */
  minReports: z.number().int().min(1).max(1000).default(3),
  /** ...and has lasted at least this long (ms). */
  minPersistMs: z.number().int().min(0).max(30 * 86_400_000).default(15 * 60_000),
  maxInFlightPerCohort: z.number().int().min(1).max(1000).default(1),
  maxPerHour: z.number().int().min(1).max(10_000).default(5),
  /** Share of a cohort that must stay healthy (silent and in-flight hosts count as unhealthy). */
  minHealthy: z.number().min(0).max(1).default(0.9),
  /** Per host: no new action within this long of the last one (ms). */
  cooldownMs: z.number().int().min(0).max(365 * 86_400_000).default(24 * 3_600_000),
  /** Cron expressions (5 fields, UTC): the minutes they match are when replacement may start. Empty: any time. */
  windows: z.array(z.string().min(1).max(100)).max(32).default([]),
  /** Replace hosts that went silent (off by default: a silent host is reported, not replaced). */
  replaceSilent: z.boolean().default(false),
});
export type GuardPolicy = z.infer<typeof GuardPolicySchema>;

export const DEFAULT_POLICY: Readonly<GuardPolicy> = Object.freeze(GuardPolicySchema.parse({}));

/** A finding that may justify replacement (policy action `replace`), with how long it has lasted. */
export interface CandidateFinding {
  kind: string;
  key: string;
  change: string;
  firstSeen: number;
  /** Reports of the host since the finding first appeared, that one included. */
  reports: number;
}

/** What the guards need to know about one host. */
export interface CandidateHost {
  hostId: string;
  hostname: string;
  instanceId: string | null;
  cohort: string;
  status: 'clean' | 'drifted' | 'silent' | 'unknown-image';
  /** A baseline is stored for its image. */
  imageKnown: boolean;
  baselineVerified: boolean;
  /** Its findings with policy action `replace`. */
  findings: CandidateFinding[];
  /** Snowflake score (null when not a snowflake): the oddest hosts go first. */
  score: number | null;
}

/** A cohort's head count. */
export interface CohortCount {
  hosts: number;
  silent: number;
}

/** The ledger at one moment. */
export interface LedgerView {
  paused: boolean;
  /** Actions planned or started, by cohort. */
  inFlight: Map<string, number>;
  /** Actions admitted within the last hour (cancelled-before-start ones excepted). */
  lastHour: number;
  /** Hosts with an action planned, started or succeeded but not yet verified. */
  busyHosts: Set<string>;
  /** Time (ms) of each host's last admitted action. */
  lastActionAt: Map<string, number>;
  /** Open breakers: cohort → reason. */
  breakers: Map<string, string>;
}

export interface Block {
  guard: GuardName;
  why: string;
}

export interface Decision {
  host: CandidateHost;
  /** The findings that make it a candidate (replace-worthy, not fleet-wide). */
  reasons: CandidateFinding[];
  /** Empty when admitted. */
  blocked: Block[];
}

export interface Evaluation {
  admit: Decision[];
  blocked: Decision[];
}

/** A cohort key: image id and role. */
export function cohortKey(imageId: string | null, role: string | null): string {
  return `${imageId ?? ''}|${role ?? ''}`;
}

/** True when `now` falls in a minute one of the cron expressions matches (UTC); an empty list always matches. */
export function inWindow(windows: readonly string[], now: number): boolean {
  if (windows.length === 0) return true;
  const minute = Math.floor(now / 60_000) * 60_000;
  for (const w of windows) {
    const next = new CronTime(w, 'UTC').getNextDateFrom(new Date(minute - 1000)).toMillis();
    if (Math.floor(next / 60_000) * 60_000 === minute) return true;
  }
  return false;
}

/** Throws a message naming the bad expression; for config and request validation. */
export function checkWindows(windows: readonly string[]): string | null {
  for (const w of windows) {
    if (w.trim().split(/\s+/).length !== 5) return `window ${JSON.stringify(w)} must be a 5-field cron expression (minute hour day month weekday), e.g. "* 9-16 * * 1-5"`;
    try { new CronTime(w, 'UTC'); } catch (err) {
      return `window ${JSON.stringify(w)} is not a cron expression: ${(err as Error).message}`;
    }
  }
  return null;
}

const fmt = (ms: number): string => (ms >= 3_600_000 ? `${Math.round(ms / 360_000) / 10}h` : `${Math.round(ms / 6000) / 10}m`);

/**
 * Decide, for every candidate in order (highest snowflake score first, then host id),
 * whether it may be replaced now. Each admission counts against the budgets of the
 * ones after it, so the admitted set never exceeds a budget. A blocked candidate
 * names every guard that holds it, most fundamental first.
 *
 * `fleetWide` holds the finding keys (`kind\0key\0change`) shared fleet-wide, by cohort.
 */
export function evaluate(input: {
  candidates: readonly CandidateHost[];
  cohorts: ReadonlyMap<string, CohortCount>;
  fleetWide: ReadonlyMap<string, ReadonlySet<string>>;
  ledger: LedgerView;
  policy: GuardPolicy;
  now: number;
  requireInstanceId: boolean;
  /** Hosts asked for by name: evaluated even without replace findings (then blocked by `no-drift`). */
  named?: ReadonlySet<string>;
}): Evaluation {
  const { policy, now, ledger } = input;
  const inFlight = new Map(ledger.inFlight);
  let lastHour = ledger.lastHour;
  const windowOpen = inWindow(policy.windows, now);
  const order = [...input.candidates].sort((a, b) => (b.score ?? 0) - (a.score ?? 0) || (a.hostId < b.hostId ? -1 : a.hostId > b.hostId ? 1 : 0));
  const out: Evaluation = { admit: [], blocked: [] };
  for (const host of order) {
    const blocked: Block[] = [];
    const wide = input.fleetWide.get(host.cohort) ?? new Set<string>();
    const reasons = host.findings.filter((f) => !wide.has(`${f.kind}\0${f.key}\0${f.change}`));
    const silentCandidate = host.status === 'silent' && policy.replaceSilent;
    const named = input.named?.has(host.hostId) ?? false;
    if (host.findings.length === 0 && !silentCandidate && !named) continue; // nothing to replace it for: not a candidate
    if (ledger.paused) blocked.push({ guard: 'paused', why: 'enforcement is paused (drift actions resume)' });
    if (host.status === 'silent' && !policy.replaceSilent) blocked.push({ guard: 'silent', why: 'the host stopped reporting; silence is reported, and replaces only with replaceSilent: true' });
    if (!host.imageKnown) blocked.push({ guard: 'unknown-image', why: 'no baseline is stored for its image' });
    else if (!host.baselineVerified && !silentCandidate) blocked.push({ guard: 'unverified-baseline', why: 'its baseline is unsigned or the collector has no --baseline-pubkey to verify it' });
    if (host.findings.length > 0 && reasons.length === 0 && !silentCandidate) {
      blocked.push({ guard: 'fleet-wide', why: `all ${host.findings.length} of its replace findings are fleet-wide in cohort ${host.cohort}: rebake the image` });
    }
    if (host.findings.length === 0 && !silentCandidate) blocked.push({ guard: 'no-drift', why: 'it has no finding whose policy action is replace; use --force with a reason to replace it anyway' });
    if (reasons.length > 0 && !silentCandidate) {
      const persisted = reasons.some((f) => f.reports >= policy.minReports && now - f.firstSeen >= policy.minPersistMs);
      if (!persisted) {
        const best = reasons.reduce((a, b) => (b.reports > a.reports ? b : a));
        blocked.push({ guard: 'persistence', why: `its drift was seen in ${best.reports} report(s) over ${fmt(now - best.firstSeen)}; needs ${policy.minReports} reports over ${fmt(policy.minPersistMs)}` });
      }
    }
    if (ledger.busyHosts.has(host.hostId)) blocked.push({ guard: 'host-in-flight', why: 'an action on this host is already under way' });
    const last = ledger.lastActionAt.get(host.hostId);
    if (last !== undefined && now - last < policy.cooldownMs) blocked.push({ guard: 'cooldown', why: `last acted on ${fmt(now - last)} ago; cooldown is ${fmt(policy.cooldownMs)}` });
    const breaker = ledger.breakers.get(host.cohort);
    if (breaker !== undefined) blocked.push({ guard: 'breaker', why: `cohort ${host.cohort} breaker is open: ${breaker}` });
    if (!windowOpen) blocked.push({ guard: 'window', why: `outside the allowed windows ${policy.windows.join(', ')} (UTC)` });
    if (input.requireInstanceId && host.instanceId === null) blocked.push({ guard: 'no-instance', why: 'the host never reported a cloud instance id (agent reads cloud-init data or the DMI asset tag)' });
    const flying = inFlight.get(host.cohort) ?? 0;
    if (flying >= policy.maxInFlightPerCohort) blocked.push({ guard: 'in-flight', why: `cohort ${host.cohort} has ${flying} replacement(s) under way; the limit is ${policy.maxInFlightPerCohort}` });
    if (lastHour >= policy.maxPerHour) {
      blocked.push({ guard: 'per-hour', why: `${lastHour} replacement(s) started in the last hour; the limit is ${policy.maxPerHour}` });
    }
    const count = input.cohorts.get(host.cohort) ?? { hosts: 1, silent: 0 };
    const unhealthy = count.silent + flying + (host.status === 'silent' ? 0 : 1);
    const healthyAfter = (count.hosts - unhealthy) / Math.max(1, count.hosts);
    if (healthyAfter < policy.minHealthy) {
      blocked.push({ guard: 'min-healthy', why: `cohort ${host.cohort} would keep ${count.hosts - unhealthy} of ${count.hosts} hosts healthy (${count.silent} silent, ${flying} in flight), under ${policy.minHealthy}` });
    }
    const decision: Decision = { host, reasons, blocked };
    if (blocked.length > 0) { out.blocked.push(decision); continue; }
    out.admit.push(decision);
    inFlight.set(host.cohort, flying + 1);
    lastHour++;
  }
  return out;
}
