import { createHash } from 'node:crypto';
import { deflateRawSync } from 'node:zlib';
import { computeDigests, sameDigests } from '../../agent/protocol/digests.js';
import { canonicalJson, digestOf } from '../../agent/protocol/canonical.js';
import type { ErrorCode } from '../../agent/protocol/errors.js';
import type { Finding } from '../../agent/protocol/finding.js';
import { LIMITS, MANIFEST_SCHEMA, SECTIONS, type Digests, type Manifest, type SectionName, type Sections, type Unread } from '../../agent/protocol/manifest.js';
import { SEVERITIES, type RuleSet } from '../../agent/protocol/rules.js';
import type { CompareInput } from '../../agent/engine/compare.js';
import { FirstBootCheck } from '../../agent/engine/pins.js';
import { PINS_SCHEMA, type FirstBoot, type PinBook } from '../../agent/protocol/pins.js';
import type { HostRow, OmittedFindings, PreparedSection, StoredBaseline } from '../store/store.js';
import type { PinWrite, StoredPins } from '../store/pins.js';
import { sectionDelta, type SectionDelta } from '../store/delta.js';
import { packJson } from '../store/pack.js';

export type { PreparedSection };
import { HttpError } from './errors.js';
import { jsonDepthExceededSync, locateManifestSections, MAX_JSON_DEPTH, type KnownSection, type LocatedSections, type LocateStats } from './sections.js';
import { firstIssue, ManifestHeadSchema, ReportEnvelopeSchema, SectionSchemas, SEQ_AHEAD_MAX_MS, type ReportEnvelope } from './wire.js';

/**
 * Deciding on one authenticated report: parse its body, check it against its host's
 * state and its image's baseline, compare, and bound the findings. Pure of the store:
 * what it needs of the database comes in the job (the host's row) or through
 * `DecideReads`, and what it decides goes back as a `Decision` that the main thread
 * stores. It runs in a report worker (server/http/pool.ts), or inline on the main
 * thread when the collector has no workers.
 */

/**
 * Findings of one host stored in full, most severe first; the rest are counted by
 * severity and kind (GET /v1/hosts/{id} says how many were left out). A host that
 * adds 200,000 files is as drifted with 1,000 stored findings, and costs no more.
 */
export const MAX_STORED_FINDINGS = 1000;

/** Bytes (estimated) of findings one compare cache holds (one per report worker); the oldest results go first. */
export const COMPARE_CACHE_BYTES = 64 * 1024 * 1024;

/**
 * The compare engine's contract (agent/engine/compare.ts), injected so the HTTP layer
 * stays testable. The collector passes `firstBoot` to hold hosts to their first-boot pins.
 */
export type CompareFn = (input: CompareInput) => Finding[];

/** One compare's findings as stored: at most MAX_STORED_FINDINGS, and a summary of the rest. */
export interface Compared {
  findings: Finding[];
  omitted: OmittedFindings | null;
  /** Estimated bytes, for the cache bound. */
  bytes: number;
  /** Pins this compare set or changed, to store with the report. */
  pins?: PinWrite;
}

const SEVERITY_RANK = new Map<string, number>(SEVERITIES.map((s, i) => [s, i]));

/** Rough heap bytes of a finding: its strings (UTF-16) plus a fixed overhead. */
function findingBytes(f: Finding): number {
  const content = (e: unknown): number => {
    const c = (e as { content?: unknown } | null)?.content;
    return typeof c === 'string' ? c.length : 0;
  };
  return 512 + 2 * (f.key.length + f.explanation.length + (f.diff?.length ?? 0) + content(f.before) + content(f.after));
}

