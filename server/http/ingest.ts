import { computeDigests, sameDigests } from '../../agent/protocol/digests.js';
import { createHash } from 'node:crypto';
import { canonicalJson, digestOf } from '../../agent/protocol/canonical.js';
import type { Finding } from '../../agent/protocol/finding.js';
import { MANIFEST_SCHEMA, SECTIONS, type Digests, type Manifest, type SectionName, type Sections } from '../../agent/protocol/manifest.js';
import { SEVERITIES, type RuleSet } from '../../agent/protocol/rules.js';
import type { CompareInput } from '../../agent/engine/compare.js';
import { FirstBootCheck } from '../../agent/engine/pins.js';
import { PINS_SCHEMA, type FirstBoot, type PinBook } from '../../agent/protocol/pins.js';
import type { HostFlag, HostRow, OmittedFindings, SaveReport, Store, StoredBaseline } from '../store/store.js';
import type { PinWrite, StoredPins } from '../store/pins.js';
import { HttpError } from './errors.js';
import type { KnownSection } from './sections.js';
import { firstIssue, ManifestHeadSchema, ReportEnvelopeSchema, SectionSchemas, SEQ_AHEAD_MAX_MS, type ReportEnvelope } from './wire.js';

/**
 * Findings of one host stored in full, most severe first; the rest are counted by
 * severity and kind (GET /v1/hosts/{id} says how many were left out). A host that
 * adds 200,000 files is as drifted with 1,000 stored findings, and costs no more.
 */
export const MAX_STORED_FINDINGS = 1000;

/** Bytes (estimated) of findings the compare cache holds; the oldest results go first. */
export const COMPARE_CACHE_BYTES = 64 * 1024 * 1024;

