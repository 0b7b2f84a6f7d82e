import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { BigIntStats } from 'node:fs';
import { AtomicFile, privateDirProblem } from './atomic.js';
import { DriftError } from './protocol/errors.js';

/**
 * The stat cache: the sha256 of a regular file, and the attributes of any path
 * that take more than its lstat to read (inode flags, whether it has extended
 * attributes), valid while the path's device, inode, size, mtime and ctime
 * (nanoseconds) are those it had when it was read. An unchanged file is then not
 * read again. ctime cannot be set from user space, and every attribute change
 * (content, setxattr, setfacl, setcap, chattr, a new hard link) moves it, so a
 * change that restores mtime (touch -d, tar -x) is still seen.
 *
 * Records are keyed by the file itself (device + inode) rather than by its path:
 * a path whose file was replaced has a new inode and misses, the links of one
 * hard-linked file are stored once (a cold scan still hashes every link path; an
 * incremental one hits the cache for each), and the cache holds no path strings — 80 bytes a path on disk and
 * in memory, plus 8–16 for its index, which keeps the agent's peak memory low on large trees.
 *
 * One file in the state folder, `statcache.v2`, binary and compact:
 *
 *   "DRIFTSC2"  u32 rootLength  root (UTF-8)  u32 count
 *   count × ( u64 dev  u64 ino  u64 size  u64 mtimeNs  u64 ctimeNs  32 bytes sha256  u32 flags  u32 bits )
 *   little-endian; `flags` is the inode flag mask (see agent/collectors/flags.ts),
 *   `bits` says whether the flags were read, whether the path has extended
 *   attributes (read again on a hit: few paths have any), and the file type; the
 *   sha256 is zero for anything but a regular file.
 *
 * It is replaced atomically (agent/atomic.ts), only in a folder no other user can
 * write (else it is neither read nor written), and a file that is missing,
 * truncated, of another version or made for another root reads as an empty cache:
 * a cache never decides a result, it only saves work.
 */

export const STAT_CACHE_FILE = 'statcache.v2';
/** The same format, for the images of running processes (keyed by the image's own stat). */
export const EXE_CACHE_FILE = 'execache.v2';
const MAGIC = Buffer.from('DRIFTSC2', 'latin1');
const STAT_BYTES = 40;
const SHA_BYTES = 32;
const ATTR_BYTES = 8;
const RECORD_BYTES = STAT_BYTES + SHA_BYTES + ATTR_BYTES;

/** `bits` of a record: the inode flags were read (else they are read again on a hit). */
export const ATTR_FLAGS_READ = 1;
/** `bits` of a record: the path has extended attributes (read again on a hit). */
export const ATTR_HAS_XATTRS = 2;
/** `bits` of a record: the file type (mode >> 12) sits in bits 4-7, so a hit is of the same type. */
export const attrType = (mode: number): number => ((mode >>> 12) & 0xf) << 4;
/** Staged records per chunk (640 KiB). */
const CHUNK_RECORDS = 8192;
const WRITE_BUFFER_BYTES = 1024 * 1024;

/**
 * Files changed less than this long before the scan started are not cached: file
 * timestamps are only as fine as the kernel's clock tick (1-10 ms), so a write in
 * the same tick as our stat could leave size, mtime and ctime unchanged (git's
 * "racy" case). One second is far more than a tick and costs only re-hashing the
 * files changed in the last second.
 */
const RACY_WINDOW_NS = 1_000_000_000n;

/**
 * Where each loaded record is, by device and inode: an open-addressing table of
 * record numbers + 1 (0: empty slot), at least twice as many slots as records,
 * probed linearly from a hash of the two numbers' low 32 bits. Typed memory, no
 * object per record: building it costs no garbage, and a lookup is a few integer
 * operations. A hit compares all 40 bytes of the record's stat fields.
 */
interface Index {
  slots: Int32Array;
  mask: number;
}

/** The first slot to probe for a device and inode, from their low 32 bits. */
function slotOf(dev: number, ino: number, mask: number): number {
  return (Math.imul(ino ^ Math.imul(dev, 0x9e3779b1), 0x85ebca6b) ^ (ino >>> 15)) & mask;
}

