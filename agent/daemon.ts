import { join } from 'node:path';
import { setTimeout as sleepTimer } from 'node:timers/promises';
import type { CollectContext } from './collectors/contract.js';
import type { AgentConfig } from './config.js';
import { IMAGE_STAMP_PATH, readHostInfo } from './identity.js';
import { readInstanceKeys } from './instance-data.js';
import { compareUnread } from './protocol/unread.js';
import { canonicalJson } from './protocol/canonical.js';
import { DriftError, errnoOf } from './protocol/errors.js';
import { BaselineSchema, SECTIONS, type Digests, type HostInfo, type Manifest, type Sections } from './protocol/manifest.js';
import { BAKED_BASELINE_PATH, readBakedScope, scopedRules } from './baseline.js';
import type { RuleSet } from './protocol/rules.js';
import { StateDir } from './state.js';
import { backoffDelay, CollectorClient, readCaFile, readSecretFile, REPORT_REQUEST_SCHEMA, type ReportRequest } from './transport/client.js';
import { Spool, type SpoolEntry } from './transport/spool.js';
import { ByteBudget } from './hash.js';
import { writeFileAtomic } from './atomic.js';

/**
 * The agent loop (`drift agent`): collect a manifest, spool it, deliver the spool in
 * seq order, wait an interval with splay, again. The daemon never judges drift; the
 * collector does.
 *
 * Delivery of one report: enroll first if there is no node key for this host; send
 * only the digests when they equal the last ones the collector accepted, else the full
 * manifest; when the collector answers `need`, send the same seq again with the
 * sections it asked for. 401 → re-enroll once and retry. 409 conflict → the collector
 * already has this seq (it committed an earlier send whose answer was lost): delivered.
 * Another 4xx → the report will never be accepted: log it and drop it. Connection refused, timeout, 5xx → keep the
 * spool and try again after a full-jitter backoff.
 */

/** A JSON-lines logger; each call writes one line to stderr. */
export interface Logger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

/** A logger writing `{"time","level","msg",...fields}` lines to `write`. */
export function jsonLogger(write: (line: string) => void = (l) => process.stderr.write(l), now: () => Date = () => new Date()): Logger {
  const line = (level: string) => (msg: string, fields: Record<string, unknown> = {}): void => {
    write(`${JSON.stringify({ time: now().toISOString(), level, component: 'agent', msg, ...fields })}\n`);
  };
  return { info: line('info'), warn: line('warn'), error: line('error') };
}

/** What the daemon is given besides its config: the collection and rule loading, the clock. */
export interface DaemonDeps {
  /** Collect one manifest (collectManifest from agent/manifest.ts in production). */
  collect(ctx: CollectContext, host: HostInfo, now: Date): Promise<Manifest>;
  /** Load the watch/ignore rules (loadRuleSet from agent/rules/load.ts in production). */
  loadRules(dirs: readonly string[]): Promise<RuleSet>;
  log: Logger;
  /** Milliseconds since the epoch. */
  now?: () => number;
  /** Uniform in [0, 1): splay and jitter. */
  random?: () => number;
}

/**
 * What became of one report in a delivery attempt. `fatal`: a configuration error
 * (the enrolment secret refused, an untrusted TLS certificate) that no retry will cure;
 * the report stays spooled until the configuration is fixed.
 */
type Delivery = 'accepted' | 'refused' | 'retry' | 'fatal' | 'aborted';

/** The result of draining the spool once. */
export interface DrainResult {
  /** Seqs the collector accepted, in order. */
  delivered: number[];
  /** Seqs dropped because the collector refused them for good (4xx other than 401). */
  refused: number[];
  /** Reports still spooled. */
  pending: number;
  /** Why draining stopped before the spool was empty, if it did. */
  stopped: 'unreachable' | 'fatal' | 'aborted' | 'unreadable' | null;
  /** With `stopped: 'fatal'`: what is wrong and what to change. */
  fatal?: string;
}

/** Name of the node_exporter textfile the daemon keeps in its state folder. */
export const AGENT_METRICS_FILE = 'drift-agent.prom';

function sameDigests(a: Digests | null, b: Digests): boolean {
  return a !== null && canonicalJson(a) === canonicalJson(b);
}