/** Keep the MAX_STORED_FINDINGS most severe findings (stable), count the rest. */
export function boundFindings(all: Finding[], max = MAX_STORED_FINDINGS): Compared {
  let findings = all;
  let omitted: OmittedFindings | null = null;
  if (all.length > max) {
    const ranked = all.map((f, i) => ({ f, i })).sort((a, b) => ((SEVERITY_RANK.get(b.f.severity) ?? 0) - (SEVERITY_RANK.get(a.f.severity) ?? 0)) || a.i - b.i);
    findings = ranked.slice(0, max).map((x) => x.f);
    omitted = { count: all.length - max, bySeverity: {}, byKind: {} };
    for (const { f } of ranked.slice(max)) {
      omitted.bySeverity[f.severity] = (omitted.bySeverity[f.severity] ?? 0) + 1;
      omitted.byKind[f.kind] = (omitted.byKind[f.kind] ?? 0) + 1;
    }
  }
  let bytes = 0;
  for (const f of findings) bytes += findingBytes(f);
  return { findings, omitted, bytes };
}

/**
 * True when every object in `value` lists its keys in code-unit order. JSON.parse
 * keeps the sender's key order and agents send canonical JSON, so for them
 * JSON.stringify already yields the canonical bytes (native, several times faster
 * than building canonical JSON in JS); anything else takes the slow, exact path.
 */
function keysSorted(value: unknown): boolean {
  if (value === null || typeof value !== 'object') return true;
  if (Array.isArray(value)) return value.every(keysSorted);
  let prev: string | null = null;
  for (const k in value) {
    if (prev !== null && !(prev < k)) return false;
    prev = k;
    if (!keysSorted((value as Record<string, unknown>)[k])) return false;
  }
  return true;
}

/** `sha256:<hex>` of the canonical JSON of a parsed JSON value (fast when already canonical). */
export function wireDigest(value: unknown): string {
  if (keysSorted(value)) return `sha256:${createHash('sha256').update(JSON.stringify(value)).digest('hex')}`;
  return digestOf(value);
}

/** Section digests and root digest (computeDigests with the fast wire digest). */
export function digestsOf(sections: { [K in keyof Sections]?: Sections[K] | undefined }): Digests {
  return computeDigests(sections, wireDigest);
}

/** A parsed report body and the raw bytes of its manifest's sections, when the locator found them. */
export interface ParsedBody {
  body: unknown;
  located?: Map<SectionName, Buffer>;
}

const tooDeep = (where: string, at: number): HttpError =>
  new HttpError('DRIFT_ERR_USAGE', `request body nests JSON deeper than ${MAX_JSON_DEPTH} levels (${where}at byte ${at}); drift's protocol never nests deeper than 5`, 400);

/**
 * Parse an inflated report body: locate the manifest's sections (linear, see
 * sections.ts), refuse nesting deeper than MAX_JSON_DEPTH before JSON.parse, and
 * parse the rest. Throws HttpError 400 for a malformed body. Synchronous: it runs in
 * a report worker (or inline, for a collector without workers).
 */
export function parseReportBody(bytes: Buffer, known: readonly KnownSection[], pre?: { located: LocatedSections | null; stats: LocateStats }): ParsedBody {
  const stats: LocateStats = pre?.stats ?? { hashedBytes: 0 };
  const located = pre ? pre.located : locateManifestSections(bytes, known, stats);
  if (stats.twice !== undefined) {
    throw new HttpError('DRIFT_ERR_USAGE', `report body names ${stats.twice} twice; send each key once (drift agents do)`, 400);
  }
  if (located) {
    let deep = jsonDepthExceededSync(located.rest);
    if (deep >= 0) throw tooDeep('', deep);
    for (const [name, section] of located.sections) {
      if (located.canonical.has(name)) continue;
      // A section sits at depth 2 of the body (body, manifest).
      deep = jsonDepthExceededSync(section, MAX_JSON_DEPTH - 2);
      if (deep >= 0) throw tooDeep(`in manifest.${name}, `, deep);
    }
    try {
      const body: unknown = JSON.parse(located.rest.toString('utf8'));
      if (body !== null && typeof body === 'object') return { body, located: located.sections };
    } catch { /* parse it whole below, for the exact error */ }
  }
  const deep = jsonDepthExceededSync(bytes);
  if (deep >= 0) throw tooDeep('', deep);
  try {
    return { body: JSON.parse(bytes.toString('utf8')) as unknown };
  } catch (err) {
    throw new HttpError('DRIFT_ERR_USAGE', `request body is not valid JSON (${(err as Error).message})`, 400);
  }
}

