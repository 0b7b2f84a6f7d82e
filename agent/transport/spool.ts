import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { z } from 'zod';
import { canonicalJson } from '../protocol/canonical.js';
import { DriftError, errnoOf } from '../protocol/errors.js';
import { HostInfoSchema, ManifestSchema, type HostInfo, type Manifest } from '../protocol/manifest.js';
import { writeFileAtomic } from '../state.js';

/**
 * The on-disk spool: reports collected but not yet accepted by the collector.
 *
 * Every report is spooled before it is sent (so a crash or SIGTERM mid-send loses
 * nothing) and removed once the collector accepted or definitively refused it.
 * One file per report, `r-<seq, 20 digits>.json`, so that a directory listing sorts
 * in seq order. The manifest body itself is stored once per distinct content in
 * `m-<sha256>.json.gz`: a host that does not change while the collector is away
 * spools a thousand small entries and one manifest.
 *
 * The spool is bounded by a number of reports; when a new report would exceed it,
 * the oldest are dropped first and `put` returns how many, for the caller to count.
 */

/** One spooled report: what the daemon needs to send it again. */
export interface SpoolEntry {
  seq: number;
  collectedAt: string;
  host: HostInfo;
  role: string | null;
  manifest: Manifest;
}

const EntryFileSchema = z.object({
  seq: z.number().int().nonnegative(),
  collectedAt: z.string(),
  host: HostInfoSchema,
  role: z.string().nullable(),
  blob: z.string().regex(/^[0-9a-f]{64}$/),
});
type EntryFile = z.infer<typeof EntryFileSchema>;

const ENTRY_RE = /^r-(\d{20})\.json$/;
const BLOB_RE = /^m-([0-9a-f]{64})\.json\.gz$/;

const entryName = (seq: number): string => `r-${String(seq).padStart(20, '0')}.json`;
const blobName = (sha: string): string => `m-${sha}.json.gz`;

/** A bounded, ordered, crash-safe queue of reports in one folder. */
export class Spool {
  readonly dir: string;
  readonly max: number;

  /** `max` ≥ 1: the most reports kept. The folder is created on first use. */
  constructor(dir: string, max: number) {
    if (!Number.isInteger(max) || max < 1) throw new DriftError('DRIFT_ERR_USAGE', `spool bound must be a whole number ≥ 1, got ${max}`);
    this.dir = dir;
    this.max = max;
  }

  private async ensureDir(): Promise<void> {
    try { await mkdir(this.dir, { recursive: true, mode: 0o700 }); } catch (err) {
      throw new DriftError('DRIFT_ERR_IO', `cannot create spool folder ${this.dir}: ${errnoOf(err)}`, { cause: err });
    }
  }

  /** The seqs spooled, oldest first. */
  async seqs(): Promise<number[]> {
    let names: string[];
    try { names = await readdir(this.dir); } catch (err) {
      if (errnoOf(err) === 'ENOENT') return [];
      throw new DriftError('DRIFT_ERR_IO', `cannot list spool folder ${this.dir}: ${errnoOf(err)}`, { cause: err });
    }
    return names.flatMap((n) => { const m = ENTRY_RE.exec(n); return m?.[1] ? [Number(m[1])] : []; }).sort((a, b) => a - b);
  }

  /**
   * Add a report, then enforce the bound by dropping the oldest. Returns the seqs
   * dropped (possibly the new one itself is kept: it is the newest).
   */
  async put(entry: SpoolEntry): Promise<number[]> {
    await this.ensureDir();
    const { host: _h, collectedAt: _c, ...rest } = entry.manifest;
    const blobText = canonicalJson(rest);
    const sha = createHash('sha256').update(blobText).digest('hex');
    const blobPath = join(this.dir, blobName(sha));
    try {
      await readFile(blobPath);
    } catch {
      await writeFileAtomic(blobPath, gzipSync(blobText), 0o600);
    }
    const file: EntryFile = { seq: entry.seq, collectedAt: entry.collectedAt, host: entry.host, role: entry.role, blob: sha };
    await writeFileAtomic(join(this.dir, entryName(entry.seq)), `${JSON.stringify(file)}\n`, 0o600);
    const seqs = await this.seqs();
    const dropped = seqs.slice(0, Math.max(0, seqs.length - this.max));
    for (const seq of dropped) await rm(join(this.dir, entryName(seq)), { force: true });
    if (dropped.length > 0) await this.collectGarbage();
    return dropped;
  }

  /**
   * Read one spooled report. A file that cannot be parsed (a torn write from before the
   * atomic writes, a disk error) yields null: the caller drops it rather than loop on it.
   */
  async get(seq: number): Promise<SpoolEntry | null> {
    try {
      const file = EntryFileSchema.parse(JSON.parse(await readFile(join(this.dir, entryName(seq)), 'utf8')));
      const blob = JSON.parse(gunzipSync(await readFile(join(this.dir, blobName(file.blob)))).toString('utf8')) as Record<string, unknown>;
      const manifest = ManifestSchema.parse({ ...blob, host: file.host, collectedAt: file.collectedAt });
      return { seq: file.seq, collectedAt: file.collectedAt, host: file.host, role: file.role, manifest };
    } catch {
      return null;
    }
  }

  /** Remove a report (delivered or refused for good) and any manifest no entry needs. */
  async remove(seq: number): Promise<void> {
    await rm(join(this.dir, entryName(seq)), { force: true });
    await this.collectGarbage();
  }

  /** Delete manifest blobs that no spooled report refers to. */
  async collectGarbage(): Promise<void> {
    let names: string[];
    try { names = await readdir(this.dir); } catch { return; }
    const used = new Set<string>();
    for (const n of names) {
      if (!ENTRY_RE.test(n)) continue;
      try {
        const f = EntryFileSchema.parse(JSON.parse(await readFile(join(this.dir, n), 'utf8')));
        used.add(f.blob);
      } catch { /* an unreadable entry is dropped by get(); its blob may go */ }
    }
    for (const n of names) {
      const m = BLOB_RE.exec(n);
      if (m?.[1] && !used.has(m[1])) await rm(join(this.dir, n), { force: true });
      // Temporary files of a write interrupted by a crash.
      if (n.includes('.tmp-')) await rm(join(this.dir, n), { force: true });
    }
  }
}