/**
 * The sections whose digests differ from the last accepted ones, or null when the
 * set of sections itself changed (a section appeared or went: send the manifest).
 */
function changedSections(last: Digests, manifest: Manifest): Array<keyof Sections> | null {
  const out: Array<keyof Sections> = [];
  for (const s of SECTIONS) {
    const before = last[s];
    const now = manifest.digests[s];
    if ((before === undefined) !== (now === undefined)) return null;
    if (before !== now) out.push(s);
  }
  // unread is not covered by the section digests: when only it moved, root alone differs.
  return out;
}

/** One agent: its config, state folder, spool and collector client. */
export class AgentDaemon {
  readonly cfg: AgentConfig;
  readonly state: StateDir;
  readonly spool: Spool;
  readonly client: CollectorClient;
  private readonly deps: DaemonDeps;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly random: () => number;
  private rules: RuleSet | null = null;
  private release: (() => Promise<void>) | null = null;
  /** The configuration error of the last delivery attempt, if it met one. */
  private fatal: string | null = null;
  /** Delivery attempts stopped by a configuration error since start (the metric). */
  private fatalCount = 0;
  private lastAcceptedAt: number | null = null;
  /** The secret-permission warning is given once per run, not at every enrolment. */
  private warnedSecret = false;
  private warnedStamp = false;

  private constructor(cfg: AgentConfig, deps: DaemonDeps, state: StateDir, client: CollectorClient) {
    this.cfg = cfg;
    this.deps = deps;
    this.log = deps.log;
    this.now = deps.now ?? Date.now;
    this.random = deps.random ?? Math.random;
    this.state = state;
    this.spool = new Spool(state.spoolDir, cfg.spoolMax, cfg.spoolMaxBytes, { sectionCache: true });
    this.client = client;
  }

  /** Open the state folder (locked against a second agent) and check the secret file is readable. */
  static async open(cfg: AgentConfig, deps: DaemonDeps): Promise<AgentDaemon> {
    const state = await StateDir.open(cfg.stateDir);
    const ca = cfg.caFile ? await readCaFile(cfg.caFile) : undefined;
    const client = new CollectorClient(cfg.collector, { timeoutMs: cfg.timeoutMs, ...(ca ? { ca } : {}) });
    const d = new AgentDaemon(cfg, deps, state, client);
    d.release = await state.lock();
    // Blobs and temporary files a crash left behind (put and remove tidy up otherwise).
    await d.spool.collectGarbage();
    // Fail at start, not at the first enrollment hours later, when the secret is unreadable.
    await d.readSecret();
    return d;
  }

  /** Release the lock and close connections. */
  async close(): Promise<void> {
    this.client.close();
    if (this.release) await this.release();
    this.release = null;
  }

  private async readSecret(): Promise<string> {
    return readSecretFile(this.cfg.enrollSecretFile, (m) => {
      if (!this.warnedSecret) this.log.warn(m);
      this.warnedSecret = true;
    });
  }

  /** Record a configuration error: logged as an error, counted in the metrics file. */
  private configError(message: string, fields: Record<string, unknown>): Delivery {
    this.fatal = message;
    this.fatalCount += 1;
    this.log.error(message, { ...fields, fatal: true, configErrors: this.fatalCount });
    return 'fatal';
  }