/** An accepted report as decided, for the main thread to store. */
export interface DecidedReport {
  seq: number;
  kind: 'full' | 'partial' | 'digests';
  hostname: string;
  machineId: string;
  instanceId?: string;
  /** The role the report claims (judged on the main thread against the collector's roles). */
  roleClaim: string | null;
  imageId: string | null;
  /** Digest of the baseline decided against; the main thread stores only when it is still the image's. */
  baselineDigest: string | null;
  digests: Digests;
  /** The host's sections (inline), or `prepared` (worker: packed there, so the store only writes bytes). */
  sections?: Partial<Sections>;
  prepared?: Partial<Record<SectionName, PreparedSection>>;
  findings?: Finding[];
  omitted?: OmittedFindings | null;
  unread?: Unread[];
  pins?: PinWrite;
  /** The envelope's spoolDropped (bounded by its schema); 0 when absent. */
  spoolDropped: number;
}

/** What the decider answers for one report. */
export type Decision =
  | { kind: 'refused'; reason: string; code: ErrorCode; message: string; status: number }
  | { kind: 'need'; seq: number; need: SectionName[] }
  | { kind: 'save'; report: DecidedReport };

/** One report to decide: its inflated body and its host's row as read after its queued writes. */
export interface ReportJob {
  bytes: Buffer;
  host: HostRow;
  now: number;
  /** Decide only if its work is bounded (INLINE_BOUNDS, no stored sections); else throw Defer. */
  light?: boolean;
}

/**
 * Bounds of a report decided on the main thread, compare included, while the
 * collector has report workers (server/http/ingest.ts); past any of them the decision
 * throws Defer and a worker decides it. Each bounds one step that grows with what a
 * host sends: `entries` the entries of the sections parsed (schema check, digest,
 * the compare's walk over them), `changed` the entries that differ from the
 * baseline plus the host's pins (a finding each, explained and judged), and
 * `contentLines` the lines of kept file content on changed entries, both sides: a
 * line diff costs up to the square of its lines (4 KiB against 4 KiB of distinct
 * lines took 0.7 s).
 */
export const INLINE_BOUNDS = Object.freeze({ entries: 8192, changed: 128, contentLines: 256 });

/** Thrown by a light decision (on the main thread) past INLINE_BOUNDS or that needs the stored sections: decide it in a worker. */
export class Defer extends Error {
  constructor() { super('the report needs more work than the main thread takes; decide it in a report worker'); }
}

/** Entries of a parsed section (a JSON object), counted up to just past `max`. */
function entriesUpTo(value: unknown, max: number): number {
  if (value === null || typeof value !== 'object') return 0;
  let n = 0;
  for (const _ in value) if (++n > max) break;
  return n;
}

/** Lines of an entry's kept content (0 without content). */
function contentLines(entry: unknown): number {
  const c = (entry as { content?: unknown } | null | undefined)?.content;
  if (typeof c !== 'string' || c === '') return 0;
  let n = c.endsWith('\n') ? 0 : 1;
  for (let i = c.indexOf('\n'); i >= 0; i = c.indexOf('\n', i + 1)) n++;
  return n;
}

/** What a light decision has spent of INLINE_BOUNDS; each step throws Defer once past a bound, before the work it bounds. */
class InlineBudget {
  private entries = 0;
  private changed = 0;
  private lines = 0;

  /** A section (or the `unread` list) about to be parsed further (digest, delta, compare walk). */
  parsed(value: unknown): void {
    this.entries += entriesUpTo(value, INLINE_BOUNDS.entries - this.entries);
    if (this.entries > INLINE_BOUNDS.entries) throw new Defer();
  }

  /** A section's delta against the baseline's (`base` undefined: every entry is new), before its schema check and compare. */
  delta(base: Record<string, unknown> | undefined, d: SectionDelta): void {
    this.spend(Object.keys(d.set).length + d.del.length);
    for (const key in d.set) this.lines += contentLines(d.set[key]) + (base && Object.hasOwn(base, key) ? contentLines(base[key]) : 0);
    for (const key of d.del) this.lines += contentLines(base?.[key]);
    if (this.lines > INLINE_BOUNDS.contentLines) throw new Defer();
  }

