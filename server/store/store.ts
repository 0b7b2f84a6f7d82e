import Database from 'better-sqlite3';
import { deflateRawSync } from 'node:zlib';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, closeSync, mkdirSync, openSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { canonicalJson } from '../../agent/protocol/canonical.js';
import { DriftError, errnoOf } from '../../agent/protocol/errors.js';
import type { Finding } from '../../agent/protocol/finding.js';
import { SECTIONS, type Baseline, type Digests, type SectionName, type Sections, type Unread } from '../../agent/protocol/manifest.js';
import { MIGRATIONS } from './migrations.js';
import { applyDelta, sectionDelta, type SectionDelta } from './delta.js';
import { PinStore, type PinWrite } from './pins.js';
import { digestBytes, digestText, packJson, unpackJson } from './pack.js';

export { digestBytes, digestText, packJson, unpackJson };

/** A claim of a host the collector did not trust: kept visible, never acted on. */
export interface HostFlag {
  /** What was claimed: a cohort role or an image id. */
  claim: 'role' | 'image';
  value: string;
  /** Why it was not trusted, and what the operator can do. */
  why: string;
}

/** What a report's findings beyond the stored bound were: counted, not stored. */
export interface OmittedFindings {
  count: number;
  bySeverity: Record<string, number>;
  byKind: Record<string, number>;
}

/** One enrolled host as the store keeps it. */
export interface HostRow {
  rowid: number;
  id: string;
  /** Enrollments so far (a re-enrollment restarts the seqs). */
  epoch: number;
  /** `states` row of the last stored state; null before the first accepted report. */
  stateId: number | null;
  hostname: string;
  imageId: string | null;
  role: string | null;
  enrolledAt: number;
  lastSeq: number;
  /** ms since epoch of the last accepted report; null before the first one. */
  lastSeen: number | null;
  /** Digest of the baseline its findings were computed against; null when none. */
  baselineDigest: string | null;
  /** Digests of the last stored state; null before the first accepted report. */
  digests: Digests | null;
  /** Number of current findings. */
  findings: number;
  /** machine-id of its first accepted report; null before it. */
  machineId: string | null;
  /** What the last full manifest could not read. */
  unread: Unread[];
  /** Claims of its last report that the collector did not trust. */
  flags: HostFlag[];
  /** Findings of its last compare beyond the stored bound; null when all are stored. */
  omitted: OmittedFindings | null;
  /** How an agentless host was reached (its reports posted by a sweep); null for a host with an agent. */
  via: 'ssh' | 'ssm' | null;
}

/** A baseline as stored: its digest (what image stamps name) and signing key. */
export interface StoredBaseline {
  imageId: string;
  digest: string;
  keyId: string | null;
  baseline: Baseline;
}

/** A current finding of a host, with when it was first and last seen (ms). */
export interface StoredFinding {
  finding: Finding;
  firstSeen: number;
  lastSeen: number;
}

/** The key of a finding, as cohorts count them. */
export interface FindingKeyRow {
  host: number;
  kind: string;
  key: string;
  change: string;
}

/** Everything one accepted report writes, in one transaction. */
/**
 * A section of a report packed for the store off the main thread: its packJson bytes
 * (null when its digest is the baseline's, whose blob is stored) and its delta against
 * the baseline's section (digest of the delta's canonical JSON, packJson bytes; null
 * without a baseline section). The store keeps one of the two, as for `sections`.
 */
export interface PreparedSection {
  packed: Uint8Array | null;
  delta: { digest: Uint8Array; packed: Uint8Array } | null;
}

export interface SaveReport {
  host: HostRow;
  seq: number;
  now: number;
  hostname: string;
  imageId: string | null;
  role: string | null;
  digests: Digests;
  /** How the state arrived (for logs; history keeps states, not how they arrived). */
  kind: 'full' | 'partial' | 'digests';
  /**
   * The host's whole state when it changed (full or partial report); absent when the
   * digests equal the stored ones and nothing but the seq and times moves.
   */
  sections?: Partial<Sections>;
  /** The sections packed off the main thread (server/http/decide.ts), in place of `sections`. */
  prepared?: Partial<Record<SectionName, PreparedSection>>;
  /** The baseline compared against (its sections are the base of deltas); null when none. */
  baseline: StoredBaseline | null;
  /** The findings now; absent to keep the stored ones (only their last_seen moves). */
  findings?: Finding[];
  /** The report's machine-id (kept from the first accepted report). */
  machineId: string;
  /** The manifest's unread list; absent to keep the stored one. */
  unread?: Unread[];
  /** Untrusted claims of this report; absent: none. */
  flags?: HostFlag[];
  /** With `findings`: those beyond the stored bound; null when all are stored. */
  omitted?: OmittedFindings | null;
  /** First-boot pins this report sets (its first compare) or how its keys were judged; absent when unchanged. */
  pins?: PinWrite;
  /** The cloud instance id the host reported (`host.instanceId`); absent leaves the stored one. */
  instanceId?: string;
}