  /**
   * Write the node_exporter textfile (STATE_DIR/drift-agent.prom): configuration
   * errors, reports waiting in the spool, the last accepted report. Point the textfile
   * collector at it (or link it into its folder) to alert on an agent that cannot deliver.
   */
  private async writeMetrics(pending: number): Promise<void> {
    const lines = [
      '# HELP drift_agent_config_errors_total Deliveries stopped by a configuration error (enrolment secret refused, TLS certificate not trusted) since the agent started.',
      '# TYPE drift_agent_config_errors_total counter',
      `drift_agent_config_errors_total ${this.fatalCount}`,
      '# HELP drift_agent_config_error 1 while the last delivery attempt met a configuration error.',
      '# TYPE drift_agent_config_error gauge',
      `drift_agent_config_error ${this.fatal === null ? 0 : 1}`,
      '# HELP drift_agent_spooled_reports Reports waiting in the spool.',
      '# TYPE drift_agent_spooled_reports gauge',
      `drift_agent_spooled_reports ${pending}`,
      '# HELP drift_agent_spool_quarantined_total Spooled reports that could not be inflated or parsed, moved to the spool\'s quarantine/ folder and dropped, since the agent started (each is also counted in the next report\'s spoolDropped).',
      '# TYPE drift_agent_spool_quarantined_total counter',
      `drift_agent_spool_quarantined_total ${this.spool.quarantinedReports}`,
      '# HELP drift_agent_spool_quarantine_files Files kept in the spool\'s quarantine/ folder for a person to look at (the newest 16).',
      '# TYPE drift_agent_spool_quarantine_files gauge',
      `drift_agent_spool_quarantine_files ${(await this.spool.quarantined()).length}`,
    ];
    if (this.lastAcceptedAt !== null) {
      lines.push('# HELP drift_agent_last_accepted_timestamp_seconds When the collector last accepted a report.',
        '# TYPE drift_agent_last_accepted_timestamp_seconds gauge', `drift_agent_last_accepted_timestamp_seconds ${Math.floor(this.lastAcceptedAt / 1000)}`);
    }
    try { await writeFileAtomic(join(this.cfg.stateDir, AGENT_METRICS_FILE), `${lines.join('\n')}\n`); } catch (err) {
      this.log.warn('cannot write the metrics file', { path: join(this.cfg.stateDir, AGENT_METRICS_FILE), reason: errnoOf(err) });
    }
  }

  private hostIdOf(host: HostInfo): string {
    return this.cfg.hostId ?? host.machineId;
  }

  /** Collect one manifest of the root and spool it under a new seq. Returns the seq. */
  async collectAndSpool(): Promise<number> {
    const host = await readHostInfo(this.cfg.root);
    if (!this.cfg.hostId && host.machineId === '') {
      throw new DriftError('DRIFT_ERR_CONFIG', `${this.cfg.root}: no etc/machine-id to identify this host; create it (systemd-machine-id-setup) or pass --host-id`);
    }
    if (!host.image && !this.warnedStamp) {
      this.warnedStamp = true;
      this.log.warn('this root has no image stamp: the collector cannot tell which baseline to compare it with; bake the image with drift baseline --stamp', { stamp: join(this.cfg.root, IMAGE_STAMP_PATH) });
    }
    this.rules ??= await this.scopeRules(host);
    const ctx: CollectContext = {
      root: this.cfg.root, proc: this.cfg.proc, rules: this.rules, stateDir: this.cfg.stateDir, forceRehash: false,
      budget: new ByteBudget(this.cfg.maxFileBytes, this.cfg.maxScanBytes), sections: this.cfg.sections ?? undefined,
    };
    const started = this.now();
    // The launch keys travel in `host`, so the collector holds the default user's keys to them.
    const instance = await readInstanceKeys(this.cfg.root);
    if (instance.keys) host.instanceKeys = instance.keys;
    const manifest = await this.deps.collect(ctx, host, new Date(started));
    if (instance.unread.length > 0) manifest.unread = [...manifest.unread, ...instance.unread].sort(compareUnread);
    const seq = await this.state.nextSeq(this.now());
    const entry: SpoolEntry = { seq, collectedAt: manifest.collectedAt, host: manifest.host, role: this.cfg.role, manifest };
    const dropped = await this.spool.put(entry);
    this.log.info('manifest collected', {
      seq, root: this.cfg.root, digest: manifest.digests.root, files: Object.keys(manifest.files ?? {}).length,
      packages: Object.keys(manifest.packages ?? {}).length, unread: manifest.unread.length, ms: this.now() - started,
    });
    if (dropped.length > 0) {
      await this.state.addDropped(dropped.length);
      this.log.warn('spool full: oldest reports dropped', { dropped: dropped.length, seqs: dropped, spoolMax: this.cfg.spoolMax, spoolMaxBytes: this.cfg.spoolMaxBytes, droppedUnreported: this.state.spoolDropped });
    }
    return seq;
  }