  /** Entries the compare judges beyond the delta: the host's pins. */
  spend(changed: number): void {
    this.changed += changed;
    if (this.changed > INLINE_BOUNDS.changed) throw new Defer();
  }
}

/** Delta of a parsed section against its baseline's, computed once per pair (schema check, inline bounds, packing). */
const deltas = new WeakMap<object, { base: object; delta: SectionDelta }>();
function deltaOf(base: Record<string, unknown>, section: Record<string, unknown>): SectionDelta {
  const hit = deltas.get(section);
  if (hit?.base === base) return hit.delta;
  const delta = sectionDelta(base, section);
  deltas.set(section, { base, delta });
  return delta;
}

const isRecord = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/**
 * Schema check of a section that differs from its baseline's: the first issue as
 * `path: message` (under `prefix`), or null when it passes. Entries equal to the
 * baseline's were checked when the baseline was stored, so only the delta's entries
 * are parsed (a drifted host's 3,000 files, two of them changed, cost two entry
 * checks), after the count bound over the whole section. A `__proto__` key is refused
 * outright: JSON.parse makes it an own key, which the schema's records pass over
 * unchecked, and no path, package, process or port is named so. `budget`: a light
 * decision's, charged with the delta before any entry is checked.
 */
function sectionIssue(name: SectionName, value: unknown, base: unknown, budget: InlineBudget | null, prefix: string): string | null {
  const schema = SectionSchemas[name];
  let checked: unknown = value;
  if (isRecord(value) && entriesUpTo(value, LIMITS[name]) <= LIMITS[name]) {
    if (Object.hasOwn(value, '__proto__')) return `${prefix}.__proto__: not a key drift uses (no path, package, process or port is named so)`;
    if (isRecord(base)) {
      const d = deltaOf(base, value);
      budget?.delta(base, d);
      checked = d.set;
    } else budget?.delta(undefined, { set: value, del: [] });
  }
  const s = schema.safeParse(checked);
  return s.success ? null : firstIssue(s.error, prefix);
}

/** What the decider may need of the store, asked only when needed. */
export interface DecideReads {
  /** The host's first-boot pins. */
  pins(): Promise<StoredPins | null>;
  /** The host's last stored sections. */
  sections(): Promise<Partial<Sections>>;
}

/** A refusal decided, with the short reason counted in /metrics. */
class Refused extends Error {
  constructor(readonly decision: Extract<Decision, { kind: 'refused' }>) { super(decision.message); }
}

function refuse(reason: string, code: ErrorCode, message: string, status: number): Refused {
  return new Refused({ kind: 'refused', reason, code, message, status });
}

/**
 * Decides reports against the baselines it is given (`setBaseline`). Holds the
 * baselines' canonical sections for the body locator and a byte-bounded compare cache.
 * `prepare`: pack sections for the store here (in a worker), instead of handing the
 * main thread the parsed sections.
 */
export class ReportDecider {
  private readonly baselines = new Map<string, StoredBaseline | null>();
  private readonly compareCache = new Map<string, Compared>();
  private compareCacheBytes = 0;
  private known: KnownSection[] = [];
  private readonly sha = (s: string): string => createHash('sha256').update(s).digest('hex');

  constructor(private readonly deps: { rules: RuleSet; compare: CompareFn; prepare: boolean; cacheBytes?: number }) {}

  /** Set (or forget, with null) the baseline of an image; clears the compare cache. */
  setBaseline(imageId: string, b: StoredBaseline | null): void {
    this.baselines.set(imageId, b);
    this.known = [];
    for (const x of this.baselines.values()) if (x) this.learn(x);
    this.compareCache.clear();
    this.compareCacheBytes = 0;
  }

  /** Whether the baseline of an image was given (null included). */
  hasBaseline(imageId: string): boolean {
    return this.baselines.has(imageId);
  }

  /** The canonical sections of the baselines, for the body locator's fast path. */
  knownSections(): readonly KnownSection[] {
    return this.known;
  }