/** A cloud instance id as the ledger accepts it: short, printable, no spaces (EC2's `i-0abc…` and others). */
export const INSTANCE_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

type Row = Record<string, unknown>;

const SECTION_COLS: Record<SectionName, string> = {
  packages: 'd_packages', files: 'd_files', processes: 'd_processes', ports: 'd_ports',
};

const HEX_ID = /^[0-9a-f]{32}$/;

/**
 * A host id as stored: 16 raw bytes when it is 32 lowercase hex digits (a
 * machine-id), else the text. The two forms never collide (SQLite keeps BLOB and
 * TEXT apart) and every id has exactly one form, so the unique index still holds.
 */
export function packHostId(id: string): Buffer | string {
  return HEX_ID.test(id) ? Buffer.from(id, 'hex') : id;
}
/** The inverse of packHostId. */
export function unpackHostId(v: unknown): string {
  return v instanceof Buffer ? v.toString('hex') : String(v);
}

/**
 * The collector's SQLite store (one file, WAL). Every method is synchronous: the
 * better-sqlite3 calls are short and a transaction never spans an await, so the
 * writes of a report commit atomically before the HTTP layer acknowledges it.
 * Holds the few `strings` and `states` rows in memory (this process is the only
 * writer); a failed write transaction drops those caches.
 */
export class Store {
  readonly db: Database.Database;
  readonly file: string;
  /** First-boot pins (server/store/pins.ts). */
  readonly pins: PinStore;
  private readonly st: ReturnType<Store['prepare']>;
  private readonly saveTx: (r: SaveReport) => void;
  private readonly batchTx: (items: readonly SaveReport[]) => (Error | null)[];
  private stringIds = new Map<string, number>();
  private stringTexts = new Map<number, string>();
  private stateIds = new Map<string, number>();
  private stateDigests = new Map<number, Digests>();

  private constructor(db: Database.Database, file: string) {
    this.db = db;
    this.file = file;
    this.st = this.prepare();
    this.pins = new PinStore(db, { stringId: (t) => this.stringId(t), putBlob: (v) => this.putBlob(v), getBlob: (d) => this.getBlob(d) });
    // Made once: better-sqlite3 builds a wrapper on every transaction() call.
    this.saveTx = db.transaction((r: SaveReport) => this.writeReport(r));
    this.batchTx = db.transaction((items: readonly SaveReport[]) => items.map((r) => {
      // Each report in its own savepoint: one failing write does not undo the others.
      // Its cached strings/states may name rows the savepoint just undid: forget them.
      try { this.saveTx(r); return null; } catch (err) { this.dropCaches(); return err instanceof Error ? err : new Error(String(err)); }
    }));
  }

  /**
   * Open (creating if needed) the database file and bring its schema up to date.
   * Throws DRIFT_ERR_IO naming the file when it cannot be opened.
   */
  static open(file: string): Store {
    let db: Database.Database;
    try {
      if (file !== ':memory:') {
        mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
        // The database holds every host's state and key hashes: owner-only. SQLite
        // creates its -wal and -shm files with the database file's permissions.
        closeSync(openSync(file, 'a', 0o600));
        chmodSync(file, 0o600);
      }
      db = new Database(file);
      db.pragma('journal_mode = WAL');
      // WAL + synchronous=NORMAL: a commit is in the WAL file (in the OS page cache)
      // before it returns, so a crash of this process (kill -9) never loses an
      // acknowledged report; only a power loss or kernel crash can lose the last
      // commits, and then the agent's next report re-sends the state (its digests
      // differ from what is stored, so the collector asks for the sections again).
      // FULL would fsync every commit and cap digest-only reports at the disk's
      // fsync rate, far below the 5,000/s target.
      db.pragma('synchronous = NORMAL');
      db.pragma('foreign_keys = ON');
      db.pragma('busy_timeout = 5000');
    } catch (err) {
      throw new DriftError('DRIFT_ERR_IO', `cannot open database ${file}: ${errnoOf(err)}; check the --db path and its folder's permissions`, { cause: err });
    }
    migrate(db);
    return new Store(db, file);
  }

