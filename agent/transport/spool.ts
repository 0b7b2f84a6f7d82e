import { createHash, type Hash } from 'node:crypto';
import { access, lstat, mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { z } from 'zod';
import { canonicalJson, canonicalPieces } from '../protocol/canonical.js';
import { DriftError, errnoOf } from '../protocol/errors.js';
import { HostInfoSchema, ManifestSchema, SECTIONS, type HostInfo, type Manifest, type SectionName } from '../protocol/manifest.js';
import { AtomicFile, writeFileAtomic, writeFileAtomicSync } from '../atomic.js';
import { gunzipEach, gzipPieces } from './gzip.js';
import { HashError, REASONS, readFileChecked } from '../hash.js';

/**
 * The on-disk spool: reports collected but not yet accepted by the collector.
 *
 * Every report is spooled before it is sent (so a crash or SIGTERM mid-send loses
 * nothing) and removed once the collector accepted or definitively refused it.
 * One file per report, `r-<seq, 20 digits>-<blob sha256>.json`, so that a directory
 * listing sorts in seq order and says which manifest each report needs without
 * opening it. The manifest body itself is stored once per distinct content in
 * `m-<sha256>.json.gz`: a host that does not change while the collector is away
 * spools a thousand small entries and one manifest. (Entries named `r-<seq>.json`,
 * from before the blob id was in the name, are still read.)
 *
 * The spool is bounded by a number of reports and by the total size of the stored
 * manifests (on a live host every report may carry a new multi-megabyte manifest);
 * when a new report would exceed either, the oldest are dropped first and `put`
 * returns which, for the caller to count. The newest report is always kept.
 *
 * With a section cache (`sections/` in the spool, the agent's), a blob is written as
 * gzip members, one per section, and each section's member is also kept there as
 * `<section>-<digest hex>.json.gz` (the latest of each section only): a section
 * whose digest did not change since the last report (a host's packages and files,
 * most of the time) is copied from its member instead of serialised and compressed
 * again. A member is used only when its inflated text has the digest in its name.
 *
 * Spool files are read like any file drift does not trust (no symlink followed,
 * regular files only, bounded: entry files to 1 MiB, blobs to 256 MiB compressed
 * and inflated). A report whose files cannot be inflated or parsed is moved to
 * `quarantine/` (the newest 16 files are kept there for a person to look at),
 * and `get` answers null for it, so the caller counts it and goes on to the next.
 */

/** The default byte bound of the spool's manifests: 256 MiB. */
export const DEFAULT_SPOOL_MAX_BYTES = 256 * 1024 * 1024;

/** Largest entry file read. */
const ENTRY_CAP_BYTES = 1024 * 1024;
/** Largest manifest blob read, compressed and inflated (the collector takes 64 MiB by default). */
export const BLOB_CAP_BYTES = 256 * 1024 * 1024;
/** Files kept in `quarantine/`. */
export const QUARANTINE_KEEP = 16;
const QUARANTINE = 'quarantine';

/**
 * Read a spool file: no-follow, regular, at most `cap` bytes (HashError otherwise).
 * A folder in its place answers EISDIR, as a plain read would: that is an error of
 * the disk or of a person, and the report stays spooled.
 */
function readSpoolFile(path: string, cap: number): Buffer {
  try {
    return readFileChecked(path, cap, { checkPath: false });
  } catch (err) {
    if (err instanceof HashError && err.code === REASONS.notRegular('a folder')) throw new HashError('EISDIR');
    throw err;
  }
}

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

/** `r-<seq>-<blob>.json`; the blob part is missing in entries written by older agents. */
const ENTRY_RE = /^r-(\d{20})(?:-([0-9a-f]{64}))?\.json$/;
const BLOB_RE = /^m-([0-9a-f]{64})\.json\.gz$/;
/** A section's gzip member in the section cache: `<section>-<digest hex>.json.gz`. */
const MEMBER_RE = /^([a-z]+)-([0-9a-f]{64})\.json\.gz$/;
const DIGEST_RE = /^sha256:([0-9a-f]{64})$/;
/** The section cache's folder in the spool. */
const SECTION_CACHE = 'sections';

const entryName = (seq: number, sha: string): string => `r-${String(seq).padStart(20, '0')}-${sha}.json`;
const blobName = (sha: string): string => `m-${sha}.json.gz`;

/** One entry file as the folder listing shows it. */
interface Listed { seq: number; name: string; blob: string | null }

/** True for the errors that mean "this file is not a readable spool entry" rather than "the disk failed". */
function isParseError(err: unknown): boolean {
  if (err instanceof SyntaxError || err instanceof z.ZodError) return true;
  // Not a regular file, or over its cap: never readable as it is.
  if (err instanceof HashError) return !/^E[A-Z]+$/.test(err.code);
  const code = errnoOf(err);
  // zlib's codes for a truncated or corrupt gzip stream; a stream that inflates past the cap.
  return code === 'Z_DATA_ERROR' || code === 'Z_BUF_ERROR' || code === 'ERR_BUFFER_TOO_LARGE';
}

/** A bounded, ordered, crash-safe queue of reports in one folder. */
export class Spool {
  readonly dir: string;
  readonly max: number;
  readonly maxBytes: number;

  /** The section cache's folder, or null when blobs are written as one gzip stream. */
  readonly sectionCache: string | null;

  /**
   * `max` ≥ 1: the most reports kept; `maxBytes` ≥ 1: the most bytes of stored
   * manifests kept (default 256 MiB); `sectionCache`: keep each section's gzip member
   * for the next report (see the module comment). The folder is created on first use.
   */
  constructor(dir: string, max: number, maxBytes: number = DEFAULT_SPOOL_MAX_BYTES, opts: { sectionCache?: boolean } = {}) {
    if (!Number.isInteger(max) || max < 1) throw new DriftError('DRIFT_ERR_USAGE', `spool bound must be a whole number ≥ 1, got ${max}`);
    if (!Number.isInteger(maxBytes) || maxBytes < 1) throw new DriftError('DRIFT_ERR_USAGE', `spool byte bound must be a whole number of bytes ≥ 1, got ${maxBytes}`);
    this.dir = dir;
    this.max = max;
    this.maxBytes = maxBytes;
    this.sectionCache = opts.sectionCache === true ? join(dir, SECTION_CACHE) : null;
  }

  /**
   * The report this spool last stored, as it was given: `get` answers it without
   * inflating and parsing its manifest again (the agent sends what it has just
   * spooled; a live host's manifest is tens of MB once parsed).
   */
  private recent: { entry: SpoolEntry; stamp: string } | null = null;

  /** Identity of a report's two files as they are now (inode, size, mtime), or null when one cannot be stat'ed. */
  private async stampOf(entryFile: string, blob: string): Promise<string | null> {
    try {
      const parts: string[] = [];
      for (const name of [entryFile, blobName(blob)]) {
        const st = await lstat(join(this.dir, name), { bigint: true });
        parts.push(`${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.isFile()}`);
      }
      return parts.join('|');
    } catch {
      return null;
    }
  }

  /**
   * Store a manifest (without host and collection time) as `m-<sha256>.json.gz`:
   * its canonical JSON is hashed and gzipped piece by piece into a temporary file,
   * which is renamed to its content's name, or dropped when a blob of that content
   * is already there. Returns the sha256.
   */
  private async writeBlob(manifest: Manifest): Promise<string> {
    const { host: _h, collectedAt: _c, ...rest } = manifest;
    const hash = createHash('sha256');
    const pending = join(this.dir, 'm-pending.json.gz');
    let file: AtomicFile;
    try {
      file = AtomicFile.create(pending, 0o600);
    } catch (err) {
      throw new DriftError('DRIFT_ERR_IO', `cannot write a spool file in ${this.dir}: ${errnoOf(err)}; check the free space and permissions of the folder`, { cause: err });
    }
    let sha: string;
    try {
      const sink = (chunk: Buffer): void => file.write(chunk);
      if (this.sectionCache === null) {
        await gzipPieces(canonicalPieces(rest), sink, (piece) => hash.update(piece));
        sha = hash.digest('hex');
      } else {
        sha = (await this.writeMembers(rest, sink, hash)).digest('hex');
      }
    } catch (err) {
      file.abort();
      throw new DriftError('DRIFT_ERR_IO', `cannot write a spool file in ${this.dir}: ${errnoOf(err)}; check the free space and permissions of the folder`, { cause: err });
    }
    const blobPath = join(this.dir, blobName(sha));
    try {
      await access(blobPath);
      file.abort();
    } catch (err) {
      if (errnoOf(err) !== 'ENOENT') {
        file.abort();
        throw new DriftError('DRIFT_ERR_IO', `cannot check spool file ${blobPath}: ${errnoOf(err)}`, { cause: err });
      }
      try {
        file.commit(blobPath);
      } catch (err2) {
        throw new DriftError('DRIFT_ERR_IO', `cannot write ${blobPath}: ${errnoOf(err2)}; check the free space and permissions of the folder`, { cause: err2 });
      }
    }
    return sha;
  }

  /**
   * Write the canonical JSON of `rest` as gzip members into `sink`, each section as a
   * member of its own, taken from the section cache when a member of its digest is
   * there and right, else serialised and compressed (and cached for the next report).
   * Returns the hash of the text (a member taken from the cache is hashed as inflated).
   */
  private async writeMembers(rest: Omit<Manifest, 'host' | 'collectedAt'>, sink: (chunk: Buffer) => void, hash: Hash): Promise<Hash> {
    const cacheDir = this.sectionCache as string;
    // The cache only saves work: a cache folder or member that cannot be written is left as it is.
    await mkdir(cacheDir, { mode: 0o700 }).catch(() => undefined);
    const values = rest as Record<string, unknown>;
    const keys = Object.keys(values).filter((k) => values[k] !== undefined).sort();
    const keep = new Set<string>();
    let text = '{';
    const flush = async (): Promise<void> => {
      if (text === '') return;
      const piece = text;
      text = '';
      await gzipPieces([piece], sink, (p) => hash.update(p));
    };
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i] as string;
      text += `${i > 0 ? ',' : ''}${JSON.stringify(k)}:`;
      const hex = (SECTIONS as readonly string[]).includes(k) ? DIGEST_RE.exec(rest.digests[k as SectionName] ?? '')?.[1] : undefined;
      if (hex === undefined) {
        text += canonicalJson(values[k]);
        continue;
      }
      await flush();
      const name = `${k}-${hex}.json.gz`;
      keep.add(name);
      const path = join(cacheDir, name);
      const cached = await this.cachedMember(path, hex, hash);
      if (cached !== null) {
        sink(cached.bytes);
        hash = cached.hash;
        continue;
      }
      const chunks: Buffer[] = [];
      await gzipPieces(canonicalPieces(values[k]), (chunk) => { chunks.push(chunk); sink(chunk); }, (p) => hash.update(p));
      try { writeFileAtomicSync(path, Buffer.concat(chunks), 0o600); } catch { /* see above */ }
    }
    text += '}';
    await flush();
    // One member per section is kept: the one just written or used.
    for (const n of await readdir(cacheDir).catch(() => [])) {
      if ((MEMBER_RE.test(n) && !keep.has(n)) || n.includes('.tmp-')) await rm(join(cacheDir, n), { force: true, recursive: true }).catch(() => undefined);
    }
    return hash;
  }

  /**
   * A cached section member, when it is a regular file whose inflated text (at most
   * BLOB_CAP_BYTES) has the sha256 `hex`: its bytes, and `hash` with that text added.
   * Null when it is missing or wrong (it is then written again).
   */
  private async cachedMember(path: string, hex: string, hash: Hash): Promise<{ bytes: Buffer; hash: Hash } | null> {
    let bytes: Buffer;
    try {
      bytes = readSpoolFile(path, BLOB_CAP_BYTES);
    } catch {
      return null;
    }
    const trial = hash.copy();
    const check = createHash('sha256');
    try {
      await gunzipEach(bytes, BLOB_CAP_BYTES, (chunk) => { trial.update(chunk); check.update(chunk); });
    } catch {
      return null;
    }
    return check.digest('hex') === hex ? { bytes, hash: trial } : null;
  }

  private async ensureDir(): Promise<void> {
    try { await mkdir(this.dir, { recursive: true, mode: 0o700 }); } catch (err) {
      throw new DriftError('DRIFT_ERR_IO', `cannot create spool folder ${this.dir}: ${errnoOf(err)}`, { cause: err });
    }
  }

  private async names(): Promise<string[]> {
    try { return await readdir(this.dir); } catch (err) {
      if (errnoOf(err) === 'ENOENT') return [];
      throw new DriftError('DRIFT_ERR_IO', `cannot list spool folder ${this.dir}: ${errnoOf(err)}`, { cause: err });
    }
  }

  /** The entry files, oldest first, with the blob each needs when its name says so. */
  private async list(names?: string[]): Promise<Listed[]> {
    const out: Listed[] = [];
    for (const name of names ?? await this.names()) {
      const m = ENTRY_RE.exec(name);
      if (m?.[1]) out.push({ seq: Number(m[1]), name, blob: m[2] ?? null });
    }
    return out.sort((a, b) => a.seq - b.seq);
  }

  /** The blob an entry needs: from its name, or (older entries only) from its content. */
  private async blobOf(e: Listed): Promise<string | null> {
    if (e.blob !== null) return e.blob;
    try {
      return EntryFileSchema.parse(JSON.parse(readSpoolFile(join(this.dir, e.name), ENTRY_CAP_BYTES).toString('utf8'))).blob;
    } catch {
      return null;
    }
  }

  /** The seqs spooled, oldest first. */
  async seqs(): Promise<number[]> {
    return [...new Set((await this.list()).map((e) => e.seq))];
  }

  /**
   * Add a report, then enforce the bounds by dropping the oldest: first down to `max`
   * reports, then while the manifests kept total more than `maxBytes` (the newest
   * report is kept even when its manifest alone is larger). Returns the seqs dropped,
   * oldest first.
   */
  async put(entry: SpoolEntry): Promise<number[]> {
    await this.ensureDir();
    const sha = await this.writeBlob(entry.manifest);
    const file: EntryFile = { seq: entry.seq, collectedAt: entry.collectedAt, host: entry.host, role: entry.role, blob: sha };
    await writeFileAtomic(join(this.dir, entryName(entry.seq, sha)), `${JSON.stringify(file)}\n`, 0o600);
    const stamp = await this.stampOf(entryName(entry.seq, sha), sha);
    this.recent = stamp === null ? null : { entry, stamp };

    const entries = await this.list();
    const drop = entries.slice(0, Math.max(0, entries.length - this.max));
    let kept = entries.slice(drop.length);
    // Byte bound: the size of each distinct blob the kept entries need, counted once.
    const refs = new Map<string, number>();
    const blobs = new Map<Listed, string | null>();
    for (const e of kept) {
      const b = await this.blobOf(e);
      blobs.set(e, b);
      if (b !== null) refs.set(b, (refs.get(b) ?? 0) + 1);
    }
    const sizes = new Map<string, number>();
    let total = 0;
    for (const b of refs.keys()) {
      const size = await stat(join(this.dir, blobName(b))).then((st) => st.size, () => 0);
      sizes.set(b, size);
      total += size;
    }
    let i = 0;
    while (total > this.maxBytes && i < kept.length - 1) {
      const e = kept[i] as Listed;
      const b = blobs.get(e) ?? null;
      if (b !== null) {
        const n = (refs.get(b) ?? 1) - 1;
        refs.set(b, n);
        if (n === 0) total -= sizes.get(b) ?? 0;
      }
      drop.push(e);
      i++;
    }
    kept = kept.slice(i);
    for (const e of drop) await this.removeListed(e, kept);
    return drop.map((e) => e.seq);
  }

  /**
   * Read one spooled report, or null when there is none under that seq or its files
   * cannot be parsed (a torn write from before the atomic writes, a corrupt blob): the
   * caller drops it rather than loop on it. Any other error (EIO, EMFILE, EACCES) is
   * thrown as DRIFT_ERR_IO: the report stays spooled for the next attempt.
   */
  async get(seq: number): Promise<SpoolEntry | null> {
    const e = (await this.list()).find((x) => x.seq === seq);
    if (!e) return null;
    // The report just stored, when its files are still the ones written: no need to read them back.
    if (this.recent?.entry.seq === seq && e.blob !== null && (await this.stampOf(e.name, e.blob)) === this.recent.stamp) return this.recent.entry;
    let path = join(this.dir, e.name);
    let blobFile: string | null = null;
    try {
      const file = EntryFileSchema.parse(JSON.parse(readSpoolFile(path, ENTRY_CAP_BYTES).toString('utf8')));
      path = join(this.dir, blobName(file.blob));
      blobFile = blobName(file.blob);
      const blob = JSON.parse(gunzipSync(readSpoolFile(path, BLOB_CAP_BYTES), { maxOutputLength: BLOB_CAP_BYTES }).toString('utf8')) as Record<string, unknown>;
      const manifest = ManifestSchema.parse({ ...blob, host: file.host, collectedAt: file.collectedAt });
      return { seq: file.seq, collectedAt: file.collectedAt, host: file.host, role: file.role, manifest };
    } catch (err) {
      const code = err instanceof HashError ? err.code : errnoOf(err);
      if (code === 'ENOENT') return null;
      if (isParseError(err)) {
        await this.quarantine([e.name, ...(blobFile !== null && path.endsWith(blobFile) ? [blobFile] : [])]);
        this.quarantinedReports++;
        return null;
      }
      throw new DriftError('DRIFT_ERR_IO', `cannot read spooled report ${path}: ${code}; it stays spooled`, { cause: err });
    }
  }

  /**
   * Move files that can never be read back into `quarantine/`, keeping the newest
   * QUARANTINE_KEEP there. A file that cannot be moved is removed: it must not be tried again.
   */
  private async quarantine(names: readonly string[]): Promise<void> {
    const dir = join(this.dir, QUARANTINE);
    try {
      await mkdir(dir, { mode: 0o700 });
    } catch (err) {
      if (errnoOf(err) !== 'EEXIST') throw new DriftError('DRIFT_ERR_IO', `cannot create ${dir}: ${errnoOf(err)}`, { cause: err });
    }
    const stamp = String(Date.now()).padStart(15, '0');
    for (const name of names) {
      try {
        await rename(join(this.dir, name), join(dir, `${stamp}-${name}`));
      } catch {
        await rm(join(this.dir, name), { force: true, recursive: true });
      }
    }
    const kept = (await readdir(dir)).sort();
    for (const old of kept.slice(0, Math.max(0, kept.length - QUARANTINE_KEEP))) await rm(join(dir, old), { force: true, recursive: true });
  }

  /** Reports this spool moved to `quarantine/` since it was opened (drift_agent_spool_quarantined_total). */
  quarantinedReports = 0;

  /** Files in `quarantine/` (reports that could not be read back), oldest first. */
  async quarantined(): Promise<string[]> {
    try {
      return (await readdir(join(this.dir, QUARANTINE))).sort();
    } catch {
      return [];
    }
  }

  /** Remove a report (delivered or refused for good) and its manifest when no other report needs it. */
  async remove(seq: number): Promise<void> {
    const entries = await this.list();
    if (this.recent?.entry.seq === seq) this.recent = null;
    const gone = entries.filter((e) => e.seq === seq);
    const rest = entries.filter((e) => e.seq !== seq);
    for (const e of gone) await this.removeListed(e, rest);
  }

  /** Delete one entry file, then its blob if none of `others` names it. */
  private async removeListed(e: Listed, others: readonly Listed[]): Promise<void> {
    const blob = await this.blobOf(e);
    await rm(join(this.dir, e.name), { force: true });
    if (blob === null) return;
    for (const o of others) if (o !== e && o.name !== e.name && (await this.blobOf(o)) === blob) return;
    await rm(join(this.dir, blobName(blob)), { force: true });
  }

  /**
   * Delete manifest blobs no spooled report refers to and temporary files of writes
   * a crash interrupted. Needed only after a crash (remove and put keep the folder
   * tidy themselves): the daemon runs it once at start.
   */
  async collectGarbage(): Promise<void> {
    let names: string[];
    try { names = await this.names(); } catch { return; }
    const used = new Set<string>();
    for (const e of await this.list(names)) {
      const b = await this.blobOf(e);
      if (b !== null) used.add(b);
    }
    for (const n of names) {
      const m = BLOB_RE.exec(n);
      if (m?.[1] && !used.has(m[1])) await rm(join(this.dir, n), { force: true });
      if (n.includes('.tmp-')) await rm(join(this.dir, n), { force: true });
    }
  }
}