  private learn(b: StoredBaseline): void {
    for (const name of SECTIONS) {
      const section = b.baseline[name];
      if (section === undefined) continue;
      const text = Buffer.from(canonicalJson(section));
      const sha256 = createHash('sha256').update(text).digest('hex');
      if (!this.known.some((k) => k.sha256 === sha256)) this.known.push({ length: text.length, sha256 });
    }
  }

  /** Bytes (estimated) the compare cache holds now; never above its bound. */
  cacheBytes(): number {
    return this.compareCacheBytes;
  }

  /** Decide one report; never throws for a bad report (a refusal is a Decision). */
  async decide(job: ReportJob, reads: DecideReads, parsed?: ParsedBody): Promise<Decision> {
    if (job.light) reads = { pins: reads.pins, sections: () => Promise.reject(new Defer()) };
    try {
      const { body, located } = parsed ?? parseReportBody(job.bytes, this.known);
      return await this.decideParsed(job, body, located, reads);
    } catch (err) {
      if (err instanceof Refused) return err.decision;
      if (err instanceof HttpError && err.httpStatus < 500) return { kind: 'refused', reason: 'malformed', code: err.code, message: err.message, status: err.httpStatus };
      throw err;
    }
  }

  private baseline(imageId: string | null): StoredBaseline | null {
    if (imageId === null) return null;
    // Every stored baseline is given (Ingest.preload, Ingest.invalidate): absent is none stored.
    return this.baselines.get(imageId) ?? null;
  }

  private async decideParsed(job: ReportJob, body: unknown, located: Map<SectionName, Buffer> | undefined, reads: DecideReads): Promise<Decision> {
    const { host } = job;
    const budget = job.light ? new InlineBudget() : null;
    const parsed = ReportEnvelopeSchema.safeParse(body);
    if (!parsed.success) throw refuse('malformed', 'DRIFT_ERR_USAGE', `report body is not a drift.report-request/v1: ${firstIssue(parsed.error)}`, 400);
    const env = parsed.data;
    this.checkIdentity(host, env);
    if (env.seq <= host.lastSeq) {
      throw refuse('replayed', 'DRIFT_ERR_CONFLICT', `report seq ${env.seq} of host ${host.id} was already received: the last accepted seq is ${host.lastSeq}; send a higher seq`, 409);
    }
    if (env.seq > job.now + SEQ_AHEAD_MAX_MS) {
      throw refuse('seq-ahead', 'DRIFT_ERR_USAGE', `report seq ${env.seq} of host ${host.id} is more than a day ahead of the collector's clock (agents take seqs from their clock, in ms): accepting it would refuse the host's next reports; fix the host's clock`, 400);
    }
    const imageId = env.host.image?.id ?? host.imageId;
    const baseline = this.baseline(imageId);
    const claimed = env.host.image?.baselineDigest;
    if (baseline && claimed !== undefined && claimed !== baseline.digest) {
      throw refuse('wrong-image', 'DRIFT_ERR_MANIFEST', `host ${host.id} says image ${imageId} has baseline ${claimed}, but the collector's baseline of ${imageId} is ${baseline.digest}: the host runs another build of the image, or the baseline pushed is not the one baked; push the right baseline or rebuild the host`, 422);
    }
    const head = {
      seq: env.seq, hostname: env.host.hostname, machineId: env.host.machineId, roleClaim: env.role ?? null,
      ...(env.host.instanceId !== undefined ? { instanceId: env.host.instanceId } : {}),
      spoolDropped: typeof env.spoolDropped === 'number' ? env.spoolDropped : 0,
    };

    let sections: Partial<Sections>;
    let kind: 'full' | 'partial';
    let unread: Unread[] | undefined;
    if (env.manifest !== undefined) {
      const checked = this.checkManifest(env, host, baseline, located, budget);
      sections = checked.sections;
      kind = 'full';
      unread = checked.unread;
    } else {
      const given: Partial<Sections> = {};
      for (const [name, value] of Object.entries(env.sections ?? {})) {
        if (!(SECTIONS as readonly string[]).includes(name)) throw refuse('invalid-manifest', 'DRIFT_ERR_MANIFEST', `report seq ${env.seq}: unknown section ${JSON.stringify(name)} (sections are ${SECTIONS.join(', ')})`, 422);
        budget?.parsed(value);
        const issue = sectionIssue(name as SectionName, value, baseline?.baseline[name as SectionName], budget, `sections.${name}`);
        if (issue !== null) throw refuse('invalid-manifest', 'DRIFT_ERR_MANIFEST', `report seq ${env.seq} of host ${host.id}: section fails drift.manifest/v1 at ${issue}`, 422);
        if (wireDigest(value) !== env.digests[name as SectionName]) {
          throw refuse('digest-mismatch', 'DRIFT_ERR_MANIFEST', `report seq ${env.seq} of host ${host.id}: section ${name} does not match its digest ${env.digests[name as SectionName] ?? '(none)'}; send digests computed over the sections sent`, 422);
        }
        given[name as SectionName] = value as never;
      }
      const stored = host.digests;
      const need = SECTIONS.filter((s) => env.digests[s] !== undefined && given[s] === undefined && stored?.[s] !== env.digests[s]);
      if (need.length > 0) return { kind: 'need', seq: env.seq, need };
      if (Object.keys(given).length === 0 && stored && stored.root === env.digests.root) {
        // Digests equal to the stored state: only seq and times move, unless the baseline changed.
        const same = { ...head, kind: 'digests' as const, imageId: host.imageId, baselineDigest: baseline?.digest ?? null, digests: env.digests };
        if ((baseline?.digest ?? null) === host.baselineDigest) return { kind: 'save', report: same };
        const compared = await this.findings(job, baseline, await reads.sections(), env.digests, env, reads, budget);
        return { kind: 'save', report: { ...same, findings: compared.findings, omitted: compared.omitted, ...(compared.pins ? { pins: compared.pins } : {}) } };
      }
      const old = Object.keys(given).length === SECTIONS.filter((s) => env.digests[s] !== undefined).length ? {} : await reads.sections();
      sections = {};
      for (const s of SECTIONS) {
        if (env.digests[s] === undefined) continue;
        const v = given[s] ?? old[s];
        if (v !== undefined) sections[s] = v as never;
      }
      const root = digestsOf(sections).root;
      if (root !== env.digests.root) {
        // The stored state moved on under the agent (or its digests are wrong): ask for all.
        return { kind: 'need', seq: env.seq, need: SECTIONS.filter((s) => env.digests[s] !== undefined) };
      }
      kind = 'partial';
    }

    const compared = await this.findings(job, baseline, sections, env.digests, env, reads, budget);
    const report: DecidedReport = {
      ...head, kind, imageId: imageId ?? null, baselineDigest: baseline?.digest ?? null, digests: env.digests,
      findings: compared.findings, omitted: compared.omitted,
    };
    if (this.deps.prepare) report.prepared = this.prepare(sections, env.digests, baseline);
    else report.sections = sections;
    if (unread) report.unread = unread;
    if (compared.pins) report.pins = compared.pins;
    return { kind: 'save', report };
  }

