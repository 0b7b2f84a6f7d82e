import { randomUUID } from 'node:crypto';
import type Database from 'better-sqlite3';
import { DriftError } from '../../agent/protocol/errors.js';
import type { HostRow, Store } from '../store/store.js';
import { computeFleet, type CohortHost, type CohortOptions, type FindingKey } from './cohorts.js';
import {
  cohortKey, evaluate, type Block, type CandidateFinding, type CandidateHost, type CohortCount, type Decision,
  type GuardName, type GuardPolicy, type LedgerView,
} from './guards.js';

/**
 * The actions ledger (DESIGN.md §6): every replacement drift admits, and each state
 * it goes through, in the collector's database. The collector keeps the ledger and
 * `drift audit` acts: admission re-reads the fleet and the ledger and checks every
 * guard inside one write transaction, so two audit daemons, or a daemon and an
 * operator, can never exceed a budget together.
 */

export const ACTION_STATES = ['planned', 'started', 'succeeded', 'failed', 'blocked', 'cancelled', 'verified'] as const;
export type ActionState = (typeof ACTION_STATES)[number];

/** Which state may follow which. `started` → `started` records progress or another attempt. */
const NEXT: Record<ActionState, readonly ActionState[]> = {
  planned: ['started', 'failed', 'cancelled'],
  started: ['started', 'succeeded', 'failed', 'cancelled'],
  succeeded: ['verified', 'failed'],
  failed: [],
  blocked: [],
  cancelled: [],
  verified: [],
};

/** States in which an action still holds its cohort's in-flight budget. */
const IN_FLIGHT: readonly ActionState[] = ['planned', 'started'];

/** One replacement as the ledger keeps it. Times are ms since the epoch. */
export interface Action {
  id: string;
  hostId: string;
  hostname: string;
  instanceId: string | null;
  cohort: string;
  reason: string;
  findings: FindingKey[];
  provider: string;
  actor: string;
  /** The operator's journaled reason when guards were bypassed with --force; null when guarded. */
  forced: string | null;
  state: ActionState;
  attempts: number;
  providerRef: string | null;
  /** What the provider keeps between steps (JSON), so a restart resumes without repeating one. */
  progress: unknown;
  error: string | null;
  /** The drift audit carrying it out, and until when (ms) no other audit may act on it. */
  owner: string | null;
  leaseUntil: number | null;
  createdAt: number;
  updatedAt: number;
  startedAt: number | null;
  finishedAt: number | null;
}

export interface ActionEvent {
  at: number;
  state: ActionState;
  note: string;
}

/** A candidate that a guard holds back, with every guard that does. */
export interface BlockedCandidate {
  hostId: string;
  hostname: string;
  cohort: string;
  blocked: Block[];
}

/** What would be replaced now, and why not the others. */
export interface Plan {
  paused: boolean;
  admit: { hostId: string; hostname: string; instanceId: string | null; cohort: string; reason: string; findings: FindingKey[] }[];
  blocked: BlockedCandidate[];
}

export interface AdmitRequest {
  policy: GuardPolicy;
  provider: string;
  actor: string;
  requireInstanceId: boolean;
  /** Only these hosts (an operator's `drift replace HOST`); absent: every candidate. */
  hosts?: readonly string[];
  /** The operator's reason; the findings explain an audit's. */
  reason?: string;
  /** Bypass the guards (never the one action per host at a time); journaled. */
  force?: string;
}

export interface AdmitResult {
  admitted: Action[];
  blocked: BlockedCandidate[];
}

/** Bounds on what an actor may write into the ledger. */
export const LIMITS = Object.freeze({ text: 2000, progress: 64 * 1024, ref: 512, provider: 64, list: 1000 });

export interface LedgerOptions {
  /** A host whose last report is older than this (ms) is silent (the collector's --silent-after). */
  silentAfterMs: number;
  /** True when the collector verifies baseline signatures (it has --baseline-pubkey keys). */
  verifiesBaselines: boolean;
  cohorts?: Partial<CohortOptions>;
}