/** One compare's findings as stored: at most MAX_STORED_FINDINGS, and a summary of the rest. */
interface Compared {
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
 * The compare engine's contract (agent/engine/compare.ts), injected so the HTTP layer
 * stays testable. The collector passes `firstBoot` to hold hosts to their first-boot pins.
 */
export type CompareFn = (input: CompareInput) => Finding[];

/** What one compare of a host gives: its findings and what changes in its pins. */
/** The answer to one report. */
export interface IngestResult {
  accepted: boolean;
  seq: number;
  need: SectionName[];
}

/** A refusal, with the short reason counted in /metrics. */
export class Refusal extends HttpError {
  reason = 'refused';
}

function refuse(reason: string, ...args: ConstructorParameters<typeof HttpError>): Refusal {
  const r = new Refusal(...args);
  r.reason = reason;
  return r;
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

/**
 * Report ingestion: checks a report against the key's host, the stored state and
 * the image's baseline, asks for the sections it lacks, compares, and stores the
 * result in one transaction. `located` are the raw bytes of the manifest's
 * sections when the body parser found them (see sections.ts); the body then holds
 * `0` in their place. Holds the parsed baselines in memory (invalidated when
 * a baseline is replaced) so that comparing is not a database read.
 */
export class Ingest {
  private readonly baselines = new Map<string, StoredBaseline | null>();
  private readonly compareCache = new Map<string, Compared>();
  private compareCacheBytes = 0;
  private readonly roles: ReadonlySet<string> | null;
  private readonly sha = (s: string): string => createHash('sha256').update(s).digest('hex');

  private readonly write: (r: SaveReport) => Promise<void>;

  /**
   * `write` stores an accepted report and settles once it is committed (the group
   * commit in the daemon); by default a transaction of its own.
   */
  constructor(private readonly deps: { store: Store; rules: RuleSet; compare: CompareFn; now: () => number; write?: (r: SaveReport) => Promise<void>; roles?: readonly string[] | null }) {
    this.write = deps.write ?? ((r) => { deps.store.saveReport(r); return Promise.resolve(); });
    this.roles = deps.roles ? new Set(deps.roles) : null;
  }

  /** The baseline of an image, from memory or the store; null when none is stored. */
  baseline(imageId: string): StoredBaseline | null {
    let b = this.baselines.get(imageId);
    if (b === undefined) {
      b = this.deps.store.getBaseline(imageId) ?? null;
      this.baselines.set(imageId, b);
      if (b) this.learn(b);
    }
    return b;
  }

  /** Load every stored baseline into memory (at start, so the first reports take the fast path). */
  preload(): void {
    for (const imageId of this.deps.store.baselineImageIds()) this.baseline(imageId);
  }

  /** The canonical sections of the cached baselines, for the body parser's fast path. */
  knownSections(): readonly KnownSection[] {
    return this.known;
  }

  private known: KnownSection[] = [];

  private learn(b: StoredBaseline): void {
    for (const name of SECTIONS) {
      const section = b.baseline[name];
      if (section === undefined) continue;
      const text = Buffer.from(canonicalJson(section));
      const sha256 = createHash('sha256').update(text).digest('hex');
      if (!this.known.some((k) => k.sha256 === sha256)) this.known.push({ length: text.length, sha256 });
    }
  }

  /** Forget a cached baseline (after PUT /v1/baselines/{imageId}). */
  invalidate(imageId: string): void {
    this.baselines.delete(imageId);
    this.known = [];
    for (const b of this.baselines.values()) if (b) this.learn(b);
    this.compareCache.clear();
    this.compareCacheBytes = 0;
  }

  /**
   * Handle one report for the host its node key belongs to; settles after the
   * report is stored (or refused: rejects with a Refusal for a 4xx). Everything up to
   * the write runs synchronously, so a caller that waited for the host's queued
   * writes reads and decides on current state.
   */
  async report(host: HostRow, body: unknown, located?: Map<SectionName, Buffer>): Promise<IngestResult> {
    const parsed = ReportEnvelopeSchema.safeParse(body);
    if (!parsed.success) throw refuse('malformed', 'DRIFT_ERR_USAGE', `report body is not a drift.report-request/v1: ${firstIssue(parsed.error)}`, 400);
    const env = parsed.data;
    this.checkIdentity(host, env);
    if (env.seq <= host.lastSeq) {
      throw refuse('replayed', 'DRIFT_ERR_CONFLICT', `report seq ${env.seq} of host ${host.id} was already received: the last accepted seq is ${host.lastSeq}; send a higher seq`, 409);
    }
    if (env.seq > this.deps.now() + SEQ_AHEAD_MAX_MS) {
      throw refuse('seq-ahead', 'DRIFT_ERR_USAGE', `report seq ${env.seq} of host ${host.id} is more than a day ahead of the collector's clock (agents take seqs from their clock, in ms): accepting it would refuse the host's next reports; fix the host's clock`, 400);
    }
    const imageId = env.host.image?.id ?? host.imageId;
    const baseline = imageId ? this.baseline(imageId) : null;
    const claimed = env.host.image?.baselineDigest;
    if (baseline && claimed !== undefined && claimed !== baseline.digest) {
      throw refuse('wrong-image', 'DRIFT_ERR_MANIFEST', `host ${host.id} says image ${imageId} has baseline ${claimed}, but the collector's baseline of ${imageId} is ${baseline.digest}: the host runs another build of the image, or the baseline pushed is not the one baked; push the right baseline or rebuild the host`, 422);
    }

    let sections: Partial<Sections>;
    let kind: 'full' | 'partial' | 'digests';
    let unread: Manifest['unread'] | undefined;
    if (env.manifest !== undefined) {
      const checked = this.checkManifest(env, host, baseline, located);
      sections = checked.sections;
      kind = 'full';
      unread = checked.unread;
    } else {
      const given: Partial<Sections> = {};
      for (const [name, value] of Object.entries(env.sections ?? {})) {
        if (!(SECTIONS as readonly string[]).includes(name)) throw refuse('invalid-manifest', 'DRIFT_ERR_MANIFEST', `report seq ${env.seq}: unknown section ${JSON.stringify(name)} (sections are ${SECTIONS.join(', ')})`, 422);
        const s = SectionSchemas[name as SectionName].safeParse(value);
        if (!s.success) throw refuse('invalid-manifest', 'DRIFT_ERR_MANIFEST', `report seq ${env.seq} of host ${host.id}: section fails drift.manifest/v1 at ${firstIssue(s.error, `sections.${name}`)}`, 422);
        if (wireDigest(value) !== env.digests[name as SectionName]) {
          throw refuse('digest-mismatch', 'DRIFT_ERR_MANIFEST', `report seq ${env.seq} of host ${host.id}: section ${name} does not match its digest ${env.digests[name as SectionName] ?? '(none)'}; send digests computed over the sections sent`, 422);
        }
        given[name as SectionName] = value as never;
      }
      const stored = host.digests;
      const need = SECTIONS.filter((s) => env.digests[s] !== undefined && given[s] === undefined && stored?.[s] !== env.digests[s]);
      if (need.length > 0) return { accepted: false, seq: env.seq, need };
      if (Object.keys(given).length === 0 && stored && stored.root === env.digests.root) {
        return this.unchanged(host, env, baseline);
      }
      const old = this.deps.store.hostSections(host);
      sections = {};
      for (const s of SECTIONS) {
        if (env.digests[s] === undefined) continue;
        const v = given[s] ?? old[s];
        if (v !== undefined) sections[s] = v as never;
      }
      const root = digestsOf(sections).root;
      if (root !== env.digests.root) {
        // The stored state moved on under the agent (or its digests are wrong): ask for all.
        return { accepted: false, seq: env.seq, need: SECTIONS.filter((s) => env.digests[s] !== undefined) };
      }
      kind = 'partial';
    }

    const compared = this.findings(host, baseline, sections, env.digests, env);
    const pins = compared.pins;
    const save: SaveReport = {
      host, seq: env.seq, now: this.deps.now(), hostname: env.host.hostname, imageId: imageId ?? null, ...this.claims(host, env, imageId ?? null, baseline),
      digests: env.digests, kind, sections, baseline, findings: compared.findings, omitted: compared.omitted, machineId: env.host.machineId,
      ...(env.host.instanceId !== undefined ? { instanceId: env.host.instanceId } : {}),
    };
    if (unread) save.unread = unread;
    if (pins) save.pins = pins;
    await this.write(save);
    return { accepted: true, seq: env.seq, need: [] };
  }

  /**
   * Check a full manifest: its head against the schema, each section's digest
   * recomputed, and each section against the schema unless its digest equals the
   * baseline's (equal canonical bytes: already validated when the baseline was
   * stored). Sections are kept as received, not as zod rebuilt them: zod orders keys
   * by schema, and key order decides whether the fast digest path applies.
   */
  private checkManifest(env: ReportEnvelope, host: HostRow, baseline: StoredBaseline | null, located: Map<SectionName, Buffer> | undefined): { sections: Partial<Sections>; unread: Manifest['unread'] } {
    const raw = env.manifest;
    const where = `report seq ${env.seq} of host ${host.id}`;
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
      throw refuse('invalid-manifest', 'DRIFT_ERR_MANIFEST', `${where}: manifest must be a drift.manifest/v1 object`, 422);
    }
    const rawObj = raw as Record<string, unknown>;
    const headOnly: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(rawObj)) if (!(SECTIONS as readonly string[]).includes(k)) headOnly[k] = v;
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
      digest ??= wireDigest(value);
      if (digest !== baseline?.baseline.digests[name]) {
        const s = SectionSchemas[name].safeParse(value);
        if (!s.success) throw refuse('invalid-manifest', 'DRIFT_ERR_MANIFEST', `${where}: manifest fails drift.manifest/v1 at ${firstIssue(s.error, `manifest.${name}`)}`, 422);
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

  /** Digests equal to the stored state: only seq and times move, unless the baseline changed. */
  private async unchanged(host: HostRow, env: ReportEnvelope, baseline: StoredBaseline | null): Promise<IngestResult> {
    const base = {
      host, seq: env.seq, now: this.deps.now(), hostname: env.host.hostname, imageId: host.imageId, ...this.claims(host, env, host.imageId, baseline),
      digests: env.digests, kind: 'digests' as const, baseline, machineId: env.host.machineId,
      ...(env.host.instanceId !== undefined ? { instanceId: env.host.instanceId } : {}),
    };
    if ((baseline?.digest ?? null) === host.baselineDigest) {
      await this.write(base);
    } else {
      const compared = this.findings(host, baseline, this.deps.store.hostSections(host), env.digests, env);
      const base2 = { ...base, findings: compared.findings, omitted: compared.omitted };
      await this.write(compared.pins ? { ...base2, pins: compared.pins } : base2);
    }
    return { accepted: true, seq: env.seq, need: [] };
  }

  /**
   * Findings of a host's sections against its baseline, under its first-boot pins.
   * The first compare of a host against a baseline pins what the expect rules accept
   * (journaled as first-boot). Sections whose digests all equal the baseline's cannot
   * differ from it, so a clean host without pins skips compare; drifted hosts with
   * identical state, pins and launch keys share one cached result.
   * Findings with action `ignore` are not stored.
   */
  private findings(host: HostRow, baseline: StoredBaseline | null, sections: Partial<Sections>, digests: Digests, env: ReportEnvelope): Compared {
    const none: Compared = { findings: [], omitted: null, bytes: 0 };
    if (!baseline) return none;
    const b = baseline.baseline;
    const pinnable = sections.files !== undefined && b.files !== undefined;
    const stored = pinnable ? this.deps.store.pins.pinsOf(host.rowid) : null;
    const clean = SECTIONS.every((s) => digests[s] === undefined || b[s] === undefined || digests[s] === b.digests[s]);
    if (clean && (!pinnable || (stored !== null && Object.keys(stored.book.files).length === 0))) return none;
    const manifest: Manifest = {
      schema: MANIFEST_SCHEMA, host: env.host, collectedAt: env.collectedAt, agent: { version: '' }, digests, ...sections, unread: [],
    };
    if (!pinnable) return this.cached(`${baseline.digest}|${digests.root}`, () => this.deps.compare({ baseline: b, manifest, rules: this.deps.rules }));
    const instanceKeys = env.host.instanceKeys ?? null;
    const now = new Date(this.deps.now()).toISOString();
    if (clean && stored === null) {
      // Equal to the image: no difference, so nothing to pin; remember that first boot happened.
      const book: PinBook = { schema: PINS_SCHEMA, pinnedAt: now, files: {} };
      return { ...none, pins: { book, changed: [], keys: null, instanceKeys, journal: { action: 'first-boot', by: null, reason: null } } };
    }
    const run = (): { findings: Finding[]; firstBoot: FirstBoot; pins: PinWrite } => {
      const check = new FirstBootCheck({ baseline: b, manifest, rules: this.deps.rules }, { book: stored?.book ?? null, now });
      const findings = this.deps.compare({ baseline: b, manifest, rules: this.deps.rules, firstBoot: check });
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
    if (keys === stored.keys && sameKeys(instanceKeys, stored.instanceKeys)) return compared;
    return { ...compared, pins: { book: stored.book, changed: [], keys, instanceKeys, journal: null } };
  }

  /** A compare's findings (action `ignore` dropped, bounded), from the byte-bounded cache when it has them. */
  private cached(key: string, compute: () => Finding[]): Compared {
    const hit = this.compareCache.get(key);
    if (hit) return hit;
    const compared = boundFindings(compute().filter((f) => f.action !== 'ignore'));
    if (compared.bytes <= COMPARE_CACHE_BYTES / 4) {
      // Oldest first out (Map order) until the new result fits the byte bound.
      for (const [k, v] of this.compareCache) {
        if (this.compareCacheBytes + compared.bytes <= COMPARE_CACHE_BYTES) break;
        this.compareCache.delete(k);
        this.compareCacheBytes -= v.bytes;
      }
      this.compareCache.set(key, compared);
      this.compareCacheBytes += compared.bytes;
    }
    return compared;
  }

  /** Bytes (estimated) the compare cache holds now; never above COMPARE_CACHE_BYTES. */
  cacheBytes(): number {
    return this.compareCacheBytes;
  }

  /**
   * The cohort role and flags of a report. A host chooses neither its cohort nor its
   * image: a role outside the collector's `roles` list is flagged and the host kept in
   * the role it held while trusted, else its image's default cohort (role null), and an image without a stored baseline is
   * flagged (the host is unknown-image, compared with nothing).
   */
  private claims(host: HostRow, env: ReportEnvelope, imageId: string | null, baseline: StoredBaseline | null): { role: string | null; flags: HostFlag[] } {
    const flags: HostFlag[] = [];
    let role = env.role ?? host.role;
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

function sameKeys(a: { source: string; keys: string[] } | null, b: { source: string; keys: string[] } | null): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