/** The 40 stat bytes of a BigIntStats in the record layout. */
function stampOf(st: BigIntStats): DataView {
  const view = new DataView(new ArrayBuffer(STAT_BYTES));
  view.setBigUint64(0, st.dev, true);
  view.setBigUint64(8, st.ino, true);
  view.setBigUint64(16, st.size, true);
  view.setBigUint64(24, st.mtimeNs, true);
  view.setBigUint64(32, st.ctimeNs, true);
  return view;
}

/** A loaded stat cache; look files up during a collection, then `save` it. */
export class StatCache {
  /** Loaded records hit during this collection, by record number (they are kept on save). */
  private readonly kept: Uint8Array;
  private keptCount = 0;
  /**
   * Records of files about to be hashed (`stage`): stat fields now, sha256 on
   * `record`. Fixed-size chunks, so no Stats object is kept alive and growing
   * never copies.
   */
  private readonly chunks: Buffer[] = [];
  private stagedCount = 0;
  /** Staged records that got their sha256 this collection. */
  private readonly added: number[] = [];
  /** Staged records not to save (see `forget`). */
  private readonly forgotten = new Set<number>();
  /** dev:ino of hard-linked files staged this collection. */
  private readonly linked = new Set<string>();
  /**
   * The start of the racy window (see stage), in ns since the epoch, as its high and
   * low 32 bits: a stamp's times are compared with it without a BigInt per path.
   */
  private readonly racyHigh: number;
  private readonly racyLow: number;
  private readonly dataView: DataView;
  /** Offset of the first record in `data`. */
  private readonly first: number;

  private constructor(
    private readonly file: string,
    private readonly root: string,
    private readonly data: Buffer,
    private readonly index: Index,
    private readonly count: number,
    startedAt: Date,
  ) {
    const racyAfterNs = BigInt(startedAt.getTime()) * 1_000_000n - RACY_WINDOW_NS;
    // A start before the epoch's first second: every time is at or after it, as with 0.
    const racy = racyAfterNs < 0n ? 0n : racyAfterNs;
    this.racyHigh = Number(racy >> 32n);
    this.racyLow = Number(racy & 0xffff_ffffn);
    this.dataView = new DataView(data.buffer, data.byteOffset, data.byteLength);
    this.kept = new Uint8Array(count);
    this.first = data.length - count * RECORD_BYTES;
  }

  /** An empty cache for `root` (nothing is a hit). */
  static empty(root: string, startedAt: Date = new Date(), file: string = STAT_CACHE_FILE): StatCache {
    return new StatCache(file, root, Buffer.alloc(0), { slots: new Int32Array(0), mask: 0 }, 0, startedAt);
  }

  /**
   * Read `statcache.v2` from `stateDir` for the given root. Never throws: a missing
   * or unusable file gives an empty cache. `startedAt` is when the scan started.
   */
  static load(stateDir: string, root: string, startedAt: Date = new Date(), file: string = STAT_CACHE_FILE): StatCache {
    let data: Buffer;
    const problem = privateDirProblem(stateDir);
    if (problem !== null) {
      // A cache another user could write could hide a change: it is not read.
      if (problem.startsWith('cannot stat')) return StatCache.empty(root, startedAt, file);
      process.emitWarning(`drift: not using the cache in state folder ${stateDir}: ${problem}`);
      return StatCache.empty(root, startedAt, file);
    }
    try {
      data = readFileSync(join(stateDir, file));
    } catch {
      return StatCache.empty(root, startedAt, file);
    }
    const parsed = parse(data, root);
    return parsed ? new StatCache(file, root, data, parsed.index, parsed.count, startedAt) : StatCache.empty(root, startedAt, file);
  }

  /** Records in the loaded file. */
  get loadedCount(): number {
    return this.count;
  }

  /**
   * The record of the path whose stat fields (see lookupStamp) are at `at` in
   * `stamp`, or -1; read it with `shaOf`, `flagsOf` and `bitsOf`. A hit is kept for
   * the next save.
   */
  find(stamp: DataView, at: number): number {
    const d = this.dataView;
    const { slots, mask } = this.index;
    if (slots.length === 0) return -1;
    const dev = stamp.getUint32(at, true);
    const ino = stamp.getUint32(at + 8, true);
    let off = -1;
    for (let s = slotOf(dev, ino, mask); ; s = (s + 1) & mask) {
      const n = slots[s] as number;
      if (n === 0) return -1;
      const o = this.first + (n - 1) * RECORD_BYTES;
      if (d.getUint32(o + 8, true) === ino && d.getUint32(o, true) === dev && d.getUint32(o + 4, true) === stamp.getUint32(at + 4, true) && d.getUint32(o + 12, true) === stamp.getUint32(at + 12, true)) {
        off = o;
        break;
      }
    }
    for (let k = 16; k < STAT_BYTES; k += 4) {
      if (d.getUint32(off + k, true) !== stamp.getUint32(at + k, true)) return -1;
    }
    const n = (off - this.first) / RECORD_BYTES;
    if (this.kept[n] === 0) {
      this.kept[n] = 1;
      this.keptCount += 1;
    }
    return off;
  }

