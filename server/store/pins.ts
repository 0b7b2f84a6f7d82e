import type Database from 'better-sqlite3';
import { InstanceKeysSchema, type InstanceKeys } from '../../agent/protocol/manifest.js';
import { PINS_SCHEMA, type KeySource, type Pin, type PinBook, type PinnedEntry } from '../../agent/protocol/pins.js';

/**
 * The first-boot pins of hosts in the collector's store (migration 2, see
 * migrations.ts): reads and writes on the store's database, always inside the
 * caller's transaction. Pinned entries are blobs, content-addressed like sections,
 * so a value a cohort shares is stored once.
 */

/** What one compare changes in a host's pins. */
export interface PinWrite {
  /** The host's pins after the compare. */
  book: PinBook;
  /** Paths whose pins were set, changed or dropped. */
  changed: string[];
  /** How the default user's keys were judged. */
  keys: KeySource | null;
  /** The instance's launch keys the report carried. */
  instanceKeys: InstanceKeys | null;
  /** The journal entry, for a pinning (first boot, re-pin); null for a change of `keys` alone. */
  journal: { action: 'first-boot' | 'repin'; by: string | null; reason: string | null } | null;
}

/** A host's pins as stored, with how its keys were judged last. */
export interface StoredPins {
  book: PinBook;
  keys: KeySource | null;
  instanceKeys: InstanceKeys | null;
}

/** One journal entry. */
export interface PinJournalEntry {
  at: string;
  action: 'first-boot' | 'repin';
  by: string | null;
  reason: string | null;
  paths: string[];
}

/** A host holding a pinned value that is rare among the hosts of its cohort that pinned the path. */
export interface RarePinRow {
  host: number;
  path: string;
  /** Hosts of the cohort holding this value. */
  hosts: number;
  /** Hosts of the cohort that pinned the path. */
  of: number;
}

type Row = Record<string, unknown>;

/** The store's interned strings and content-addressed blobs, which pins share with reports (one cache, one packing). */
export interface StoreBlobs {
  /** The `strings` id of a text, inserting it when new. */
  stringId(text: string): number;
  /** Store a value as a blob (deflated canonical JSON) and return its digest. */
  putBlob(value: unknown): Buffer;
  /** The value of a stored blob; a missing one is a damaged store. */
  getBlob(digest: Buffer): unknown;
}

const iso = (ms: number): string => new Date(ms).toISOString();

export class PinStore {
  private readonly st;

  constructor(db: Database.Database, private readonly blobs: StoreBlobs) {
    this.st = {
      pinnedAt: db.prepare('SELECT pinned_at FROM hosts WHERE rowid = ?').pluck(),
      pinnedAtSet: db.prepare('UPDATE hosts SET pinned_at = coalesce(pinned_at, ?) WHERE rowid = ?'),
      bookGet: db.prepare('SELECT keys, instance_keys FROM pin_books WHERE host = ?'),
      bookPut: db.prepare(`INSERT INTO pin_books (host, keys, instance_keys) VALUES (?, ?, ?)
        ON CONFLICT(host) DO UPDATE SET keys = excluded.keys, instance_keys = excluded.instance_keys`),
      bookDel: db.prepare('DELETE FROM pin_books WHERE host = ?'),
      pinsOf: db.prepare('SELECT s.text AS path, p.value, p.first_seen FROM pins p JOIN strings s ON s.id = p.path WHERE p.host = ?'),
      pinPut: db.prepare('INSERT OR REPLACE INTO pins (host, path, value, first_seen) VALUES (?, ?, ?, ?)'),
      pinDel: db.prepare('DELETE FROM pins WHERE host = ? AND path = (SELECT id FROM strings WHERE text = ?)'),
      journalPut: db.prepare('INSERT INTO pin_journal (host, at, action, by, reason, paths) VALUES (?, ?, ?, ?, ?, ?)'),
      journalOf: db.prepare('SELECT at, action, by, reason, paths FROM pin_journal WHERE host = ? ORDER BY id DESC LIMIT ?'),
      // Per cohort (image, role) and path: how many reporting hosts pinned it and how many
      // hold its most common value; then the holders of values that are rare beside a
      // majority value. Grouped in SQLite: 10,000 hosts × 16 pins stay in the database.
      rare: db.prepare(`WITH g AS (
          SELECT h.image AS image, h.role AS role, p.path AS path, p.value AS value, count(*) AS n
          FROM pins p JOIN hosts h ON h.rowid = p.host WHERE h.last_seen IS NOT NULL GROUP BY 1, 2, 3, 4),
        t AS (SELECT image, role, path, sum(n) AS total, max(n) AS top FROM g GROUP BY 1, 2, 3)
        SELECT p.host AS host, s.text AS path, g.n AS n, t.total AS total
        FROM t JOIN g ON g.image IS t.image AND g.role IS t.role AND g.path = t.path
          JOIN pins p ON p.path = g.path AND p.value IS g.value
          JOIN hosts h ON h.rowid = p.host AND h.image IS g.image AND h.role IS g.role AND h.last_seen IS NOT NULL
          JOIN strings s ON s.id = g.path
        WHERE t.total >= @minCohort AND t.top > @majority * t.total AND g.n < t.top
          AND g.n <= max(1, CAST(@rareShare * t.total AS INTEGER))`),
    };
  }

