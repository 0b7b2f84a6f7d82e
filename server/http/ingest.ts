import { computeDigests, sameDigests } from '../../agent/protocol/digests.js';
import { createHash } from 'node:crypto';
import { canonicalJson, digestOf } from '../../agent/protocol/canonical.js';
import type { Finding } from '../../agent/protocol/finding.js';
import { MANIFEST_SCHEMA, SECTIONS, type Digests, type Manifest, type SectionName, type Sections } from '../../agent/protocol/manifest.js';
import type { RuleSet } from '../../agent/protocol/rules.js';
import type { HostRow, SaveReport, Store, StoredBaseline } from '../store/store.js';
import { HttpError } from './errors.js';
import type { KnownSection } from './sections.js';
import { firstIssue, ManifestHeadSchema, ReportEnvelopeSchema, SectionSchemas, type ReportEnvelope } from './wire.js';

/** The compare engine's contract (agent/engine/compare.ts), injected so the HTTP layer stays testable. */
export type CompareFn = (input: { baseline: Manifest; manifest: Manifest; rules: RuleSet }) => Finding[];

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
  private readonly compareCache = new Map<string, Finding[]>();

  private readonly write: (r: SaveReport) => Promise<void>;

  /**
   * `write` stores an accepted report and settles once it is committed (the group
   * commit in the daemon); by default a transaction of its own.
   */
  constructor(private readonly deps: { store: Store; rules: RuleSet; compare: CompareFn; now: () => number; write?: (r: SaveReport) => Promise<void> }) {
    this.write = deps.write ?? ((r) => { deps.store.saveReport(r); return Promise.resolve(); });
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

    const findings = this.findings(baseline, sections, env.digests, env);
    const save = {
      host, seq: env.seq, now: this.deps.now(), hostname: env.host.hostname, imageId: imageId ?? null, role: env.role ?? host.role,
      digests: env.digests, kind, sections, baseline, findings, machineId: env.host.machineId,
      ...(env.host.instanceId !== undefined ? { instanceId: env.host.instanceId } : {}),
    };
    await this.write(unread ? { ...save, unread } : save);
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
      host, seq: env.seq, now: this.deps.now(), hostname: env.host.hostname, imageId: host.imageId, role: env.role ?? host.role,
      digests: env.digests, kind: 'digests' as const, baseline, machineId: env.host.machineId,
      ...(env.host.instanceId !== undefined ? { instanceId: env.host.instanceId } : {}),
    };
    if ((baseline?.digest ?? null) === host.baselineDigest) {
      await this.write(base);
    } else {
      const findings = this.findings(baseline, this.deps.store.hostSections(host), env.digests, env);
      await this.write({ ...base, findings });
    }
    return { accepted: true, seq: env.seq, need: [] };
  }

  /**
   * Findings of a host's sections against its baseline. Sections whose digests all
   * equal the baseline's cannot differ from it, so the common case (a clean host)
   * skips compare; drifted hosts with identical state share one cached result.
   * Findings with action `ignore` are not stored.
   */
  private findings(baseline: StoredBaseline | null, sections: Partial<Sections>, digests: Digests, env: ReportEnvelope): Finding[] {
    if (!baseline) return [];
    const b = baseline.baseline;
    if (SECTIONS.every((s) => digests[s] === undefined || b[s] === undefined || digests[s] === b.digests[s])) return [];
    const cacheKey = `${baseline.digest}|${digests.root}`;
    const cached = this.compareCache.get(cacheKey);
    if (cached) return cached;
    const manifest: Manifest = {
      schema: MANIFEST_SCHEMA, host: env.host, collectedAt: env.collectedAt, agent: { version: '' }, digests, ...sections, unread: [],
    };
    const findings = this.deps.compare({ baseline: b, manifest, rules: this.deps.rules }).filter((f) => f.action !== 'ignore');
    if (this.compareCache.size >= 1024) this.compareCache.clear();
    this.compareCache.set(cacheKey, findings);
    return findings;
  }
}
