import type { ErrorCode } from '../../agent/protocol/errors.js';
import { MANIFEST_SCHEMA, type Manifest, type SectionName } from '../../agent/protocol/manifest.js';
import type { RuleSet } from '../../agent/protocol/rules.js';
import { FirstBootCheck } from '../../agent/engine/pins.js';
import type { FirstBoot } from '../../agent/protocol/pins.js';
import type { HostFlag, HostRow, SaveReport, Store, StoredBaseline } from '../store/store.js';
import type { StoredPins } from '../store/pins.js';
import { boundFindings, Defer, parseReportBody, ReportDecider, type CompareFn, type DecideReads, type Decision, type DecidedReport, type ParsedBody } from './decide.js';
import { HttpError } from './errors.js';
import type { ReportPool } from './pool.js';
import { locateManifestSections, type KnownSection, type LocatedSections, type LocateStats } from './sections.js';

export { boundFindings, COMPARE_CACHE_BYTES, digestsOf, MAX_STORED_FINDINGS, wireDigest, type CompareFn } from './decide.js';

/** The answer to one report. */
export interface IngestResult {
  accepted: boolean;
  seq: number;
  need: SectionName[];
  /** spoolDropped of an accepted report (bounded by the envelope schema), for /metrics. */
  spoolDropped: number;
}

/** A refusal, with the short reason counted in /metrics. */
export class Refusal extends HttpError {
  reason = 'refused';
}

function refuse(reason: string, code: ErrorCode, message: string, status: number): Refusal {
  const r = new Refusal(code, message, status);
  r.reason = reason;
  return r;
}

/**
 * Reports cheap enough to decide on the main thread when the collector has report
 * workers: a body of at most INLINE_MAX_BODY bytes (the section locator runs on it: one
 * linear pass, ~2 ms per MiB) of which at most INLINE_PARSE_BYTES are not byte-equal to
 * a baseline's section (what the depth check, JSON.parse and the schema see), whose
 * compare stays within INLINE_BOUNDS (server/http/decide.ts: entries parsed, entries
 * changed, lines of content diffed) and that needs no stored sections. Digest-only
 * reports, clean hosts' full reports and hosts drifted by a few entries qualify: the
 * worker hop (a copy, a thread switch) would cost them more than deciding them, and
 * a fleet that drifts only that much never starts a worker (an isolate with its own
 * heap and its own copy of the baselines).
 */
export const INLINE_MAX_BODY = 4 * 1024 * 1024;
export const INLINE_PARSE_BYTES = 1024 * 1024;

/** The locator's result when a body qualifies for a light decision on the main thread, else null. */
function lightPrecheck(bytes: Buffer, known: readonly KnownSection[]): { located: LocatedSections | null; stats: LocateStats } | null {
  if (bytes.length > INLINE_MAX_BODY) return null;
  const stats: LocateStats = { hashedBytes: 0 };
  const located = locateManifestSections(bytes, known, stats);
  if (bytes.length <= INLINE_PARSE_BYTES) return { located, stats };
  if (!located) return null;
  let parse = located.rest.length;
  for (const [name, section] of located.sections) if (!located.canonical.has(name)) parse += section.length;
  return parse <= INLINE_PARSE_BYTES ? { located, stats } : null;
}

/** Where a report was decided: on the main thread (no workers, or a light report) or in a report worker. */
export type DecidedWhere = 'main' | 'worker';

/** A report body as the HTTP layer hands it over: inflated bytes (for a worker) or already parsed (inline). */
export type ReportInput = { bytes: Buffer } | ParsedBody;

/**
 * Report ingestion on the main thread: each report is decided (parsed, checked against
 * its host's state and its image's baseline, compared; server/http/decide.ts) in a report
 * worker when the collector has a pool, else inline; the decision is stored here, in one
 * transaction, after checking that the host and its baseline did not move meanwhile.
 * Reports of one host are decided one at a time, in arrival order. Holds the parsed
 * baselines in memory (invalidated when a baseline is replaced).
 */
export class Ingest {
  private readonly baselines = new Map<string, StoredBaseline | null>();
  private readonly roles: ReadonlySet<string> | null;
  private readonly inline: ReportDecider;
  /** The tail of each host's chain of reports being decided (one at a time per host). */
  private readonly busy = new Map<number, Promise<unknown>>();

  private readonly write: (r: SaveReport) => Promise<void>;

  /**
   * `write` stores an accepted report and settles once it is committed (the group
   * commit in the daemon); by default a transaction of its own. `pool`: decide in
   * report workers.
   */
  constructor(private readonly deps: {
    store: Store; rules: RuleSet; compare: CompareFn; now: () => number; write?: (r: SaveReport) => Promise<void>; roles?: readonly string[] | null;
    pool?: ReportPool | null;
    /** Told where each report was decided: on the main thread or in a report worker (for /metrics). */
    decided?: (where: DecidedWhere) => void;
  }) {
    this.write = deps.write ?? ((r) => { deps.store.saveReport(r); return Promise.resolve(); });
    this.roles = deps.roles ? new Set(deps.roles) : null;
    this.inline = new ReportDecider({ rules: deps.rules, compare: deps.compare, prepare: false });
  }