  /**
   * The rules to collect with: the scope baked into the image (its
   * `etc/drift/baseline.json`, when its digest is the one the image stamp names),
   * else this host's rule files, with a warning, since a rule file added on the
   * host after baking then changes what is watched.
   */
  private async scopeRules(host: HostInfo): Promise<RuleSet> {
    const local = await this.deps.loadRules(this.cfg.rules);
    const baked = await readBakedScope(this.cfg.root, host.image?.baselineDigest, (data) => {
      const r = BaselineSchema.safeParse(data);
      return r.success ? r.data : null;
    });
    if ('none' in baked) {
      this.log.warn('no baked scope: collecting with this host\'s rule files', { reason: baked.none, rules: this.cfg.rules });
      return local;
    }
    this.log.info('collecting the scope baked into the image', { baseline: BAKED_BASELINE_PATH, scope: baked.baseline.scope?.digest });
    return scopedRules(baked.baseline, local, BAKED_BASELINE_PATH);
  }

  /** Get a node key for the host, enrolling when there is none. */
  private async nodeKey(host: HostInfo, signal: AbortSignal): Promise<{ key: string } | { stop: Delivery }> {
    const hostId = this.hostIdOf(host);
    const existing = await this.state.readNodeKey(hostId, this.cfg.collector);
    if (existing) return { key: existing };
    const secret = await this.readSecret();
    const o = await this.client.enroll(secret, { hostId, hostname: host.hostname, imageId: host.image?.id ?? null }, signal);
    switch (o.kind) {
      case 'ok':
        await this.state.writeNodeKey({ hostId, collector: this.cfg.collector, nodeKey: o.value, enrolledAt: new Date(this.now()).toISOString() });
        this.log.info('enrolled', { hostId, collector: this.cfg.collector });
        return { key: o.value };
      case 'unauthorized':
        return { stop: this.configError(`enrollment refused: the collector does not accept the enrollment secret in ${this.cfg.enrollSecretFile}; put the collector's secret (its --enroll-secret-file) there`, { hostId, secretFile: this.cfg.enrollSecretFile, reason: o.message }) };
      case 'refused':
        return { stop: this.configError(`enrollment refused by the collector (${o.status} ${o.code}): ${o.message}`, { hostId, status: o.status, code: o.code }) };
      case 'misconfigured':
        return { stop: this.configError(`cannot enroll: ${o.message}`, { hostId, collector: this.cfg.collector }) };
      case 'unreachable':
        this.log.warn('collector unreachable', { collector: this.cfg.collector, reason: o.message });
        return { stop: 'retry' };
      case 'aborted':
        return { stop: 'aborted' };
      default: {
        const never: never = o;
        throw new Error(`unexpected outcome ${JSON.stringify(never)}`);
      }
    }
  }