  /** The sha256 (hex) of a hit of `find`. */
  shaOf(hit: number): string {
    return this.data.toString('hex', hit + STAT_BYTES, hit + STAT_BYTES + SHA_BYTES);
  }

  /** The inode flag mask of a hit of `find`. */
  flagsOf(hit: number): number {
    return this.dataView.getUint32(hit + STAT_BYTES + SHA_BYTES, true);
  }

  /** The `bits` of a hit of `find` (ATTR_*). */
  bitsOf(hit: number): number {
    return this.dataView.getUint32(hit + STAT_BYTES + SHA_BYTES + 4, true);
  }

  /**
   * The cached sha256 (hex) of the file whose lstat (bigint) is `st`, if its
   * device, inode, size, mtime and ctime are unchanged; undefined otherwise.
   * A hit is kept for the next save.
   */
  lookup(st: BigIntStats): string | undefined {
    return this.lookupStamp(stampOf(st), 0);
  }

  /**
   * `lookup` for stat fields already in the record layout: the 40 bytes
   * `dev ino size mtimeNs ctimeNs` (u64 LE) at `at` in `stamp`.
   */
  lookupStamp(stamp: DataView, at: number): string | undefined {
    const hit = this.find(stamp, at);
    return hit < 0 ? undefined : this.shaOf(hit);
  }

  /**
   * Keep the stat fields of a file that is about to be read, taken before reading
   * it; returns a handle for `record`, or -1 when the file changed within the racy
   * window before the scan (it is then not cached: a write in the same clock tick
   * as our stat could go unseen).
   */
  stage(st: BigIntStats): number {
    return this.stageStamp(stampOf(st), 0, Number(st.nlink));
  }

  /** `stage` for stat fields in the record layout (see lookupStamp) and the file's link count. */
  stageStamp(stamp: DataView, at: number, nlink: number): number {
    if (this.racy(stamp, at + 24) || this.racy(stamp, at + 32)) return -1;
    if (nlink > 1) {
      // Hard links: one record per file is enough (the cache is keyed by dev+ino).
      const id = `${stamp.getBigUint64(at, true)}:${stamp.getBigUint64(at + 8, true)}`;
      if (this.linked.has(id)) return -1;
      this.linked.add(id);
    }
    const slot = this.stagedCount % CHUNK_RECORDS;
    // Zeroed once per chunk: each slot is staged once, so its sha and attributes start at zero.
    if (slot === 0) this.chunks.push(Buffer.alloc(CHUNK_RECORDS * RECORD_BYTES));
    const b = this.chunks[this.chunks.length - 1] as Buffer;
    b.set(new Uint8Array(stamp.buffer, stamp.byteOffset + at, STAT_BYTES), slot * RECORD_BYTES);
    return this.stagedCount++;
  }

  /** Whether the u64 (little-endian) at `at` of `stamp`, a time in ns, is in the racy window. */
  private racy(stamp: DataView, at: number): boolean {
    const high = stamp.getUint32(at + 4, true);
    return high > this.racyHigh || (high === this.racyHigh && stamp.getUint32(at, true) >= this.racyLow);
  }

  /** Set the inode flag mask and `bits` (ATTR_*) of the path staged as `stage` (before or after `record`). */
  setAttrs(stage: number, flags: number, bits: number): void {
    if (stage < 0) return;
    const chunk = this.chunks[Math.floor(stage / CHUNK_RECORDS)] as Buffer;
    const at = (stage % CHUNK_RECORDS) * RECORD_BYTES + STAT_BYTES + SHA_BYTES;
    chunk.writeUInt32LE(flags >>> 0, at);
    chunk.writeUInt32LE(bits >>> 0, at + 4);
  }