  /** Whether reports are decided in worker threads (then the body parser only inflates). */
  get pooled(): boolean {
    return Boolean(this.deps.pool);
  }

  /** The baseline of an image, from memory or the store; null when none is stored. */
  baseline(imageId: string): StoredBaseline | null {
    let b = this.baselines.get(imageId);
    if (b === undefined) {
      b = this.deps.store.getBaseline(imageId) ?? null;
      this.baselines.set(imageId, b);
      if (b) this.share(imageId, b);
    }
    return b;
  }

  /** Hand a baseline to the deciders (inline and workers). */
  private share(imageId: string, b: StoredBaseline | null): void {
    this.inline.setBaseline(imageId, b);
    this.deps.pool?.setBaseline(imageId, b);
  }

  /** Load every stored baseline into memory and into the deciders (at start: a decider knows only the baselines it is given). */
  preload(): void {
    for (const imageId of this.deps.store.baselineImageIds()) this.baseline(imageId);
  }

  /** The canonical sections of the baselines, for the inline body parser's fast path. */
  knownSections(): readonly KnownSection[] {
    return this.inline.knownSections();
  }

  /** Reload a baseline (after PUT /v1/baselines/{imageId}) and hand it to the deciders. */
  invalidate(imageId: string): void {
    this.baselines.delete(imageId);
    const b = this.baseline(imageId);
    if (!b) this.share(imageId, null);
  }

  /**
   * Handle one report for the host its node key belongs to (`rowid`; `read` reads the
   * host's row by its key once no write of it is queued, undefined when the key was
   * revoked); settles after
   * the report is stored (or refused: rejects with a Refusal for a 4xx, an HttpError
   * 503 when the report workers are all busy and their queue is full).
   */
  async report(rowid: number, read: () => Promise<HostRow | undefined>, input: ReportInput): Promise<IngestResult> {
    const prev = this.busy.get(rowid);
    const mine = (async () => {
      if (prev) await prev.catch(() => {});
      return this.reportNow(read, input);
    })();
    const tail = mine.catch(() => {});
    this.busy.set(rowid, tail);
    try { return await mine; } finally {
      if (this.busy.get(rowid) === tail) this.busy.delete(rowid);
    }
  }

  private async reportNow(read: () => Promise<HostRow | undefined>, input: ReportInput): Promise<IngestResult> {
    const host = await read();
    if (!host) throw refuse('unauthorized', 'DRIFT_ERR_UNAUTHORIZED', 'node key revoked while the report was read; the agent must enroll again', 401);
    const reads: DecideReads = {
      pins: () => Promise.resolve(this.deps.store.pins.pinsOf(host.rowid)),
      sections: () => Promise.resolve(this.deps.store.hostSections(host)),
    };
    const job = { host, now: this.deps.now(), bytes: 'bytes' in input ? input.bytes : Buffer.alloc(0) };
    let decision: Decision | null = null;
    if ('bytes' in input && this.deps.pool) {
      const pool = this.deps.pool;
      const pre = lightPrecheck(input.bytes, this.inline.knownSections());
      if (pre) {
        try {
          decision = await this.inline.decide({ ...job, light: true }, reads, parseReportBody(input.bytes, this.inline.knownSections(), pre));
        } catch (err) {
          // Past the main thread's bounds, or it needs the stored sections: the worker decides it.
          if (!(err instanceof Defer)) throw err;
        }
      }
      if (decision) this.deps.decided?.('main');
      else {
        decision = await pool.run(job, reads);
        this.deps.decided?.('worker');
      }
    } else {
      decision = await this.inline.decide(job, reads, 'bytes' in input ? undefined : input);
      this.deps.decided?.('main');
    }
    switch (decision.kind) {
      case 'refused': throw refuse(decision.reason, decision.code, decision.message, decision.status);
      case 'need': return { accepted: false, seq: decision.seq, need: decision.need, spoolDropped: 0 };
      case 'save': break;
      default: { const never: never = decision; throw new Error(`unknown decision ${JSON.stringify(never)}`); }
    }
    const d = decision.report;
    // Nothing but this chain writes reports of the host; enrollment and re-pins may have moved it meanwhile.
    const now = await read();
    if (!now) throw refuse('unauthorized', 'DRIFT_ERR_UNAUTHORIZED', 'node key revoked while the report was checked; the agent must enroll again', 401);
    if (now.epoch !== host.epoch || now.lastSeq !== host.lastSeq || now.stateId !== host.stateId) {
      throw refuse('conflict', 'DRIFT_ERR_CONFLICT', `host ${host.id} was re-enrolled or re-pinned while its report seq ${d.seq} was checked; send the report again`, 409);
    }
    const baseline = d.imageId === null ? null : this.baseline(d.imageId);
    if ((baseline?.digest ?? null) !== d.baselineDigest) {
      throw refuse('conflict', 'DRIFT_ERR_CONFLICT', `the baseline of image ${d.imageId ?? '(none)'} was replaced while report seq ${d.seq} of host ${host.id} was compared with it; send the report again`, 409);
    }
    await this.write(this.toSave(now, d, baseline));
    return { accepted: true, seq: d.seq, need: [], spoolDropped: d.spoolDropped };
  }