type Row = Record<string, unknown>;

const str = (v: unknown): string | null => (v === null || v === undefined ? null : String(v));
const num = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));

function clip(text: string, max: number = LIMITS.text): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

export class Ledger {
  private readonly db: Database.Database;

  constructor(private readonly store: Store, private readonly opts: LedgerOptions) {
    this.db = store.db;
  }

  // ── facts ────────────────────────────────────────────────────────────────

  /** Candidates, cohort head counts and fleet-wide keys, read from the store at `now`. */
  private facts(now: number): { candidates: CandidateHost[]; cohorts: Map<string, CohortCount>; fleetWide: Map<string, Set<string>>; hosts: HostRow[] } {
    const hosts = this.store.listHosts();
    const keys = new Map<number, FindingKey[]>();
    for (const k of this.store.findingKeys()) {
      let list = keys.get(k.host);
      if (!list) keys.set(k.host, (list = []));
      list.push({ kind: k.kind, key: k.key, change: k.change });
    }
    const cohortHosts: CohortHost[] = hosts.map((h) => ({ id: h.id, hostname: h.hostname, imageId: h.imageId, role: h.role, reported: h.lastSeen !== null, findings: keys.get(h.rowid) ?? [] }));
    const fleet = computeFleet(cohortHosts, this.opts.cohorts ?? {});
    const fleetWide = new Map<string, Set<string>>();
    for (const c of fleet.cohorts) fleetWide.set(cohortKey(c.imageId, c.role), new Set(c.fleetWide.map((f) => `${f.kind}\0${f.key}\0${f.change}`)));
    const instances = new Map<number, string>();
    for (const r of this.db.prepare('SELECT host, instance_id FROM host_instances').all() as Row[]) instances.set(Number(r['host']), String(r['instance_id']));
    const images = new Map<string, { known: boolean; verified: boolean }>();
    const baselineKey = this.db.prepare('SELECT key_id FROM baselines WHERE image_id = ?');
    const verified = (imageId: string | null): { known: boolean; verified: boolean } => {
      if (imageId === null) return { known: false, verified: false };
      let v = images.get(imageId);
      if (v === undefined) {
        const row = baselineKey.get(imageId) as Row | undefined;
        v = { known: row !== undefined, verified: row !== undefined && this.opts.verifiesBaselines && row['key_id'] !== null };
        images.set(imageId, v);
      }
      return v;
    };
    const history = this.db.prepare('SELECT first_at, last_at, first_seq, last_seq FROM history WHERE host = ? AND last_at >= ?');
    // A host whose replacement succeeded is retired: it no longer counts in its cohort, silent or not.
    const retired = new Set(this.db.prepare(`SELECT DISTINCT host_id FROM actions WHERE state IN ('succeeded','verified')`).pluck().all() as string[]);
    const cohorts = new Map<string, CohortCount>();
    const candidates: CandidateHost[] = [];
    for (const h of hosts) {
      if (retired.has(h.id)) continue;
      const cohort = cohortKey(h.imageId, h.role);
      const silent = h.lastSeen === null || now - h.lastSeen > this.opts.silentAfterMs;
      const count = cohorts.get(cohort) ?? { hosts: 0, silent: 0 };
      count.hosts++;
      if (silent) count.silent++;
      cohorts.set(cohort, count);
      const findings: CandidateFinding[] = [];
      if (h.findings > 0) {
        for (const f of this.store.findings(h)) {
          if (f.finding.action !== 'replace') continue;
          let reports = 0;
          for (const r of history.all(h.rowid, f.firstSeen) as Row[]) {
            // A run that began before the finding counts once: its seqs' times are not kept.
            reports += Number(r['first_at']) >= f.firstSeen ? Number(r['last_seq']) - Number(r['first_seq']) + 1 : 1;
          }
          findings.push({ kind: f.finding.kind, key: f.finding.key, change: f.finding.change, firstSeen: f.firstSeen, reports });
        }
      }
      const image = verified(h.imageId);
      candidates.push({
        hostId: h.id, hostname: h.hostname, instanceId: instances.get(h.rowid) ?? null, cohort,
        status: silent ? 'silent' : !image.known ? 'unknown-image' : h.findings > 0 ? 'drifted' : 'clean',
        imageKnown: image.known, baselineVerified: image.verified, findings, score: fleet.scores.get(h.id) ?? null,
      });
    }
    return { candidates, cohorts, fleetWide, hosts };
  }

