import Database from 'better-sqlite3';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { createHash } from 'node:crypto';
import { mkdirSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { canonicalJson } from '../../agent/protocol/canonical.js';
import { DriftError, errnoOf } from '../../agent/protocol/errors.js';
import type { Finding } from '../../agent/protocol/finding.js';
import { SECTIONS, type Baseline, type Digests, type SectionName, type Sections, type Unread } from '../../agent/protocol/manifest.js';
import { MIGRATIONS } from './migrations.js';
import { applyDelta, sectionDelta, type SectionDelta } from './delta.js';

/** One enrolled host as the store keeps it. */
export interface HostRow {
  rowid: number;
  id: string;
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
export interface SaveReport {
  host: HostRow;
  seq: number;
  now: number;
  hostname: string;
  imageId: string | null;
  role: string | null;
  digests: Digests;
  kind: 'full' | 'partial' | 'digests';
  /**
   * The host's whole state when it changed (full or partial report); absent when the
   * digests equal the stored ones and nothing but the seq and times moves.
   */
  sections?: Partial<Sections>;
  /** The baseline compared against (its sections are the base of deltas); null when none. */
  baseline: StoredBaseline | null;
  /** The findings now; absent to keep the stored ones (only their last_seen moves). */
  findings?: Finding[];
  /** The report's machine-id (kept from the first accepted report). */
  machineId: string;
  /** The manifest's unread list; absent to keep the stored one. */
  unread?: Unread[];
}

type Row = Record<string, unknown>;

const SECTION_COLS: Record<SectionName, string> = {
  packages: 'd_packages', files: 'd_files', processes: 'd_processes', ports: 'd_ports',
};

/** `sha256:<hex>` → its 32 raw bytes (how digests are stored). */
export function digestBytes(digest: string): Buffer {
  return Buffer.from(digest.slice(7), 'hex');
}
/** 32 raw bytes → `sha256:<hex>`. */
export function digestText(bytes: Buffer): string {
  return `sha256:${bytes.toString('hex')}`;
}

function packJson(value: unknown): Buffer {
  return deflateRawSync(canonicalJson(value));
}
function unpackJson(data: Buffer): unknown {
  return JSON.parse(inflateRawSync(data).toString('utf8'));
}

/**
 * The collector's SQLite store (one file, WAL). Every method is synchronous: the
 * better-sqlite3 calls are short and a transaction never spans an await, so one
 * report's writes commit atomically before the HTTP layer acknowledges it.
 */
export class Store {
  readonly db: Database.Database;
  readonly file: string;
  private readonly st: ReturnType<Store['prepare']>;
  private readonly saveTx: (r: SaveReport) => void;

  private constructor(db: Database.Database, file: string) {
    this.db = db;
    this.file = file;
    this.st = this.prepare();
    // Made once: better-sqlite3 builds a wrapper on every transaction() call.
    this.saveTx = db.transaction((r: SaveReport) => this.writeReport(r));
  }

  /**
   * Open (creating if needed) the database file and bring its schema up to date.
   * Throws DRIFT_ERR_IO naming the file when it cannot be opened.
   */
  static open(file: string): Store {
    let db: Database.Database;
    try {
      if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
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
    return {
      hostByKey: db.prepare('SELECT * FROM hosts WHERE node_key_hash = ?'),
      hostById: db.prepare('SELECT * FROM hosts WHERE id = ?'),
      enroll: db.prepare(`INSERT INTO hosts (id, hostname, image_id, node_key_hash, enrolled_at) VALUES (@id, @hostname, @imageId, @hash, @now)
        ON CONFLICT(id) DO UPDATE SET hostname = excluded.hostname, image_id = COALESCE(excluded.image_id, hosts.image_id),
          node_key_hash = excluded.node_key_hash, enrolled_at = excluded.enrolled_at, last_seq = 0`),
      blobExists: db.prepare('SELECT 1 FROM blobs WHERE digest = ?').pluck(),
      blobGet: db.prepare('SELECT data FROM blobs WHERE digest = ?').pluck(),
      blobPut: db.prepare('INSERT OR IGNORE INTO blobs (digest, data) VALUES (?, ?)'),
      baselineGet: db.prepare('SELECT * FROM baselines WHERE image_id = ?'),
      baselineDigest: db.prepare('SELECT digest FROM baselines WHERE image_id = ?').pluck(),
      baselinePut: db.prepare(`INSERT INTO baselines (image_id, digest, key_id, head, d_packages, d_files, d_processes, d_ports, received_at)
        VALUES (@imageId, @digest, @keyId, @head, @d_packages, @d_files, @d_processes, @d_ports, @now)
        ON CONFLICT(image_id) DO UPDATE SET digest = excluded.digest, key_id = excluded.key_id, head = excluded.head,
          d_packages = excluded.d_packages, d_files = excluded.d_files, d_processes = excluded.d_processes, d_ports = excluded.d_ports,
          received_at = excluded.received_at`),
      deltasOf: db.prepare('SELECT section, base, delta FROM host_deltas WHERE host = ?'),
      deltaPut: db.prepare('INSERT OR REPLACE INTO host_deltas (host, section, base, delta) VALUES (?, ?, ?, ?)'),
      deltaDel: db.prepare('DELETE FROM host_deltas WHERE host = ? AND section = ?'),
      hostUpdate: db.prepare(`UPDATE hosts SET last_seq = @seq, last_seen = @now, hostname = @hostname, image_id = @imageId, role = @role,
        baseline_digest = @baselineDigest, d_root = @d_root, d_packages = @d_packages, d_files = @d_files, d_processes = @d_processes,
        d_ports = @d_ports, findings = @findings, machine_id = COALESCE(machine_id, @machineId), unread = COALESCE(@unread, unread)
        WHERE rowid = @rowid`),
      hostTouch: db.prepare(`UPDATE hosts SET last_seq = @seq, last_seen = @now, hostname = @hostname, role = @role,
        machine_id = COALESCE(machine_id, @machineId) WHERE rowid = @rowid`),
      findingsOf: db.prepare('SELECT data, first_seen, last_seen FROM findings WHERE host = ? ORDER BY kind, key, change'),
      findingKeysOf: db.prepare('SELECT kind, key, change FROM findings WHERE host = ?'),
      findingUpsert: db.prepare(`INSERT INTO findings (host, kind, key, change, data, first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT(host, kind, key, change) DO UPDATE SET data = excluded.data, last_seen = excluded.last_seen`),
      findingDel: db.prepare('DELETE FROM findings WHERE host = ? AND kind = ? AND key = ? AND change = ?'),
      findingsTouch: db.prepare('UPDATE findings SET last_seen = ? WHERE host = ?'),
      reportPut: db.prepare('INSERT INTO reports (host, seq, received_at, root, accepted, kind) VALUES (?, ?, ?, ?, 1, ?)'),
    };
  }

  /**
   * Enroll a host, or re-enroll it: the new node key hash replaces the old one (the
   * old key stops working) and the seq restarts, since an agent that lost its state
   * folder also lost its seq.
   */
  enroll(input: { id: string; hostname: string; imageId: string | null; nodeKeyHash: Buffer; now: number }): HostRow {
    this.st.enroll.run({ id: input.id, hostname: input.hostname, imageId: input.imageId, hash: input.nodeKeyHash, now: input.now });
    const row = this.hostById(input.id);
    if (!row) throw new Error(`host ${input.id} vanished after enrollment`);
    return row;
  }

  /** The host whose node key hashes to `hash`, if any. */
  hostByKey(hash: Buffer): HostRow | undefined {
    const row = this.st.hostByKey.get(hash) as Row | undefined;
    return row ? toHost(row) : undefined;
  }

  hostById(id: string): HostRow | undefined {
    const row = this.st.hostById.get(id) as Row | undefined;
    return row ? toHost(row) : undefined;
  }

  /** All hosts, ordered by id. */
  listHosts(): HostRow[] {
    return (this.db.prepare('SELECT * FROM hosts ORDER BY id').all() as Row[]).map(toHost);
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

  /** The digest of an image's baseline, without loading it. */
  baselineDigest(imageId: string): string | undefined {
    return this.st.baselineDigest.get(imageId) as string | undefined;
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
   * the report history row. The caller acknowledges only after this returns.
   */
  saveReport(r: SaveReport): void {
    this.saveTx(r);
  }

  private writeReport(r: SaveReport): void {
    const rowid = r.host.rowid;
    this.st.reportPut.run(rowid, r.seq, r.now, digestBytes(r.digests.root), r.kind);
    let findingCount = r.host.findings;
    if (r.findings) findingCount = this.writeFindings(rowid, r.findings, r.now);
    else if (r.host.findings > 0) this.st.findingsTouch.run(r.now, rowid);
    if (!r.sections) {
      this.st.hostTouch.run({ rowid, seq: r.seq, now: r.now, hostname: r.hostname, role: r.role, machineId: r.machineId });
      if (r.findings) this.db.prepare('UPDATE hosts SET findings = ?, baseline_digest = ? WHERE rowid = ?').run(findingCount, r.baseline?.digest ?? null, rowid);
      return;
    }
    const cols: Record<string, Buffer | null> = { d_packages: null, d_files: null, d_processes: null, d_ports: null };
    for (const name of SECTIONS) {
      const d = r.digests[name];
      const section = r.sections[name];
      if (d === undefined || section === undefined) {
        this.st.deltaDel.run(rowid, name);
        continue;
      }
      const bytes = digestBytes(d);
      cols[SECTION_COLS[name]] = bytes;
      const base = r.baseline?.baseline[name];
      const baseDigest = r.baseline?.baseline.digests[name];
      if (this.st.blobExists.get(bytes) !== undefined || base === undefined || baseDigest === undefined) {
        // Equal to a stored section (the baseline's, or another host's), or nothing to diff against.
        this.putBlobAs(bytes, section);
        this.st.deltaDel.run(rowid, name);
      } else {
        const delta = sectionDelta(base as Record<string, unknown>, section as Record<string, unknown>);
        this.st.deltaPut.run(rowid, name, digestBytes(baseDigest), this.putBlob(delta));
      }
    }
    this.st.hostUpdate.run({
      rowid, seq: r.seq, now: r.now, hostname: r.hostname, imageId: r.imageId, role: r.role,
      baselineDigest: r.baseline?.digest ?? null, d_root: digestBytes(r.digests.root), ...cols, findings: findingCount,
      machineId: r.machineId, unread: r.unread ? JSON.stringify(r.unread) : null,
    });
  }

  private writeFindings(rowid: number, findings: Finding[], now: number): number {
    const keep = new Set<string>();
    for (const f of findings) keep.add(`${f.kind}\0${f.key}\0${f.change}`);
    for (const r of this.st.findingKeysOf.all(rowid) as Row[]) {
      const k = `${String(r['kind'])}\0${String(r['key'])}\0${String(r['change'])}`;
      if (!keep.has(k)) this.st.findingDel.run(rowid, r['kind'], r['key'], r['change']);
    }
    for (const f of findings) this.st.findingUpsert.run(rowid, f.kind, f.key, f.change, JSON.stringify(f), now, now);
    return keep.size;
  }

  /** A host's current findings, ordered by kind, key, change. */
  findings(host: HostRow): StoredFinding[] {
    return (this.st.findingsOf.all(host.rowid) as Row[]).map((r) => ({
      finding: JSON.parse(String(r['data'])) as Finding,
      firstSeen: Number(r['first_seen']),
      lastSeen: Number(r['last_seen']),
    }));
  }

  /** Every host's finding keys (for cohorts): one indexed scan of the findings table. */
  findingKeys(): FindingKeyRow[] {
    return (this.db.prepare('SELECT host, kind, key, change FROM findings').all() as Row[]).map((r) => ({
      host: Number(r['host']), kind: String(r['kind']), key: String(r['key']), change: String(r['change']),
    }));
  }

  /** Seqs of the stored reports of a host, ascending. */
  reportSeqs(hostId: string): number[] {
    return (this.db.prepare('SELECT r.seq FROM reports r JOIN hosts h ON h.rowid = r.host WHERE h.id = ? ORDER BY r.seq').pluck().all(hostId) as number[]);
  }

  /**
   * Drop report history older than `before` (ms) and blobs no baseline, host or
   * delta refers to any more. Returns the number of history rows removed.
   */
  prune(before: number): number {
    return this.db.transaction(() => {
      const removed = this.db.prepare('DELETE FROM reports WHERE received_at < ?').run(before).changes;
      this.db.exec(`DELETE FROM blobs WHERE digest NOT IN (
        SELECT d_packages FROM baselines WHERE d_packages IS NOT NULL UNION SELECT d_files FROM baselines WHERE d_files IS NOT NULL
        UNION SELECT d_processes FROM baselines WHERE d_processes IS NOT NULL UNION SELECT d_ports FROM baselines WHERE d_ports IS NOT NULL
        UNION SELECT d_packages FROM hosts WHERE d_packages IS NOT NULL UNION SELECT d_files FROM hosts WHERE d_files IS NOT NULL
        UNION SELECT d_processes FROM hosts WHERE d_processes IS NOT NULL UNION SELECT d_ports FROM hosts WHERE d_ports IS NOT NULL
        UNION SELECT base FROM host_deltas UNION SELECT delta FROM host_deltas)`);
      return removed;
    })();
  }

  /** Row counts of every table (for tests and metrics). */
  counts(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const t of ['blobs', 'baselines', 'hosts', 'host_deltas', 'findings', 'reports']) {
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

  private putBlob(value: unknown): Buffer {
    const text = canonicalJson(value);
    const digest = createHash('sha256').update(text).digest();
    if (this.st.blobExists.get(digest) === undefined) this.st.blobPut.run(digest, deflateRawSync(text));
    return digest;
  }

  private putBlobAs(digest: Buffer, value: unknown): void {
    if (this.st.blobExists.get(digest) === undefined) this.st.blobPut.run(digest, packJson(value));
  }

  private getBlob(digest: Buffer): unknown {
    const data = this.st.blobGet.get(digest) as Buffer | undefined;
    if (!data) throw new DriftError('DRIFT_ERR_IO', `database ${this.file} lacks blob ${digestText(digest)}; the store is damaged, restore it from a backup`);
    return unpackJson(data);
  }
}

function toHost(r: Row): HostRow {
  const d = (col: string): string | undefined => (r[col] instanceof Buffer ? digestText(r[col] as Buffer) : undefined);
  let digests: Digests | null = null;
  const root = d('d_root');
  if (root) {
    const x: Record<string, string> = { root };
    for (const name of SECTIONS) {
      const v = d(SECTION_COLS[name]);
      if (v) x[name] = v;
    }
    digests = x as Digests;
  }
  return {
    rowid: Number(r['rowid']),
    id: String(r['id']),
    hostname: String(r['hostname']),
    imageId: (r['image_id'] as string | null) ?? null,
    role: (r['role'] as string | null) ?? null,
    enrolledAt: Number(r['enrolled_at']),
    lastSeq: Number(r['last_seq']),
    lastSeen: r['last_seen'] === null ? null : Number(r['last_seen']),
    baselineDigest: (r['baseline_digest'] as string | null) ?? null,
    digests,
    findings: Number(r['findings']),
    machineId: (r['machine_id'] as string | null) ?? null,
    unread: typeof r['unread'] === 'string' ? (JSON.parse(r['unread']) as Unread[]) : [],
  };
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