  /** Deliver one spooled report; see the module comment for the protocol. */
  private async deliver(entry: SpoolEntry, signal: AbortSignal): Promise<Delivery> {
    const hostId = this.hostIdOf(entry.host);
    const { manifest } = entry;
    const dropped = this.state.spoolDropped;
    const base: ReportRequest = { schema: REPORT_REQUEST_SCHEMA, seq: entry.seq, collectedAt: entry.collectedAt, host: entry.host, digests: manifest.digests };
    if (entry.role !== null) base.role = entry.role;
    if (dropped > 0) base.spoolDropped = dropped;
    if (this.cfg.hostId) base.hostId = hostId;

    const last = this.state.lastAcceptedDigests(hostId, this.cfg.collector);
    let body: ReportRequest = sameDigests(last, manifest.digests) ? base : { ...base, manifest };
    const changed = last ? changedSections(last, manifest) : null;
    // Only some sections changed since the last accepted report (on a live host, the
    // process counts move every run): send those, not the whole manifest.
    if (body.manifest && changed && changed.length > 0 && changed.length < SECTIONS.filter((s) => manifest[s] !== undefined).length) {
      const sections: Partial<Sections> = {};
      for (const s of changed) (sections as Record<string, unknown>)[s] = manifest[s];
      body = { ...base, sections };
    }
    let reenrolled = false;
    let key = await this.nodeKey(entry.host, signal);
    // Bounded: digests → sections → full manifest, plus one re-enrollment.
    for (let round = 0; round < 5; round++) {
      if ('stop' in key) return key.stop;
      const o = await this.client.report(key.key, body, signal);
      const sent = body.manifest ? 'manifest' : body.sections ? 'sections' : 'digests';
      switch (o.kind) {
        case 'ok': {
          if (o.value.accepted) {
            await this.state.recordAccepted(hostId, this.cfg.collector, manifest.digests);
            if (dropped > 0) await this.state.ackDropped(dropped);
            this.log.info('report accepted', { seq: entry.seq, sent, bytes: this.client.lastReport.requestBytes, ...(dropped > 0 ? { spoolDropped: dropped } : {}) });
            return 'accepted';
          }
          if (body.manifest) {
            this.log.error('collector did not accept a full manifest; dropping the report', { seq: entry.seq, need: o.value.need });
            return 'refused';
          }
          const have = SECTIONS.filter((s) => manifest[s] !== undefined);
          const need = o.value.need.filter((s) => manifest[s] !== undefined);
          if (body.sections || need.length === 0 || need.length === have.length) {
            body = { ...base, manifest };
          } else {
            const sections: Partial<Sections> = {};
            for (const s of need) (sections as Record<string, unknown>)[s] = manifest[s];
            body = { ...base, sections };
          }
          this.log.info('collector needs sections', { seq: entry.seq, need: o.value.need, sending: body.manifest ? 'manifest' : need });
          continue;
        }
        case 'unauthorized':
          if (reenrolled) return this.configError(`report refused with a fresh node key: ${o.message}`, { seq: entry.seq });
          this.log.warn('node key refused; enrolling again', { seq: entry.seq, reason: o.message });
          await this.state.dropNodeKey();
          reenrolled = true;
          key = await this.nodeKey(entry.host, signal);
          continue;
        case 'refused':
          if (o.status === 409 && o.code === 'DRIFT_ERR_CONFLICT') {
            // Seqs only grow and the spool is sent in order: the collector has this seq
            // (or a later one) because an earlier send of it was committed and the answer lost.
            await this.state.recordAccepted(hostId, this.cfg.collector, manifest.digests);
            if (dropped > 0) await this.state.ackDropped(dropped);
            this.log.info('report already received by the collector; counted as delivered', { seq: entry.seq, sent, reason: o.message });
            return 'accepted';
          }
          this.log.error('report refused by the collector; dropping it (it would never be accepted)', { seq: entry.seq, status: o.status, code: o.code, reason: o.message, sent });
          return 'refused';
        case 'misconfigured':
          return this.configError(`cannot deliver: ${o.message}`, { seq: entry.seq, collector: this.cfg.collector });
        case 'unreachable':
          this.log.warn('collector unreachable', { collector: this.cfg.collector, seq: entry.seq, reason: o.message });
          return 'retry';
        case 'aborted':
          return 'aborted';
        default: {
          const never: never = o;
          throw new Error(`unexpected outcome ${JSON.stringify(never)}`);
        }
      }
    }
    this.log.error('report not accepted after several rounds; dropping it', { seq: entry.seq });
    return 'refused';
  }

  /** Deliver spooled reports oldest first; stop at the first one that must wait. */
  async drain(signal: AbortSignal): Promise<DrainResult> {
    const delivered: number[] = [];
    const refused: number[] = [];
    const seqs = await this.spool.seqs();
    let stopped: DrainResult['stopped'] = null;
    let i = 0;
    for (; i < seqs.length; i++) {
      const seq = seqs[i] as number;
      if (signal.aborted) { stopped = 'aborted'; break; }
      let entry: SpoolEntry | null;
      try { entry = await this.spool.get(seq); } catch (err) {
        // A disk error, not a bad file: keep the report and try again later.
        this.log.error('cannot read spooled report; keeping it for the next attempt', { seq, spool: this.spool.dir, reason: err instanceof Error ? err.message : String(err) });
        stopped = 'unreadable';
        break;
      }
      if (!entry) {
        this.log.error('spooled report unreadable; dropping it', { seq, spool: this.spool.dir, quarantine: join(this.spool.dir, 'quarantine'), quarantinedTotal: this.spool.quarantinedReports });
        await this.spool.remove(seq);
        await this.state.addDropped(1);
        continue;
      }
      const r = await this.deliver(entry, signal);
      if (r !== 'fatal') this.fatal = null;
      if (r === 'accepted') { this.lastAcceptedAt = this.now(); delivered.push(seq); await this.spool.remove(seq); continue; }
      if (r === 'refused') { refused.push(seq); await this.spool.remove(seq); continue; }
      stopped = r === 'retry' ? 'unreachable' : r;
      break;
    }
    const pending = (await this.spool.seqs()).length;
    await this.writeMetrics(pending);
    if (stopped === 'fatal' && this.fatal !== null) return { delivered, refused, pending, stopped, fatal: this.fatal };
    return { delivered, refused, pending, stopped };
  }