  /** The ledger's budgets and holds at `now`. */
  view(now: number, cooldownMs: number): LedgerView {
    const inFlight = new Map<string, number>();
    for (const r of this.db.prepare(`SELECT cohort, count(*) AS n FROM actions WHERE state IN (${IN_FLIGHT.map((x) => `'${x}'`).join(',')}) GROUP BY cohort`).all() as Row[]) {
      inFlight.set(String(r['cohort']), Number(r['n']));
    }
    const counted = `state != 'blocked' AND NOT (state = 'cancelled' AND started_at IS NULL)`;
    const lastHour = Number(this.db.prepare(`SELECT count(*) FROM actions WHERE created_at > ? AND ${counted}`).pluck().get(now - 3_600_000));
    const busyHosts = new Set(this.db.prepare(`SELECT DISTINCT host_id FROM actions WHERE state IN ('planned','started','succeeded')`).pluck().all() as string[]);
    const lastActionAt = new Map<string, number>();
    for (const r of this.db.prepare(`SELECT host_id, max(created_at) AS at FROM actions WHERE created_at > ? AND ${counted} GROUP BY host_id`).all(now - cooldownMs) as Row[]) {
      lastActionAt.set(String(r['host_id']), Number(r['at']));
    }
    const breakers = new Map<string, string>();
    for (const r of this.db.prepare('SELECT cohort, reason FROM breakers').all() as Row[]) breakers.set(String(r['cohort']), String(r['reason']));
    return { paused: this.paused().paused, inFlight, lastHour, busyHosts, lastActionAt, breakers };
  }

  private evaluate(now: number, policy: GuardPolicy, requireInstanceId: boolean, named?: ReadonlySet<string>) {
    const f = this.facts(now);
    const candidates = named ? f.candidates.filter((c) => named.has(c.hostId)) : f.candidates;
    return evaluate({
      candidates, cohorts: f.cohorts, fleetWide: f.fleetWide, ledger: this.view(now, policy.cooldownMs), policy, now, requireInstanceId,
      ...(named ? { named } : {}),
    });
  }

  // ── plan and admit ───────────────────────────────────────────────────────

  /** Dry run: what would be admitted now, and which guards hold back every other candidate. Writes nothing. */
  plan(now: number, policy: GuardPolicy, requireInstanceId: boolean): Plan {
    const e = this.evaluate(now, policy, requireInstanceId);
    return { paused: this.paused().paused, admit: e.admit.map(planned), blocked: e.blocked.map(blockedOf) };
  }