  /**
   * Remember that the path staged as `stage` was read: a regular file hashed to
   * `sha256` (hex), anything else with `null`.
   */
  record(stage: number, sha256: string | null): void {
    if (stage < 0) return;
    if (sha256 !== null) {
      const chunk = this.chunks[Math.floor(stage / CHUNK_RECORDS)] as Buffer;
      chunk.write(sha256, (stage % CHUNK_RECORDS) * RECORD_BYTES + STAT_BYTES, 'hex');
    }
    this.added.push(stage);
  }

  /** Do not save the record of `stage` after all (an attribute of the path could not be read). */
  forget(stage: number): void {
    if (stage >= 0) this.forgotten.add(stage);
  }

  /** True when saving would change the file: a record was added or one was not hit again. */
  get dirty(): boolean {
    return this.added.length > 0 || this.keptCount !== this.count;
  }

  /**
   * Write the records hit or added during this collection (and only those, so
   * files gone from disk leave the cache) to `stateDir`, atomically. Skips the
   * write when nothing changed. Throws the fs error when the folder is not writable.
   */
  save(stateDir: string): void {
    if (!this.dirty) return;
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    const problem = privateDirProblem(stateDir);
    if (problem !== null) throw new DriftError('DRIFT_ERR_IO', `refusing state folder ${stateDir}: ${problem}`);
    const out = AtomicFile.create(join(stateDir, this.file), 0o600);
    try {
      // Streamed through one small buffer: no second copy of the cache in memory.
      const buffer = Buffer.allocUnsafe(WRITE_BUFFER_BYTES);
      let o = 0;
      const flush = (): void => {
        out.write(buffer.subarray(0, o));
        o = 0;
      };
      const room = (bytes: number): void => {
        if (o + bytes > buffer.length) flush();
      };
      const rootLength = Buffer.byteLength(this.root, 'utf8');
      room(MAGIC.length + 8 + rootLength);
      o += MAGIC.copy(buffer, o);
      o = buffer.writeUInt32LE(rootLength, o);
      o += buffer.write(this.root, o, 'utf8');
      const added = this.forgotten.size === 0 ? this.added : this.added.filter((stage) => !this.forgotten.has(stage));
      o = buffer.writeUInt32LE(this.keptCount + added.length, o);
      for (let n = 0; n < this.count; n++) {
        if (this.kept[n] === 0) continue;
        const off = this.first + n * RECORD_BYTES;
        room(RECORD_BYTES);
        o += this.data.copy(buffer, o, off, off + RECORD_BYTES);
      }
      for (const stage of added) {
        room(RECORD_BYTES);
        const from = (stage % CHUNK_RECORDS) * RECORD_BYTES;
        o += (this.chunks[Math.floor(stage / CHUNK_RECORDS)] as Buffer).copy(buffer, o, from, from + RECORD_BYTES);
      }
      flush();
    } catch (err) {
      out.abort();
      throw err;
    }
    out.commit();
    // The previous layout's file (`….v1`) is of no use once this one is written.
    rmSync(join(stateDir, this.file.replace(/\.v2$/, '.v1')), { force: true });
  }
}

/** Index a cache file by dev and inode; null when unusable. */
function parse(data: Buffer, root: string): { index: Index; count: number } | null {
  if (data.length < MAGIC.length + 8 || !data.subarray(0, MAGIC.length).equals(MAGIC)) return null;
  let o = MAGIC.length;
  const rootLength = data.readUInt32LE(o);
  o += 4;
  if (o + rootLength + 4 > data.length || data.toString('utf8', o, o + rootLength) !== root) return null;
  o += rootLength;
  const count = data.readUInt32LE(o);
  o += 4;
  if (data.length !== o + count * RECORD_BYTES) return null;
  let size = 1;
  while (size < count * 2) size *= 2;
  const slots = new Int32Array(count === 0 ? 0 : size);
  const mask = size - 1;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const first = o;
  for (let i = 0; i < count; i++, o += RECORD_BYTES) {
    const dev = view.getUint32(o, true);
    const ino = view.getUint32(o + 8, true);
    for (let s = slotOf(dev, ino, mask); ; s = (s + 1) & mask) {
      const n = slots[s] as number;
      // The same device and inode twice (a file not written by drift): the later record counts.
      const at = first + (n - 1) * RECORD_BYTES;
      if (n === 0 || data.compare(data, o, o + 16, at, at + 16) === 0) {
        slots[s] = i + 1;
        break;
      }
    }
  }
  const index: Index = { slots, mask };
  return { index, count };
}