  /** Applied migration versions, in order. */
  migrations(): number[] {
    return (this.db.prepare('SELECT version FROM schema_migrations ORDER BY version').all() as Row[]).map((r) => Number(r['version']));
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  private prepare() {
    const db = this.db;
    const hostCols = 'rowid, id, epoch, hostname, image, role, key_hash, enrolled_at, last_seq, last_seen, baseline, state, findings, machine_id, unread, flags, omitted, via';
    return {
      hostByRowid: db.prepare(`SELECT ${hostCols} FROM hosts WHERE rowid = ?`),
      hostById: db.prepare(`SELECT ${hostCols} FROM hosts WHERE id = ?`),
      hostsAll: db.prepare(`SELECT ${hostCols} FROM hosts`),
      enroll: db.prepare(`INSERT INTO hosts (id, hostname, image, key_hash, enrolled_at) VALUES (@id, @hostname, @image, @hash, @now)
        ON CONFLICT(id) DO UPDATE SET hostname = excluded.hostname, image = COALESCE(excluded.image, hosts.image),
          key_hash = excluded.key_hash, enrolled_at = excluded.enrolled_at, last_seq = 0, epoch = hosts.epoch + 1, reenroll_until = NULL`),
      reenrollApprove: db.prepare('UPDATE hosts SET reenroll_until = ? WHERE rowid = ?'),
      reenrollTake: db.prepare('UPDATE hosts SET reenroll_until = NULL WHERE rowid = ? AND reenroll_until >= ?'),
      stringGet: db.prepare('SELECT id FROM strings WHERE text = ?').pluck(),
      stringById: db.prepare('SELECT text FROM strings WHERE id = ?').pluck(),
      stringPut: db.prepare('INSERT INTO strings (text) VALUES (?)'),
      stateGet: db.prepare('SELECT id FROM states WHERE root = ?').pluck(),
      stateById: db.prepare('SELECT root, d_packages, d_files, d_processes, d_ports FROM states WHERE id = ?'),
      statePut: db.prepare('INSERT INTO states (root, d_packages, d_files, d_processes, d_ports) VALUES (@root, @d_packages, @d_files, @d_processes, @d_ports)'),
      blobExists: db.prepare('SELECT 1 FROM blobs WHERE digest = ?').pluck(),
      blobGet: db.prepare('SELECT data FROM blobs WHERE digest = ?').pluck(),
      blobPut: db.prepare('INSERT OR IGNORE INTO blobs (digest, data) VALUES (?, ?)'),
      baselineGet: db.prepare('SELECT * FROM baselines WHERE image_id = ?'),
      baselinePut: db.prepare(`INSERT INTO baselines (image_id, digest, key_id, head, d_packages, d_files, d_processes, d_ports, received_at)
        VALUES (@imageId, @digest, @keyId, @head, @d_packages, @d_files, @d_processes, @d_ports, @now)
        ON CONFLICT(image_id) DO UPDATE SET digest = excluded.digest, key_id = excluded.key_id, head = excluded.head,
          d_packages = excluded.d_packages, d_files = excluded.d_files, d_processes = excluded.d_processes, d_ports = excluded.d_ports,
          received_at = excluded.received_at`),
      deltasOf: db.prepare('SELECT section, base, delta FROM host_deltas WHERE host = ?'),
      deltaPut: db.prepare('INSERT OR REPLACE INTO host_deltas (host, section, base, delta) VALUES (?, ?, ?, ?)'),
      deltaDel: db.prepare('DELETE FROM host_deltas WHERE host = ? AND section = ?'),
      hostUpdate: db.prepare(`UPDATE hosts SET last_seq = @seq, last_seen = @now, hostname = @hostname, image = @image, role = @role,
        baseline = @baseline, state = @state, findings = @findings, machine_id = COALESCE(machine_id, @machineId),
        unread = CASE WHEN @setUnread THEN @unread ELSE unread END, flags = @flags,
        omitted = CASE WHEN @setOmitted THEN @omitted ELSE omitted END
        WHERE rowid = @rowid`),
      hostTouch: db.prepare(`UPDATE hosts SET last_seq = @seq, last_seen = @now, hostname = @hostname, role = @role,
        machine_id = COALESCE(machine_id, @machineId), flags = @flags WHERE rowid = @rowid`),
      hostFindings: db.prepare('UPDATE hosts SET findings = ?, baseline = ?, omitted = ? WHERE rowid = ?'),
      findingsOf: db.prepare('SELECT data, first_seen, last_seen FROM findings WHERE host = ? ORDER BY kind, key, change'),
      findingKeysOf: db.prepare('SELECT kind, key, change FROM findings WHERE host = ?'),
      findingUpsert: db.prepare(`INSERT INTO findings (host, kind, key, change, data, first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT(host, kind, key, change) DO UPDATE SET data = excluded.data, last_seen = excluded.last_seen`),
      findingDel: db.prepare('DELETE FROM findings WHERE host = ? AND kind = ? AND key = ? AND change = ?'),
      findingsTouch: db.prepare('UPDATE findings SET last_seen = ? WHERE host = ?'),
      historyExtend: db.prepare(`UPDATE history SET last_seq = @seq, last_at = @now
        WHERE host = @host AND epoch = @epoch AND last_seq = @prev AND state = @state`),
      instancePut: db.prepare(`INSERT INTO host_instances (host, instance_id) VALUES (?, ?)
        ON CONFLICT(host) DO UPDATE SET instance_id = excluded.instance_id WHERE instance_id IS NOT excluded.instance_id`),
      historyPut: db.prepare('INSERT INTO history (host, epoch, first_seq, last_seq, first_at, last_at, state) VALUES (@host, @epoch, @seq, @seq, @now, @now, @state)'),
    };
  }

  /**
   * Enroll a host, or re-enroll it: the new key hash replaces the old one (the old
   * key stops working), the seq restarts and the epoch moves on, since an agent that
   * lost its state folder also lost its seq. `keyHash` is what the HTTP layer keeps
   * of the node key's secret (16 bytes of its sha256); the key it hands out is the
   * returned row's rowid, a dot, and the secret.
   */
  enroll(input: { id: string; hostname: string; imageId: string | null; keyHash: Buffer; now: number }): HostRow {
    try {
      return this.db.transaction(() => {
        const image = input.imageId === null ? null : this.stringId(input.imageId);
        this.st.enroll.run({ id: packHostId(input.id), hostname: input.hostname, image, hash: input.keyHash, now: input.now });
        const row = this.hostById(input.id);
        if (!row) throw new Error(`host ${input.id} vanished after enrollment`);
        return row;
      })();
    } catch (err) { this.dropCaches(); throw err; }
  }

  /**
   * The host of an agentless target, created on its first posted report: it has no node
   * key (the stored hash matches no key ever handed out), only `via`. An id an agent
   * enrolled with is refused: its agent reports it.
   */
  agentlessHost(input: { id: string; hostname: string; imageId: string | null; via: 'ssh' | 'ssm'; now: number }): HostRow | 'agent' {
    try {
      return this.db.transaction((): HostRow | 'agent' => {
        const existing = this.hostById(input.id);
        if (existing && existing.via === null) return 'agent';
        if (!existing) {
          const image = input.imageId === null ? null : this.stringId(input.imageId);
          this.db.prepare('INSERT INTO hosts (id, hostname, image, key_hash, enrolled_at, via) VALUES (?, ?, ?, ?, ?, ?)')
            .run(packHostId(input.id), input.hostname, image, randomBytes(16), input.now, input.via);
        } else if (existing.via !== input.via) {
          this.db.prepare('UPDATE hosts SET via = ? WHERE rowid = ?').run(input.via, existing.rowid);
        }
        const row = this.hostById(input.id);
        if (!row) throw new Error(`host ${input.id} vanished after it was created`);
        return row;
      })();
    } catch (err) { this.dropCaches(); throw err; }
  }

  /** Remove an agentless host that never had a report stored (its first one was refused). */
  dropAgentless(rowid: number): void {
    this.db.prepare('DELETE FROM hosts WHERE rowid = ? AND via IS NOT NULL AND last_seen IS NULL').run(rowid);
  }

  /** Approve one re-enrollment of host `rowid` until `until` (ms since epoch). */
  approveReenroll(rowid: number, until: number): void {
    this.st.reenrollApprove.run(until, rowid);
  }

  /** Use up an operator's approval of a re-enrollment of host `rowid`; false when none is valid at `now`. */
  takeReenrollApproval(rowid: number, now: number): boolean {
    return this.st.reenrollTake.run(rowid, now).changes === 1;
  }

  /** The host of `rowid` if its stored key hash equals `keyHash` (constant-time), else undefined. */
  hostByKey(rowid: number, keyHash: Buffer): HostRow | undefined {
    const row = this.st.hostByRowid.get(rowid) as Row | undefined;
    if (!row) return undefined;
    const stored = row['key_hash'] as Buffer;
    if (stored.length !== keyHash.length || !timingSafeEqual(stored, keyHash)) return undefined;
    return this.toHost(row);
  }

  hostById(id: string): HostRow | undefined {
    const row = this.st.hostById.get(packHostId(id)) as Row | undefined;
    return row ? this.toHost(row) : undefined;
  }

  /** All hosts, ordered by id. */
  listHosts(): HostRow[] {
    const hosts = (this.st.hostsAll.all() as Row[]).map((r) => this.toHost(r));
    return hosts.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /**
   * Store (or replace) an image's baseline. Its sections go to `blobs` by their
   * digest, so hosts whose sections equal them share the bytes.
   */
  putBaseline(b: { imageId: string; digest: string; keyId: string | null; baseline: Baseline; now: number }): void {
    const { baseline } = b;
    const head: Record<string, unknown> = { ...baseline };
    const cols: Record<string, Buffer | null> = { d_packages: null, d_files: null, d_processes: null, d_ports: null };
    this.db.transaction(() => {
      for (const name of SECTIONS) {
        delete head[name];
        const section = baseline[name];
        if (section === undefined) continue;
        cols[SECTION_COLS[name]] = this.putBlob(section);
      }
      this.st.baselinePut.run({ imageId: b.imageId, digest: b.digest, keyId: b.keyId, head: packJson(head), now: b.now, ...cols });
    })();
  }

  /** The stored baseline of an image, rebuilt from its head and section blobs. */
  getBaseline(imageId: string): StoredBaseline | undefined {
    const row = this.st.baselineGet.get(imageId) as Row | undefined;
    if (!row) return undefined;
    const baseline = unpackJson(row['head'] as Buffer) as Record<string, unknown>;
    for (const name of SECTIONS) {
      const d = row[SECTION_COLS[name]];
      if (d instanceof Buffer) baseline[name] = this.getBlob(d);
    }
    return { imageId, digest: String(row['digest']), keyId: (row['key_id'] as string | null) ?? null, baseline: baseline as Baseline };
  }

  /** Image ids that have a baseline. */
  baselineImageIds(): string[] {
    return this.db.prepare('SELECT image_id FROM baselines ORDER BY image_id').pluck().all() as string[];
  }

  /** The last stored sections of a host (empty before its first accepted report). */
  hostSections(host: HostRow): Partial<Sections> {
    const out: Record<string, unknown> = {};
    if (!host.digests) return out;
    const deltas = new Map<string, { base: Buffer; delta: Buffer }>();
    for (const r of this.st.deltasOf.all(host.rowid) as Row[]) {
      deltas.set(String(r['section']), { base: r['base'] as Buffer, delta: r['delta'] as Buffer });
    }
    for (const name of SECTIONS) {
      const d = host.digests[name];
      if (d === undefined) continue;
      const delta = deltas.get(name);
      out[name] = delta
        ? applyDelta(this.getBlob(delta.base) as Record<string, unknown>, this.getBlob(delta.delta) as SectionDelta)
        : this.getBlob(digestBytes(d));
    }
    return out as Partial<Sections>;
  }

  /**
   * Write everything one accepted report changes, in one transaction: the host's
   * state (sections content-addressed or as deltas against the baseline), its
   * findings (first_seen kept for those that persist, vanished ones removed), and
   * the history. The caller acknowledges only after this returns.
   */
  saveReport(r: SaveReport): void {
    try { this.saveTx(r); } catch (err) { this.dropCaches(); throw err; }
  }

  /**
   * Write several reports in one transaction (one commit for all: group commit),
   * each in its own savepoint. Returns, per report, null when it is stored or the
   * error that undid its writes alone. Throws when the commit itself fails (then
   * none is stored). The caller acknowledges a report only after this returns.
   */
  saveReports(items: readonly SaveReport[]): (Error | null)[] {
    try {
      return this.batchTx(items);
    } catch (err) { this.dropCaches(); throw err; }
  }

  private writeReport(r: SaveReport): void {
    const rowid = r.host.rowid;
    const state = this.stateId(r.digests);
    // One history row per run of consecutive reports of one state.
    const hist = { host: rowid, epoch: r.host.epoch, seq: r.seq, now: r.now, state, prev: r.seq - 1 };
    if (this.st.historyExtend.run(hist).changes === 0) this.st.historyPut.run(hist);
    let findingCount = r.host.findings;
    if (r.pins) this.pins.write(rowid, r.pins, r.now);
    if (r.findings) findingCount = this.writeFindings(rowid, r.findings, r.now) + (r.omitted?.count ?? 0);
    else if (r.host.findings > 0) this.st.findingsTouch.run(r.now, rowid);
    const baseline = r.baseline ? this.stringId(r.baseline.digest) : null;
    const role = r.role === null ? null : this.stringId(r.role);
    const machineId = r.machineId === r.host.id ? '' : r.machineId;
    const flags = r.flags === undefined || r.flags.length === 0 ? null : JSON.stringify(r.flags);
    const omitted = r.omitted ? JSON.stringify(r.omitted) : null;
    if (r.instanceId !== undefined && INSTANCE_ID.test(r.instanceId)) this.st.instancePut.run(rowid, r.instanceId);
    if (!r.sections && !r.prepared) {
      this.st.hostTouch.run({ rowid, seq: r.seq, now: r.now, hostname: r.hostname, role, machineId, flags });
      if (r.findings) this.st.hostFindings.run(findingCount, baseline, omitted, rowid);
      return;
    }
    for (const name of SECTIONS) {
      const d = r.digests[name];
      const section = r.sections?.[name];
      const prepared = r.prepared?.[name];
      if (d === undefined || (section === undefined && prepared === undefined)) {
        this.st.deltaDel.run(rowid, name);
        continue;
      }
      const bytes = digestBytes(d);
      const base = r.baseline?.baseline[name];
      const baseDigest = r.baseline?.baseline.digests[name];
      if (this.st.blobExists.get(bytes) !== undefined || base === undefined || baseDigest === undefined) {
        // Equal to a stored section (the baseline's, or another host's), or nothing to diff against.
        if (prepared) this.putPacked(bytes, prepared.packed);
        else this.putBlobAs(bytes, section);
        this.st.deltaDel.run(rowid, name);
      } else if (prepared) {
        if (!prepared.delta) throw new DriftError('DRIFT_ERR_IO', `report seq ${r.seq} of host ${r.host.id}: section ${name} was packed without its delta against baseline ${r.baseline?.digest ?? '(none)'}`);
        this.putPacked(Buffer.from(prepared.delta.digest), prepared.delta.packed);
        this.st.deltaPut.run(rowid, name, digestBytes(baseDigest), Buffer.from(prepared.delta.digest));
      } else {
        const delta = sectionDelta(base as Record<string, unknown>, section as Record<string, unknown>);
        this.st.deltaPut.run(rowid, name, digestBytes(baseDigest), this.putBlob(delta));
      }
    }
    const unread = r.unread === undefined ? null : r.unread.length === 0 ? null : JSON.stringify(r.unread);
    this.st.hostUpdate.run({
      rowid, seq: r.seq, now: r.now, hostname: r.hostname, image: r.imageId === null ? null : this.stringId(r.imageId), role,
      baseline, state, findings: findingCount, machineId, setUnread: r.unread === undefined ? 0 : 1, unread,
      flags, setOmitted: r.findings ? 1 : 0, omitted,
    });
  }

  private writeFindings(rowid: number, findings: Finding[], now: number): number {
    const keep = new Set<string>();
    for (const f of findings) keep.add(`${f.kind}\0${f.key}\0${f.change}`);
    for (const r of this.st.findingKeysOf.all(rowid) as Row[]) {
      const k = `${String(r['kind'])}\0${String(r['key'])}\0${String(r['change'])}`;
      if (!keep.has(k)) this.st.findingDel.run(rowid, r['kind'], r['key'], r['change']);
    }
    for (const f of findings) this.st.findingUpsert.run(rowid, f.kind, f.key, f.change, deflateRawSync(JSON.stringify(f)), now, now);
    return keep.size;
  }

  /**
   * An operator's re-pin: the host's new pins, its journal entry and the findings
   * recomputed under them, in one transaction.
   */
  repin(host: HostRow, pins: PinWrite, findings: Finding[], omitted: OmittedFindings | null, now: number): void {
    try {
      this.db.transaction(() => {
        this.pins.write(host.rowid, pins, now);
        const count = this.writeFindings(host.rowid, findings, now) + (omitted?.count ?? 0);
        this.st.hostFindings.run(count, host.baselineDigest === null ? null : this.stringId(host.baselineDigest), omitted ? JSON.stringify(omitted) : null, host.rowid);
      })();
    } catch (err) { this.dropCaches(); throw err; }
  }

  /** A host's current findings, ordered by kind, key, change. */
  findings(host: HostRow): StoredFinding[] {
    return (this.st.findingsOf.all(host.rowid) as Row[]).map((r) => ({
      finding: unpackJson(r['data'] as Buffer) as Finding,
      firstSeen: Number(r['first_seen']),
      lastSeen: Number(r['last_seen']),
    }));
  }

  /** Every host's finding keys (for cohorts): one scan of the findings table. */
  findingKeys(): FindingKeyRow[] {
    return (this.db.prepare('SELECT host, kind, key, change FROM findings').all() as Row[]).map((r) => ({
      host: Number(r['host']), kind: String(r['kind']), key: String(r['key']), change: String(r['change']),
    }));
  }

  /**
   * Seqs of the stored reports of a host, ascending (by enrollment, then seq). Exact:
   * a history row covers first_seq..last_seq and is extended only by the next seq.
   */
  reportSeqs(hostId: string): number[] {
    const rows = this.db.prepare(`SELECT first_seq, last_seq FROM history WHERE host = (SELECT rowid FROM hosts WHERE id = ?)
      ORDER BY epoch, first_seq`).all(packHostId(hostId)) as Row[];
    const out: number[] = [];
    for (const r of rows) for (let s = Number(r['first_seq']); s <= Number(r['last_seq']); s++) out.push(s);
    return out;
  }

  /** A host's history, one entry per change: the seqs and times of a run of reports of one state. */
  history(hostId: string): { epoch: number; firstSeq: number; lastSeq: number; firstAt: number; lastAt: number; root: string }[] {
    const rows = this.db.prepare(`SELECT h.epoch, h.first_seq, h.last_seq, h.first_at, h.last_at, s.root FROM history h JOIN states s ON s.id = h.state
      WHERE h.host = (SELECT rowid FROM hosts WHERE id = ?) ORDER BY h.epoch, h.first_seq`).all(packHostId(hostId)) as Row[];
    return rows.map((r) => ({
      epoch: Number(r['epoch']), firstSeq: Number(r['first_seq']), lastSeq: Number(r['last_seq']),
      firstAt: Number(r['first_at']), lastAt: Number(r['last_at']), root: digestText(r['root'] as Buffer),
    }));
  }

  /**
   * Drop history rows whose last report is older than `before` (ms), then states no
   * host or history row refers to, then blobs no baseline, current host state or
   * delta refers to. Returns the number of history rows removed.
   */
  prune(before: number): number {
    const removed = this.db.transaction(() => {
      const n = this.db.prepare('DELETE FROM history WHERE last_at < ?').run(before).changes;
      this.db.exec(`DELETE FROM states WHERE id NOT IN (SELECT state FROM hosts WHERE state IS NOT NULL UNION SELECT state FROM history)`);
      this.db.exec(`DELETE FROM blobs WHERE digest NOT IN (
        SELECT d_packages FROM baselines WHERE d_packages IS NOT NULL UNION SELECT d_files FROM baselines WHERE d_files IS NOT NULL
        UNION SELECT d_processes FROM baselines WHERE d_processes IS NOT NULL UNION SELECT d_ports FROM baselines WHERE d_ports IS NOT NULL
        UNION SELECT d_packages FROM states WHERE d_packages IS NOT NULL AND id IN (SELECT state FROM hosts)
        UNION SELECT d_files FROM states WHERE d_files IS NOT NULL AND id IN (SELECT state FROM hosts)
        UNION SELECT d_processes FROM states WHERE d_processes IS NOT NULL AND id IN (SELECT state FROM hosts)
        UNION SELECT d_ports FROM states WHERE d_ports IS NOT NULL AND id IN (SELECT state FROM hosts)
        UNION SELECT base FROM host_deltas UNION SELECT delta FROM host_deltas
        UNION SELECT value FROM pins WHERE value IS NOT NULL)`);
      return n;
    })();
    this.dropCaches();
    return removed;
  }

  /** Row counts of every table (for tests and metrics). */
  counts(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const t of ['blobs', 'baselines', 'strings', 'states', 'hosts', 'host_deltas', 'findings', 'history', 'pins', 'pin_journal']) {
      out[t] = Number(this.db.prepare(`SELECT count(*) FROM ${t}`).pluck().get());
    }
    return out;
  }

  /** Bytes of the database file plus its WAL. */
  sizeBytes(): number {
    if (this.file === ':memory:') return 0;
    let size = 0;
    for (const f of [this.file, `${this.file}-wal`]) {
      try { size += statSync(f).size; } catch { /* no WAL yet */ }
    }
    return size;
  }

  /** True when the database answers a trivial query. */
  ping(): boolean {
    try { return this.db.prepare('SELECT 1').pluck().get() === 1; } catch { return false; }
  }

  private dropCaches(): void {
    this.stringIds.clear();
    this.stringTexts.clear();
    this.stateIds.clear();
    this.stateDigests.clear();
  }

  /** The `strings` id of a text, inserting it when new. */
  private stringId(text: string): number {
    let id = this.stringIds.get(text);
    if (id === undefined) {
      id = this.st.stringGet.get(text) as number | undefined;
      if (id === undefined) id = Number(this.st.stringPut.run(text).lastInsertRowid);
      this.stringIds.set(text, id);
      this.stringTexts.set(id, text);
    }
    return id;
  }

  private stringText(id: unknown): string | null {
    if (id === null || id === undefined) return null;
    const n = Number(id);
    let text = this.stringTexts.get(n);
    if (text === undefined) {
      text = this.st.stringById.get(n) as string | undefined;
      if (text === undefined) throw new DriftError('DRIFT_ERR_IO', `database ${this.file} lacks strings row ${n}; the store is damaged, restore it from a backup`);
      this.stringTexts.set(n, text);
      this.stringIds.set(text, n);
    }
    return text;
  }

  /** The `states` id of a set of digests, inserting it when new. */
  private stateId(digests: Digests): number {
    let id = this.stateIds.get(digests.root);
    if (id === undefined) {
      const root = digestBytes(digests.root);
      id = this.st.stateGet.get(root) as number | undefined;
      if (id === undefined) {
        const cols: Record<string, Buffer | null> = { d_packages: null, d_files: null, d_processes: null, d_ports: null };
        for (const name of SECTIONS) {
          const d = digests[name];
          if (d !== undefined) cols[SECTION_COLS[name]] = digestBytes(d);
        }
        id = Number(this.st.statePut.run({ root, ...cols }).lastInsertRowid);
      }
      this.stateIds.set(digests.root, id);
    }
    return id;
  }

  private stateOf(id: unknown): Digests | null {
    if (id === null || id === undefined) return null;
    const n = Number(id);
    let digests = this.stateDigests.get(n);
    if (!digests) {
      const r = this.st.stateById.get(n) as Row | undefined;
      if (!r) throw new DriftError('DRIFT_ERR_IO', `database ${this.file} lacks states row ${n}; the store is damaged, restore it from a backup`);
      const x: Record<string, string> = { root: digestText(r['root'] as Buffer) };
      for (const name of SECTIONS) {
        const v = r[SECTION_COLS[name]];
        if (v instanceof Buffer) x[name] = digestText(v);
      }
      digests = Object.freeze(x) as unknown as Digests;
      this.stateDigests.set(n, digests);
    }
    return digests;
  }

  private toHost(r: Row): HostRow {
    const id = unpackHostId(r['id']);
    const mid = r['machine_id'];
    return {
      rowid: Number(r['rowid']),
      id,
      epoch: Number(r['epoch']),
      stateId: r['state'] === null ? null : Number(r['state']),
      hostname: String(r['hostname']),
      imageId: this.stringText(r['image']),
      role: this.stringText(r['role']),
      enrolledAt: Number(r['enrolled_at']),
      lastSeq: Number(r['last_seq']),
      lastSeen: r['last_seen'] === null ? null : Number(r['last_seen']),
      baselineDigest: this.stringText(r['baseline']),
      digests: this.stateOf(r['state']),
      findings: Number(r['findings']),
      machineId: mid === null ? null : mid === '' ? id : String(mid),
      unread: typeof r['unread'] === 'string' ? (JSON.parse(r['unread']) as Unread[]) : [],
      flags: typeof r['flags'] === 'string' ? (JSON.parse(r['flags']) as HostFlag[]) : [],
      omitted: typeof r['omitted'] === 'string' ? (JSON.parse(r['omitted']) as OmittedFindings) : null,
      via: r['via'] === 'ssh' || r['via'] === 'ssm' ? r['via'] : null,
    };
  }

  private putBlob(value: unknown): Buffer {
    const text = canonicalJson(value);
    const digest = createHash('sha256').update(text).digest();
    if (this.st.blobExists.get(digest) === undefined) this.st.blobPut.run(digest, deflateRawSync(text));
    return digest;
  }

  private putBlobAs(digest: Buffer, value: unknown): void {
    if (this.st.blobExists.get(digest) === undefined) this.st.blobPut.run(digest, packJson(value));
  }

  /** A blob packed elsewhere (packJson bytes); null means it must already be stored. */
  private putPacked(digest: Buffer, packed: Uint8Array | null): void {
    if (this.st.blobExists.get(digest) !== undefined) return;
    if (packed === null) throw new DriftError('DRIFT_ERR_IO', `database ${this.file} lacks blob ${digestText(digest)} that a report refers to; the store is damaged, restore it from a backup`);
    this.st.blobPut.run(digest, Buffer.from(packed.buffer, packed.byteOffset, packed.byteLength));
  }

  private getBlob(digest: Buffer): unknown {
    const data = this.st.blobGet.get(digest) as Buffer | undefined;
    if (!data) throw new DriftError('DRIFT_ERR_IO', `database ${this.file} lacks blob ${digestText(digest)}; the store is damaged, restore it from a backup`);
    return unpackJson(data);
  }
}

function migrate(db: Database.Database): void {
  db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)');
  const done = new Set((db.prepare('SELECT version FROM schema_migrations').pluck().all() as number[]));
  for (const m of MIGRATIONS) {
    if (done.has(m.version)) continue;
    db.transaction(() => {
      db.exec(m.sql);
      db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(m.version, m.name, new Date().toISOString());
    })();
  }
}