  /**
   * Admit replacements: in one IMMEDIATE transaction, read the fleet and the ledger,
   * check every guard, and insert the admitted actions as `planned`. A host asked for
   * by name that is held back is journaled as a `blocked` action, so an operator's
   * refused request leaves a trace.
   */
  admit(now: number, req: AdmitRequest): AdmitResult {
    const provider = clip(req.provider, LIMITS.provider);
    const tx = this.db.transaction((): AdmitResult => {
      const named = req.hosts ? new Set(req.hosts) : undefined;
      if (named) {
        for (const id of named) {
          if (!this.store.hostById(id)) throw new DriftError('DRIFT_ERR_NOT_FOUND', `no host ${id} has enrolled; list hosts with drift scan --collector URL --fleet`);
        }
      }
      if (req.force !== undefined) {
        if (!named || named.size === 0) throw new DriftError('DRIFT_ERR_USAGE', 'force applies to hosts named one by one, never to the whole fleet');
        return this.forced(now, req, named, provider);
      }
      const e = this.evaluate(now, req.policy, req.requireInstanceId, named);
      const admitted = e.admit.map((d) => this.insert(now, d, provider, req, 'planned', null));
      if (named) for (const d of e.blocked) this.insert(now, d, provider, req, 'blocked', d.blocked.map((b) => `${b.guard}: ${b.why}`).join('; '));
      return { admitted, blocked: e.blocked.map(blockedOf) };
    });
    return tx.immediate();
  }

  private forced(now: number, req: AdmitRequest, named: ReadonlySet<string>, provider: string): AdmitResult {
    const facts = this.facts(now);
    const busy = this.view(now, 0).busyHosts;
    const out: AdmitResult = { admitted: [], blocked: [] };
    for (const host of facts.candidates.filter((c) => named.has(c.hostId))) {
      const d: Decision = { host, reasons: host.findings, blocked: [] };
      if (busy.has(host.hostId)) {
        d.blocked.push({ guard: 'host-in-flight', why: 'an action on this host is already under way; --force never acts twice on one host' });
        out.blocked.push(blockedOf(d));
        this.insert(now, d, provider, req, 'blocked', 'host-in-flight: an action on this host is already under way');
        continue;
      }
      out.admitted.push(this.insert(now, d, provider, req, 'planned', null));
    }
    return out;
  }