  /**
   * Pack each section as the store keeps it: nothing for a section equal to the
   * baseline's (its blob is stored), else its deflated canonical JSON and its delta
   * against the baseline's section; the store picks one (server/store/store.ts).
   */
  private prepare(sections: Partial<Sections>, digests: Digests, baseline: StoredBaseline | null): Partial<Record<SectionName, PreparedSection>> {
    const out: Partial<Record<SectionName, PreparedSection>> = {};
    for (const name of SECTIONS) {
      const section = sections[name];
      if (section === undefined || digests[name] === undefined) continue;
      const base = baseline?.baseline[name];
      if (base !== undefined && digests[name] === baseline?.baseline.digests[name]) {
        out[name] = { packed: null, delta: null };
        continue;
      }
      let delta: PreparedSection['delta'] = null;
      if (base !== undefined) {
        const text = canonicalJson(deltaOf(base as Record<string, unknown>, section as Record<string, unknown>));
        delta = { digest: createHash('sha256').update(text).digest(), packed: deflateRawSync(text) };
      }
      out[name] = { packed: packJson(section), delta };
    }
    return out;
  }

  /**
   * Check a full manifest: its head against the schema, each section's digest
   * recomputed, and each section against the schema unless its digest equals the
   * baseline's (equal canonical bytes: already validated when the baseline was
   * stored). Sections are kept as received, not as zod rebuilt them: zod orders keys
   * by schema, and key order decides whether the fast digest path applies.
   */
  private checkManifest(env: ReportEnvelope, host: HostRow, baseline: StoredBaseline | null, located: Map<SectionName, Buffer> | undefined, budget: InlineBudget | null): { sections: Partial<Sections>; unread: Unread[] } {
    const raw = env.manifest;
    const where = `report seq ${env.seq} of host ${host.id}`;
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
      throw refuse('invalid-manifest', 'DRIFT_ERR_MANIFEST', `${where}: manifest must be a drift.manifest/v1 object`, 422);
    }
    const rawObj = raw as Record<string, unknown>;
    const headOnly: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(rawObj)) if (!(SECTIONS as readonly string[]).includes(k)) headOnly[k] = v;
    // `unread` is a list of the head's, each entry schema-checked: as many as a section's.
    budget?.parsed(headOnly['unread']);
    const head = ManifestHeadSchema.safeParse(headOnly);
    if (!head.success) throw refuse('invalid-manifest', 'DRIFT_ERR_MANIFEST', `${where}: manifest fails drift.manifest/v1 at ${firstIssue(head.error, 'manifest')}`, 422);
    const sections: Partial<Sections> = {};
    const parts: Partial<Record<SectionName, string>> = {};
    for (const name of SECTIONS) {
      const bytes = located?.get(name);
      let value: unknown = bytes ? undefined : rawObj[name];
      let digest: string | undefined;
      if (bytes) {
        // Raw bytes equal to the baseline's canonical section: take the baseline's, parse nothing.
        const d = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
        if (d === baseline?.baseline.digests[name]) {
          value = baseline.baseline[name];
          digest = d;
        } else {
          try { value = JSON.parse(bytes.toString('utf8')); } catch (err) {
            throw refuse('malformed', 'DRIFT_ERR_USAGE', `request body is not valid JSON in manifest.${name} (${(err as Error).message})`, 400);
          }
        }
      }
      if (value === undefined) continue;
      if (digest === undefined) budget?.parsed(value);
      digest ??= wireDigest(value);
      if (digest !== baseline?.baseline.digests[name]) {
        const issue = sectionIssue(name, value, baseline?.baseline[name], budget, `manifest.${name}`);
        if (issue !== null) throw refuse('invalid-manifest', 'DRIFT_ERR_MANIFEST', `${where}: manifest fails drift.manifest/v1 at ${issue}`, 422);
      }
      sections[name] = value as never;
      parts[name] = digest;
    }
    const actual = { root: digestOf(parts), ...parts } as Digests;
    if (!sameDigests(actual, head.data.digests) || !sameDigests(actual, env.digests)) {
      throw refuse('digest-mismatch', 'DRIFT_ERR_MANIFEST', `${where}: the digests do not match the manifest's sections (recomputed root ${actual.root}, sent ${env.digests.root}); the agent must send digests computed over the sections it sends`, 422);
    }
    return { sections, unread: head.data.unread };
  }

  private checkIdentity(host: HostRow, env: ReportEnvelope): void {
    if (env.hostId !== undefined) {
      if (env.hostId !== host.id) throw refuse('wrong-host', 'DRIFT_ERR_MANIFEST', `report names host ${env.hostId}, but its node key belongs to host ${host.id}; re-enroll the agent`, 422);
      return;
    }
    const mid = env.host.machineId;
    if (mid !== host.id && host.machineId !== null && host.machineId !== mid) {
      throw refuse('wrong-host', 'DRIFT_ERR_MANIFEST', `report comes from machine-id ${mid}, but the node key of host ${host.id} was used by machine-id ${host.machineId}; a node key belongs to one host: enroll this one with its own id`, 422);
    }
  }

  /**
   * Findings of a host's sections against its baseline, under its first-boot pins.
   * The first compare of a host against a baseline pins what the expect rules accept
   * (journaled as first-boot). Sections whose digests all equal the baseline's cannot
   * differ from it, so a clean host without pins skips compare; drifted hosts with
   * identical state, pins and launch keys share one cached result.
   * Findings with action `ignore` are not stored.
   */
  private async findings(job: ReportJob, baseline: StoredBaseline | null, sections: Partial<Sections>, digests: Digests, env: ReportEnvelope, reads: DecideReads, budget: InlineBudget | null): Promise<Compared> {
    const none: Compared = { findings: [], omitted: null, bytes: 0 };
    if (!baseline) return none;
    const b = baseline.baseline;
    const pinnable = sections.files !== undefined && b.files !== undefined;
    const clean = SECTIONS.every((s) => digests[s] === undefined || b[s] === undefined || digests[s] === b.digests[s]);
    // Pins are read only when they can matter: a clean host skips compare unless it holds pins.
    const stored = pinnable ? await reads.pins() : null;
    if (clean && (!pinnable || (stored !== null && Object.keys(stored.book.files).length === 0))) return none;
    const manifest: Manifest = {
      schema: MANIFEST_SCHEMA, host: env.host, collectedAt: env.collectedAt, agent: { version: '' }, digests, ...sections, unread: [],
    };
    const rules = this.deps.rules;
    const compareNow: CompareFn = (input) => {
      // The sections' deltas were charged when checked; the compare also judges every pinned path.
      if (budget) budget.spend(stored ? entriesUpTo(stored.book.files, INLINE_BOUNDS.changed + 1) : 0);
      return this.deps.compare(input);
    };
    if (!pinnable) return this.cached(`${baseline.digest}|${digests.root}`, () => compareNow({ baseline: b, manifest, rules }));
    const instanceKeys = env.host.instanceKeys ?? null;
    const now = new Date(job.now).toISOString();
    if (clean && stored === null) {
      // Equal to the image: no difference, so nothing to pin; remember that first boot happened.
      const book: PinBook = { schema: PINS_SCHEMA, pinnedAt: now, files: {} };
      return { ...none, pins: { book, changed: [], keys: null, instanceKeys, journal: { action: 'first-boot', by: null, reason: null } } };
    }
    const run = (): { findings: Finding[]; firstBoot: FirstBoot; pins: PinWrite } => {
      const check = new FirstBootCheck({ baseline: b, manifest, rules }, { book: stored?.book ?? null, now });
      const findings = compareNow({ baseline: b, manifest, rules, firstBoot: check });
      const r = check.result();
      return { findings, firstBoot: r.firstBoot, pins: { book: r.book, changed: r.changed, keys: r.firstBoot.keys, instanceKeys, journal: { action: 'first-boot', by: null, reason: null } } };
    };
    if (stored === null) {
      // The first compare: its new pins carry this report's time, so it is never cached.
      const r = run();
      return { ...boundFindings(r.findings.filter((f) => f.action !== 'ignore')), pins: r.pins };
    }
    const key = `${baseline.digest}|${digests.root}|${this.sha(canonicalJson(stored.book))}|${this.sha(JSON.stringify(instanceKeys))}`;
    let keys = stored.keys;
    const compared = this.cached(key, () => { const r = run(); keys = r.firstBoot.keys; return r.findings; });
    if (keys === stored.keys && JSON.stringify(instanceKeys) === JSON.stringify(stored.instanceKeys)) return compared;
    return { ...compared, pins: { book: stored.book, changed: [], keys, instanceKeys, journal: null } };
  }

  /** A compare's findings (action `ignore` dropped, bounded), from the byte-bounded cache when it has them. */
  private cached(key: string, compute: () => Finding[]): Compared {
    const hit = this.compareCache.get(key);
    if (hit) return hit;
    const compared = boundFindings(compute().filter((f) => f.action !== 'ignore'));
    const max = this.deps.cacheBytes ?? COMPARE_CACHE_BYTES;
    if (compared.bytes <= max / 4) {
      // Oldest first out (Map order) until the new result fits the byte bound.
      for (const [k, v] of this.compareCache) {
        if (this.compareCacheBytes + compared.bytes <= max) break;
        this.compareCache.delete(k);
        this.compareCacheBytes -= v.bytes;
      }
      this.compareCache.set(key, compared);
      this.compareCacheBytes += compared.bytes;
    }
    return compared;
  }
}