  /**
   * `--once`: collect, spool, deliver the spool. 0 when this run's report was accepted,
   * 2 when it stays spooled (also when a signal interrupted the delivery) or was refused.
   */
  async runOnce(signal: AbortSignal): Promise<number> {
    const seq = await this.collectAndSpool();
    const r = await this.drain(signal);
    if (r.delivered.includes(seq)) return 0;
    if (r.stopped === 'aborted') { this.log.info('interrupted; report kept in the spool', { seq, pending: r.pending }); return 2; }
    if (r.refused.includes(seq)) { this.log.error('report refused by the collector', { seq }); return 2; }
    if (r.stopped === 'fatal') {
      // Not "delivered by the next run": no run will deliver it until the configuration changes.
      this.log.error(`cannot deliver to the collector: ${r.fatal ?? 'configuration error'}; the report stays spooled until this is fixed`, { seq, pending: r.pending, fatal: true });
      return 2;
    }
    this.log.warn('report spooled; it will be delivered by the next run', { seq, pending: r.pending, reason: r.stopped });
    return 2;
  }

  /** Sleep up to `ms`; resolves early (false) when the signal fires. */
  private async sleep(ms: number, signal: AbortSignal): Promise<boolean> {
    if (ms <= 0) return !signal.aborted;
    try { await sleepTimer(ms, undefined, { signal }); return true; } catch { return false; }
  }

  /**
   * The daemon: first collection after random(0, splay), then every interval ± splay;
   * between collections, failed deliveries are retried with full-jitter backoff.
   * Returns when the signal fires (after spooling the report in hand).
   */
  async runLoop(signal: AbortSignal): Promise<void> {
    const { intervalMs, splayMs } = this.cfg;
    this.log.info('agent started', { collector: this.cfg.collector, root: this.cfg.root, proc: this.cfg.proc, intervalMs, splayMs, stateDir: this.cfg.stateDir });
    if (!(await this.sleep(Math.floor(this.random() * splayMs), signal))) return;
    let nextCollect = this.now();
    let failures = 0;
    while (!signal.aborted) {
      if (this.now() >= nextCollect) {
        try { await this.collectAndSpool(); } catch (err) {
          this.log.error('collection failed', { reason: err instanceof Error ? err.message : String(err) });
        }
        nextCollect = this.now() + intervalMs + Math.round((this.random() * 2 - 1) * splayMs);
      }
      const r = await this.drain(signal);
      if (r.stopped === 'aborted') break;
      let wait = nextCollect - this.now();
      if (r.stopped === 'fatal') {
        // Retrying sooner cannot help; try again at the next collection, so a fixed
        // configuration (a rotated secret, a new CA file is read at start) is picked up.
        failures = 0;
        this.log.info('delivery stopped by a configuration error; trying again at the next collection', { pending: r.pending, inMs: Math.max(0, wait) });
      } else if (r.stopped !== null) {
        wait = Math.min(wait, backoffDelay(failures, 1_000, 300_000, this.random));
        failures++;
        this.log.info('retrying later', { pending: r.pending, inMs: Math.max(0, wait), failures });
      } else {
        failures = 0;
      }
      if (!(await this.sleep(wait, signal))) break;
    }
    this.log.info('agent stopped', { pending: (await this.spool.seqs()).length });
  }
}