  private toSave(host: HostRow, d: DecidedReport, baseline: StoredBaseline | null): SaveReport {
    const save: SaveReport = {
      host, seq: d.seq, now: this.deps.now(), hostname: d.hostname, imageId: d.imageId, ...this.claims(host, d.roleClaim, d.imageId, baseline),
      digests: d.digests, kind: d.kind, baseline, machineId: d.machineId,
      ...(d.instanceId !== undefined ? { instanceId: d.instanceId } : {}),
    };
    if (d.sections) save.sections = d.sections;
    if (d.prepared) save.prepared = d.prepared;
    if (d.findings) { save.findings = d.findings; save.omitted = d.omitted ?? null; }
    if (d.unread) save.unread = d.unread;
    if (d.pins) save.pins = d.pins;
    return save;
  }

  /** Bytes (estimated) the inline compare cache holds now (each report worker bounds its own alike). */
  cacheBytes(): number {
    return this.inline.cacheBytes();
  }

  /**
   * The cohort role and flags of a report. A host chooses neither its cohort nor its
   * image: a role outside the collector's `roles` list is flagged and the host kept in
   * the role it held while trusted, else its image's default cohort (role null), and an image without a stored baseline is
   * flagged (the host is unknown-image, compared with nothing).
   */
  private claims(host: HostRow, claim: string | null, imageId: string | null, baseline: StoredBaseline | null): { role: string | null; flags: HostFlag[] } {
    const flags: HostFlag[] = [];
    let role = claim ?? host.role;
    if (role !== null && this.roles && !this.roles.has(role)) {
      flags.push({
        claim: 'role', value: role,
        why: `role ${JSON.stringify(role)} is not one of the collector's roles (${[...this.roles].map((r) => JSON.stringify(r)).join(', ') || 'none'}); the host stays in its image's default cohort: add the role to the collector's roles list, or fix the agent's --role`,
      });
      // The role it held while trusted, else the image's default cohort; never the claim.
      role = host.role !== null && this.roles.has(host.role) ? host.role : null;
    }
    if (imageId !== null && !baseline) {
      flags.push({ claim: 'image', value: imageId, why: `no baseline of image ${JSON.stringify(imageId)} is stored on the collector: the host is unknown-image and compared with nothing; push the image's baseline (drift baseline push FILE) or check the host's image stamp (drift baseline --stamp writes it at bake time)` });
    }
    return { role, flags };
  }

  /**
   * An operator's re-pin of a host (all its pins, or `paths`): its stored state is
   * compared again with the paths re-pinned to what the expect rules accept now;
   * pins, findings and the journal entry are written in one transaction. The
   * default user's keys stay held to the launch keys of its last report.
   */
  repin(host: HostRow, paths: readonly string[], by: string | null, reason: string): { changed: string[]; findings: number; firstBoot: FirstBoot } {
    const baseline = host.imageId ? this.baseline(host.imageId) : null;
    if (!baseline || !host.digests) {
      throw new HttpError('DRIFT_ERR_CONFLICT', `host ${host.id} has ${host.digests ? `no baseline for image ${host.imageId ?? '(none)'}` : 'not reported yet'}, so it has nothing to pin; re-pin after it reports against a baseline`, 409);
    }
    const b = baseline.baseline;
    const sections = this.deps.store.hostSections(host);
    if (!sections.files || !b.files) throw new HttpError('DRIFT_ERR_CONFLICT', `host ${host.id} reports no files section, so it has nothing to pin`, 409);
    const stored: StoredPins | null = this.deps.store.pins.pinsOf(host.rowid);
    const instanceKeys = stored?.instanceKeys ?? null;
    const hostInfo = { hostname: host.hostname, machineId: host.machineId ?? host.id, ...(instanceKeys ? { instanceKeys } : {}) };
    const manifest: Manifest = {
      schema: MANIFEST_SCHEMA, host: hostInfo, collectedAt: new Date(this.deps.now()).toISOString(), agent: { version: '' },
      digests: host.digests, ...sections, unread: host.unread,
    };
    const t = this.deps.now();
    const check = new FirstBootCheck({ baseline: b, manifest, rules: this.deps.rules }, { book: stored?.book ?? null, now: new Date(t).toISOString(), repin: { paths } });
    const compared = boundFindings(this.deps.compare({ baseline: b, manifest, rules: this.deps.rules, firstBoot: check }).filter((f) => f.action !== 'ignore'));
    const r = check.result();
    this.deps.store.repin(host, { book: r.book, changed: r.changed, keys: r.firstBoot.keys, instanceKeys, journal: { action: 'repin', by, reason } }, compared.findings, compared.omitted, t);
    return { changed: r.changed, findings: compared.findings.length + (compared.omitted?.count ?? 0), firstBoot: r.firstBoot };
  }
}