  private insert(now: number, d: Decision, provider: string, req: AdmitRequest, state: 'planned' | 'blocked', error: string | null): Action {
    const id = randomUUID();
    const reason = clip(req.reason ?? reasonOf(d));
    const findings = d.reasons.slice(0, 50).map((f) => ({ kind: f.kind, key: f.key, change: f.change }));
    this.db.prepare(`INSERT INTO actions (id, host_id, hostname, instance_id, cohort, reason, findings, provider, actor, forced, state, error, created_at, updated_at)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(
      id, d.host.hostId, d.host.hostname, d.host.instanceId, d.host.cohort, reason, JSON.stringify(findings), provider,
      clip(req.actor, 64), req.force === undefined ? null : clip(req.force), state, error === null ? null : clip(error), now, now,
    );
    const note = state === 'blocked' ? `blocked by ${error ?? ''}` : req.force !== undefined ? `admitted by force: ${clip(req.force)}` : `admitted: ${reason}`;
    this.event(id, now, state, note);
    return this.get(id) as Action;
  }

  private event(id: string, at: number, state: ActionState, note: string): void {
    const seq = Number(this.db.prepare('SELECT coalesce(max(seq), 0) + 1 FROM action_events WHERE action_id = ?').pluck().get(id));
    this.db.prepare('INSERT INTO action_events (action_id, seq, at, state, note) VALUES (?, ?, ?, ?, ?)').run(id, seq, at, state, clip(note));
  }

  // ── state ────────────────────────────────────────────────────────────────

  /**
   * Move an action on (`NEXT` says which moves are legal): a refused move is a
   * DRIFT_ERR_CONFLICT naming both states, so an actor that lost track (two daemons,
   * a restart) learns it and changes nothing.
   */
  update(now: number, id: string, change: { state: ActionState; providerRef?: string; progress?: unknown; error?: string; attempt?: boolean; note?: string; owner?: string; leaseMs?: number }): Action {
    return this.db.transaction((): Action => {
      const a = this.get(id);
      if (!a) throw new DriftError('DRIFT_ERR_NOT_FOUND', `no action ${id}; list them with drift actions list`);
      if (!NEXT[a.state].includes(change.state)) {
        throw new DriftError('DRIFT_ERR_CONFLICT', `action ${id} is ${a.state}; it cannot become ${change.state} (${NEXT[a.state].length ? `next: ${NEXT[a.state].join(', ')}` : 'it is final'})`);
      }
      // One audit acts on an action at a time: another's live lease refuses the move (an
      // operator's cancel, which names no owner, always goes through).
      if (change.owner !== undefined && a.owner !== null && a.owner !== change.owner && (a.leaseUntil ?? 0) > now) {
        throw new DriftError('DRIFT_ERR_CONFLICT', `action ${id} is being carried out by ${a.owner} until ${new Date(a.leaseUntil ?? 0).toISOString()}; it resumes elsewhere only after that`);
      }
      let progress: string | undefined;
      if (change.progress !== undefined) {
        progress = JSON.stringify(change.progress);
        if (progress.length > LIMITS.progress) throw new DriftError('DRIFT_ERR_TOO_LARGE', `progress of action ${id} is ${progress.length} bytes of JSON; at most ${LIMITS.progress}`);
      }
      const final = change.state === 'succeeded' || change.state === 'failed' || change.state === 'cancelled' || change.state === 'verified';
      this.db.prepare(`UPDATE actions SET state = @state, updated_at = @now,
          attempts = attempts + @attempt,
          provider_ref = coalesce(@ref, provider_ref), progress = coalesce(@progress, progress), error = coalesce(@error, error),
          owner = coalesce(@owner, owner), lease_until = CASE WHEN @owner IS NULL THEN lease_until ELSE @lease END,
          started_at = CASE WHEN @state = 'started' THEN coalesce(started_at, @now) ELSE started_at END,
          finished_at = CASE WHEN @final THEN @now ELSE finished_at END
        WHERE id = @id`).run({
        id, now, state: change.state, attempt: change.attempt ? 1 : 0, ref: change.providerRef === undefined ? null : clip(change.providerRef, LIMITS.ref),
        progress: progress ?? null, error: change.error === undefined ? null : clip(change.error), final: final ? 1 : 0,
        owner: change.owner === undefined ? null : clip(change.owner, 128), lease: now + Math.min(Math.max(change.leaseMs ?? 300_000, 1000), 3_600_000),
      });
      if (change.state !== a.state || change.note !== undefined || change.error !== undefined) {
        this.event(id, now, change.state, change.note ?? change.error ?? `${a.state} → ${change.state}`);
      }
      return this.get(id) as Action;
    }).immediate();
  }

  /** Cancel a planned or started action (the audit daemon stops acting on it at its next step). */
  cancel(now: number, id: string, why: string): Action {
    return this.update(now, id, { state: 'cancelled', note: `cancelled: ${clip(why)}` });
  }

  get(id: string): Action | undefined {
    const r = this.db.prepare('SELECT * FROM actions WHERE id = ?').get(id) as Row | undefined;
    return r ? toAction(r) : undefined;
  }

  events(id: string): ActionEvent[] {
    return (this.db.prepare('SELECT at, state, note FROM action_events WHERE action_id = ? ORDER BY seq').all(id) as Row[])
      .map((r) => ({ at: Number(r['at']), state: String(r['state']) as ActionState, note: String(r['note']) }));
  }

  /** Newest first; filtered by states and host; at most `limit` (≤ LIMITS.list). */
  list(filter: { states?: readonly ActionState[]; hostId?: string; limit?: number } = {}): Action[] {
    const where: string[] = [];
    const args: unknown[] = [];
    if (filter.states?.length) { where.push(`state IN (${filter.states.map(() => '?').join(',')})`); args.push(...filter.states); }
    if (filter.hostId !== undefined) { where.push('host_id = ?'); args.push(filter.hostId); }
    const limit = Math.min(Math.max(1, filter.limit ?? 100), LIMITS.list);
    const sql = `SELECT * FROM actions ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at DESC, id LIMIT ${limit}`;
    return (this.db.prepare(sql).all(...args) as Row[]).map(toAction);
  }

  /** Actions counted by provider and final-ish state (for /metrics). */
  counts(): { provider: string; state: string; n: number }[] {
    return (this.db.prepare('SELECT provider, state, count(*) AS n FROM actions GROUP BY provider, state ORDER BY provider, state').all() as Row[])
      .map((r) => ({ provider: String(r['provider']), state: String(r['state']), n: Number(r['n']) }));
  }

  // ── switches ─────────────────────────────────────────────────────────────

  paused(): { paused: boolean; reason: string | null; updatedAt: number } {
    const r = this.db.prepare('SELECT paused, reason, updated_at FROM enforcement WHERE id = 1').get() as Row;
    return { paused: Number(r['paused']) === 1, reason: str(r['reason']), updatedAt: Number(r['updated_at']) };
  }

  setPaused(now: number, paused: boolean, reason: string | null): void {
    this.db.prepare('UPDATE enforcement SET paused = ?, reason = ?, updated_at = ? WHERE id = 1').run(paused ? 1 : 0, reason === null ? null : clip(reason), now);
  }

  breakers(): { cohort: string; openedAt: number; reason: string; actionId: string | null }[] {
    return (this.db.prepare('SELECT cohort, opened_at, reason, action_id FROM breakers ORDER BY cohort').all() as Row[])
      .map((r) => ({ cohort: String(r['cohort']), openedAt: Number(r['opened_at']), reason: String(r['reason']), actionId: str(r['action_id']) }));
  }

  openBreaker(now: number, cohort: string, reason: string, actionId: string | null): void {
    this.db.prepare('INSERT INTO breakers (cohort, opened_at, reason, action_id) VALUES (?, ?, ?, ?) ON CONFLICT(cohort) DO NOTHING')
      .run(clip(cohort, 300), now, clip(reason), actionId);
  }

  /** Close a cohort's breaker (after a rebake); false when none was open. */
  closeBreaker(cohort: string): boolean {
    return this.db.prepare('DELETE FROM breakers WHERE cohort = ?').run(cohort).changes > 0;
  }

  // ── replacement checks ───────────────────────────────────────────────────

  /**
   * How the replacement of an action is doing: among the hosts of its cohort that
   * enrolled after it started (or, when given, whose instance id is one of
   * `instanceIds`), one that reported clean, or one that reported drifted. A new host
   * drifted in any way counts as drifted: the fresh instance is not what the image says.
   */
  replacement(id: string, instanceIds: readonly string[] = []): { state: 'waiting' | 'clean' | 'drifted'; hostId: string | null; findings: FindingKey[] } {
    const a = this.get(id);
    if (!a) throw new DriftError('DRIFT_ERR_NOT_FOUND', `no action ${id}; list them with drift actions list`);
    const since = a.startedAt ?? a.createdAt;
    const wanted = new Set(instanceIds);
    const instances = new Map<number, string>();
    for (const r of this.db.prepare('SELECT host, instance_id FROM host_instances').all() as Row[]) instances.set(Number(r['host']), String(r['instance_id']));
    let drifted: { hostId: string; findings: FindingKey[] } | null = null;
    for (const h of this.store.listHosts()) {
      if (h.id === a.hostId || cohortKey(h.imageId, h.role) !== a.cohort || h.lastSeen === null) continue;
      const inst = instances.get(h.rowid);
      const isNew = wanted.size > 0 ? inst !== undefined && wanted.has(inst) : h.enrolledAt >= since;
      if (!isNew || h.baselineDigest === null) continue;
      if (h.findings === 0) return { state: 'clean', hostId: h.id, findings: [] };
      drifted ??= { hostId: h.id, findings: this.store.findings(h).map((f) => ({ kind: f.finding.kind, key: f.finding.key, change: f.finding.change })) };
    }
    return drifted ? { state: 'drifted', ...drifted } : { state: 'waiting', hostId: null, findings: [] };
  }

  /**
   * The verify pass: a succeeded replacement is `verified` once the old host has gone
   * silent (or was removed) and a new host of its cohort reported clean. One whose new
   * host came back with a finding of the action's own fails and opens the cohort's
   * breaker: the image itself carries the drift, rebake it.
   */
  verify(now: number): { verified: Action[]; tripped: Action[]; waiting: Action[] } {
    const out = { verified: [] as Action[], tripped: [] as Action[], waiting: [] as Action[] };
    for (const a of this.list({ states: ['succeeded'], limit: LIMITS.list })) {
      const old = this.store.hostById(a.hostId);
      const oldGone = !old || old.lastSeen === null || now - old.lastSeen > this.opts.silentAfterMs;
      const r = this.replacement(a.id);
      const same = r.findings.filter((f) => a.findings.some((g) => g.kind === f.kind && g.key === f.key && g.change === f.change));
      if (r.state === 'drifted' && same.length > 0) {
        const why = `replacement ${r.hostId ?? ''} drifted the same way (${same.map((f) => `${f.kind} ${f.key} ${f.change}`).join('; ')}): the image is suspect, rebake it`;
        this.openBreaker(now, a.cohort, why, a.id);
        out.tripped.push(this.update(now, a.id, { state: 'failed', error: why }));
      } else if (r.state === 'clean' && oldGone) {
        out.verified.push(this.update(now, a.id, { state: 'verified', note: `old host silent; replacement ${r.hostId ?? ''} reported clean` }));
      } else {
        out.waiting.push(a);
      }
    }
    return out;
  }
}

function reasonOf(d: Decision): string {
  if (d.reasons.length === 0) return d.host.status === 'silent' ? 'silent host (replaceSilent)' : 'operator request';
  const shown = d.reasons.slice(0, 3).map((f) => `${f.kind} ${f.key} ${f.change}`).join('; ');
  return `${d.reasons.length} finding(s) to replace for: ${shown}${d.reasons.length > 3 ? ` and ${d.reasons.length - 3} more` : ''}`;
}

function planned(d: Decision): Plan['admit'][number] {
  return {
    hostId: d.host.hostId, hostname: d.host.hostname, instanceId: d.host.instanceId, cohort: d.host.cohort, reason: reasonOf(d),
    findings: d.reasons.map((f) => ({ kind: f.kind, key: f.key, change: f.change })),
  };
}

function blockedOf(d: Decision): BlockedCandidate {
  return { hostId: d.host.hostId, hostname: d.host.hostname, cohort: d.host.cohort, blocked: d.blocked };
}

function toAction(r: Row): Action {
  return {
    id: String(r['id']), hostId: String(r['host_id']), hostname: String(r['hostname']), instanceId: str(r['instance_id']),
    cohort: String(r['cohort']), reason: String(r['reason']), findings: JSON.parse(String(r['findings'])) as FindingKey[],
    provider: String(r['provider']), actor: String(r['actor']), forced: str(r['forced']), state: String(r['state']) as ActionState,
    attempts: Number(r['attempts']), providerRef: str(r['provider_ref']),
    progress: r['progress'] === null ? null : (JSON.parse(String(r['progress'])) as unknown), error: str(r['error']),
    owner: str(r['owner']), leaseUntil: num(r['lease_until']),
    createdAt: Number(r['created_at']), updatedAt: Number(r['updated_at']), startedAt: num(r['started_at']), finishedAt: num(r['finished_at']),
  };
}

/** Every guard name a blocked answer carries, counted (for drift_guard_blocks_total). */
export function guardCounts(blocked: readonly BlockedCandidate[]): Map<GuardName, number> {
  const out = new Map<GuardName, number>();
  for (const b of blocked) for (const g of b.blocked) out.set(g.guard, (out.get(g.guard) ?? 0) + 1);
  return out;
}