  /** The pins of a host; null before its first compare against a baseline. */
  pinsOf(rowid: number): StoredPins | null {
    const pinnedAt = this.st.pinnedAt.get(rowid) as number | null | undefined;
    if (pinnedAt === null || pinnedAt === undefined) return null;
    const files: Record<string, Pin> = {};
    const rows = (this.st.pinsOf.all(rowid) as Row[]).sort((a, b) => (String(a['path']) < String(b['path']) ? -1 : 1));
    for (const r of rows) {
      const value = r['value'];
      files[String(r['path'])] = { firstSeen: iso(Number(r['first_seen'])), entry: value instanceof Buffer ? this.blobs.getBlob(value) as PinnedEntry : null };
    }
    const head = this.st.bookGet.get(rowid) as Row | undefined;
    const keys = head?.['keys'];
    const ik = typeof head?.['instance_keys'] === 'string' ? InstanceKeysSchema.safeParse(JSON.parse(head['instance_keys'])) : null;
    return {
      book: { schema: PINS_SCHEMA, pinnedAt: iso(Number(pinnedAt)), files },
      keys: keys === 'verified' || keys === 'trust' ? keys : null,
      instanceKeys: ik?.success ? ik.data : null,
    };
  }

  /** Write what a compare changed (call inside the report's or the re-pin's transaction). */
  write(rowid: number, w: PinWrite, now: number): void {
    this.st.pinnedAtSet.run(Date.parse(w.book.pinnedAt), rowid);
    if (w.keys === null && w.instanceKeys === null) this.st.bookDel.run(rowid);
    else this.st.bookPut.run(rowid, w.keys, w.instanceKeys === null ? null : JSON.stringify(w.instanceKeys));
    for (const path of w.changed) {
      const pin = w.book.files[path];
      if (!pin) { this.st.pinDel.run(rowid, path); continue; }
      const value = pin.entry === null ? null : this.blobs.putBlob(pin.entry);
      this.st.pinPut.run(rowid, this.blobs.stringId(path), value, Date.parse(pin.firstSeen));
    }
    // A first boot that pinned nothing is not journaled: hosts.pinned_at says it happened.
    if (w.journal && (w.journal.action === 'repin' || w.changed.length > 0)) this.st.journalPut.run(rowid, now, w.journal.action, w.journal.by, w.journal.reason, JSON.stringify(w.changed));
  }

  /** The last `limit` journal entries of a host, newest first. */
  journal(rowid: number, limit = 100): PinJournalEntry[] {
    return (this.st.journalOf.all(rowid, limit) as Row[]).map((r) => ({
      at: iso(Number(r['at'])),
      action: r['action'] === 'repin' ? 'repin' : 'first-boot',
      by: typeof r['by'] === 'string' ? r['by'] : null,
      reason: typeof r['reason'] === 'string' ? r['reason'] : null,
      paths: JSON.parse(String(r['paths'])) as string[],
    }));
  }

  /**
   * Hosts whose pinned value of a path is rare in their cohort (image, role): among
   * the reporting hosts that pinned the path (at least `minCohort`), one value is held
   * by more than `majority` of them, and this host's value by at most `rareShare` of
   * them (at least one host). Per-instance paths (hostname, host keys) have no majority.
   */
  rareValues(opts: { minCohort: number; majority: number; rareShare: number }): RarePinRow[] {
    return (this.st.rare.all(opts) as Row[]).map((r) => ({ host: Number(r['host']), path: String(r['path']), hosts: Number(r['n']), of: Number(r['total']) }));
  }
}
