import { lstatSync, readdirSync, realpathSync, type BigIntStats, type Dirent } from 'node:fs';
import { compareUnread } from '../protocol/unread.js';
import { availableParallelism } from 'node:os';
import { isUtf8 } from 'node:buffer';
import { DriftError, errnoOf } from '../protocol/errors.js';
import type { FileEntry, FileType, Unread } from '../protocol/manifest.js';
import type { IgnoreRule, WatchRule } from '../protocol/rules.js';
import type { CollectContext, CollectResult, Collector } from './contract.js';
import { compilePathRules, withBaseAt, type CompiledGlob, type PathRules } from '../glob.js';
import { ByteBudget, HashError, HashStream, REASONS, readFileChecked, sha256Hex, type HashJobList, type HashOptions } from '../hash.js';
import { ATTR_FLAGS_READ, ATTR_HAS_XATTRS, StatCache, attrType } from '../statcache.js';
import { StatPool, type StatView } from '../walk.js';
import { readXattrs } from './attrs.js';
import { FlagsStream, flagsText } from './flags.js';
import { CONTENT_CAP_BYTES, FlagErrors, assignXattrs, enters, hashBudget, ignored, modeText, newEntry, readFailed, rootScope, ruleAt, unreadName, wantsContent as wantsContentOf } from './file-entry.js';

/**
 * The files collector: every path the watch globs of the rules match, minus the
 * paths an `ignore` rule with a `path` glob matches (an ignored folder is not
 * entered), as FileEntry facts keyed by the path as seen from the root.
 *
 * Only what the watch globs can match is walked (under each glob's static base
 * folder). Paths are lstat'ed and never followed: a symlink is recorded with its
 * target, and a walk base reached only through a symlink is not walked. Regular
 * files get a sha256 (from the stat cache when their stat is unchanged); small
 * text content is kept only where the last matching watch rule asks for it and
 * never for a secret. Every path that cannot be stat'ed, listed, read or hashed is
 * reported in `unread` with its errno; a watch base that does not exist is not.
 */

/** Options of a files collector; the defaults suit the agent. */
export interface FilesCollectorOptions extends HashOptions {
  /** Called once per sha256 actually computed (not for stat-cache hits), with the path as seen from the root. */
  onHash?: (path: string) => void;
  /**
   * When the scan starts (default: the system clock). Files changed within a
   * second before it are not cached (see StatCache.stage); tests that build a tree
   * and scan it at once pass a later time so that their fresh files are cached.
   */
  clock?: () => Date;
  /**
   * Share the walk's lstat calls with a helper thread (default: when the machine
   * has more than one CPU and `workers` is not 1). The result is the same either way.
   */
  walkThread?: boolean;
  /** Paths stat'ed before the walk's helper thread is started (default 2000; tests pass 0). */
  walkThreadAfter?: number;
  /**
   * Called after the walk with how many paths were stat'ed on the calling thread and on the helper.
   * Hash workers may have hashed full batches (128 files or 4 MiB) by then; a last, partial batch is
   * hashed only after this call.
   */
  onWalk?: (counts: { local: number; helper: number }) => void;
  /** Called with each folder's key once it is listed, before what it holds is stat'ed (tests swap folders here). */
  onListed?: (key: string) => void;
}

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;
const S_IFBLK = 0o060000;
/** The type bits of a stat cache record's `bits`. */
const TYPE_BITS = 0xf0;

const SHADOW_FILES = new Set(['/etc/shadow', '/etc/shadow-', '/etc/gshadow', '/etc/gshadow-']);
const SSH_HOST_KEY = /\/ssh_host_[^/]*_key$/;
// sudo requires its files unreadable by others (0440), yet they hold rules, not
// credentials, and their content is what shows who gained root.
const SUDOERS = /^\/etc\/sudoers(\.d\/[^/]+)?$/;
// sshd wants authorized_keys unreadable by others, yet it lists public keys, and its
// content is what shows who may log in (checked against the instance's launch keys).
const AUTHORIZED_KEYS = /^\/(root|home\/[^/]+)\/\.ssh\/authorized_keys2?$/;
const PRIVATE_KEY_HEADER = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----/;

/**
 * Why a file's content must not be kept, or null when it may be:
 * - `shadow`: /etc/shadow, /etc/gshadow and their `-` backups (their `names` are not secret);
 * - `key`: an SSH host private key, or any file with a PEM/OpenSSH/PGP PRIVATE KEY header;
 * - `private`: a file others may not read (mode & 0o004 == 0), except sudoers files and
 *   users' `.ssh/authorized_keys` (public keys).
 * `key` is the path as seen from the root, `mode` the permission bits, `bytes` the content.
 */
export function secretKind(key: string, mode: number, bytes: Uint8Array): 'shadow' | 'key' | 'private' | null {
  if (SHADOW_FILES.has(key)) return 'shadow';
  if (SSH_HOST_KEY.test(key)) return 'key';
  if (PRIVATE_KEY_HEADER.test(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1'))) return 'key';
  if ((mode & 0o004) === 0 && !SUDOERS.test(key) && !AUTHORIZED_KEYS.test(key)) return 'private';
  return null;
}

/** The first `:`-separated field of each line (`root:$y$...` → `root`), line structure kept. */
export function namesOnly(text: string): string {
  return text
    .split('\n')
    .map((line) => {
      const colon = line.indexOf(':');
      return colon < 0 ? line : line.slice(0, colon);
    })
    .join('\n');
}

/**
 * The `content` of a regular file for a watch rule's `content` setting, or
 * undefined: only for valid UTF-8 text without NUL of at most CONTENT_CAP_BYTES;
 * never for secrets, except the user/group names of shadow files in `names` mode.
 */
export function contentFor(setting: WatchRule['content'], key: string, mode: number, bytes: Buffer): string | undefined {
  if (setting === undefined || setting === false) return undefined;
  if (bytes.length > CONTENT_CAP_BYTES || bytes.includes(0) || !isUtf8(bytes)) return undefined;
  const secret = secretKind(key, mode, bytes);
  if (setting === true) return secret === null ? bytes.toString('utf8') : undefined;
  return secret === null || secret === 'shadow' ? namesOnly(bytes.toString('utf8')) : undefined;
}

function fileType(mode: number): FileType {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return 'file';
    case S_IFDIR:
      return 'dir';
    case S_IFLNK:
      return 'symlink';
    default:
      return 'other';
  }
}

/**
 * Device and inode of a walk's lstat as Numbers, as the hash module compares them
 * with the opened file's fstat: the u64 read as two u32 halves, which rounds as
 * Number(bigint) does and allocates no BigInt per path.
 */
const u64At = (view: DataView, at: number): number => view.getUint32(at + 4, true) * 0x1_0000_0000 + view.getUint32(at, true);
const devOf = (st: StatView): number => u64At(st.view, st.stampAt);
const inoOf = (st: StatView): number => u64At(st.view, st.stampAt + 8);

/** A pending path's inode flags are to be read (by lsattr, which gets the path as soon as it is recorded). */
const WANT_FLAGS = 1;
/** A pending path is a regular file to hash. */
const WANT_HASH = 2;
/**
 * A pending path's folders are all root's and writable by no one else: no other
 * user can swap one of them for a symlink, so the opened file's path need not be
 * checked on its descriptor (a readlink of /proc/self/fd per file; see openChecked).
 */
const TRUSTED_PATH = 4;
/** Milliseconds of walking between two turns of the event loop (see Walk.breathe). */
const YIELD_MS = 4;
/** Paths per chunk of the pending list's numbers (160 KiB). */
const PENDING_CHUNK = 8192;

/**
 * The paths read after they are recorded, held compactly (one key reference, four small
 * integers and two numbers a path; no object per path: a cold scan queues every
 * regular file and folder): regular files to hash and paths whose inode flags
 * lsattr reads, in walk order. Per path: the key (the entry is found again by
 * it), what to read (WANT_*), its stat cache record (or -1) and the record's
 * `bits` so far, its device (an index into `devs`, also to report a file system
 * without inode flags once), and the size and inode the opened file must have.
 */
class Pending implements HashJobList {
  readonly keys: string[] = [];
  /** Per path, in chunks of CHUNK paths (growing never copies): want, stage, bits, device index. */
  private readonly ints: Int32Array[] = [];
  /** Per path: size and inode. */
  private readonly nums: Float64Array[] = [];
  private readonly devs: number[] = [];
  private readonly devIndex = new Map<number, number>();

  constructor(private readonly prefix: string) {}

  get length(): number {
    return this.keys.length;
  }

  push(key: string, want: number, stage: number, bits: number, st: StatView): void {
    const n = this.keys.length;
    const at = n % PENDING_CHUNK;
    if (at === 0) {
      this.ints.push(new Int32Array(4 * PENDING_CHUNK));
      this.nums.push(new Float64Array(2 * PENDING_CHUNK));
    }
    const ints = this.ints[this.ints.length - 1] as Int32Array;
    const nums = this.nums[this.nums.length - 1] as Float64Array;
    const dev = devOf(st);
    let d = this.devIndex.get(dev);
    if (d === undefined) this.devIndex.set(dev, (d = this.devs.push(dev) - 1));
    ints[4 * at] = want;
    ints[4 * at + 1] = stage;
    ints[4 * at + 2] = bits;
    ints[4 * at + 3] = d;
    nums[2 * at] = st.size;
    nums[2 * at + 1] = inoOf(st);
    this.keys.push(key);
  }

  private int(i: number, field: number): number {
    return (this.ints[Math.floor(i / PENDING_CHUNK)] as Int32Array)[4 * (i % PENDING_CHUNK) + field] as number;
  }

  private num(i: number, field: number): number {
    return (this.nums[Math.floor(i / PENDING_CHUNK)] as Float64Array)[2 * (i % PENDING_CHUNK) + field] as number;
  }

  wants(i: number, what: number): boolean {
    return (this.int(i, 0) & what) !== 0;
  }

  stage(i: number): number {
    return this.int(i, 1);
  }

  bits(i: number): number {
    return this.int(i, 2);
  }

  path(i: number): string {
    return this.prefix + (this.keys[i] as string);
  }

  size(i: number): number {
    return this.num(i, 0);
  }

  dev(i: number): number {
    return this.devs[this.int(i, 3)] as number;
  }

  ino(i: number): number {
    return this.num(i, 1);
  }
}

/** The device numbers of a device node as `c MAJOR:MINOR` / `b MAJOR:MINOR` (glibc's major/minor split). */
export function deviceText(mode: number, rdev: bigint): string | undefined {
  const kind = (mode & S_IFMT) === S_IFCHR ? 'c' : (mode & S_IFMT) === S_IFBLK ? 'b' : undefined;
  if (kind === undefined) return undefined;
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & 0xfffff000n);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & 0xffffff00n);
  return `${kind} ${major}:${minor}`;
}

/** One collection: the walk state, kept together so the recursive walk stays allocation-light. */
class Walk {
  readonly entries: Record<string, FileEntry> = {};
  readonly unread: Unread[] = [];
  readonly pending: Pending;
  /**
   * Every path visited, in walk order (a folder before what it holds): its key,
   * the watch rule that records it (null: visited only to go through it), and
   * its stat ref in the pool. Entries are made from these in this order, as soon
   * as their stats are in (the helper thread's come in batches), so that the
   * list stays short and the entries keep the walk order.
   */
  private readonly visitKeys: string[] = [];
  private readonly visitRules: (WatchRule | null)[] = [];
  private readonly visitRefs: number[] = [];
  /** Per visit: 1 when its folders are trusted (see TRUSTED_PATH). */
  private readonly visitTrust: number[] = [];
  /** The inode flags of the pending paths that want them (WANT_FLAGS), read while the walk goes on. */
  private readonly flags: FlagsStream;
  /** When the walk next lets the event loop run (see `breathe`). */
  private yieldAt = performance.now() + YIELD_MS;
  /** Pending paths before this one were offered to the hash pool. */
  private offered = 0;
  /** The pending index of each job of the hash pool, in the order added. */
  readonly hashed: number[] = [];
  /** Visits before this one have been recorded. */
  private cursor = 0;
  private readonly view: StatView = { mode: 0, uid: 0, gid: 0, nlink: 0, size: 0, mtime: 0, view: new DataView(new ArrayBuffer(0)), stampAt: 0 };
  private readonly folderView: StatView = { mode: 0, uid: 0, gid: 0, nlink: 0, size: 0, mtime: 0, view: new DataView(new ArrayBuffer(0)), stampAt: 0 };

  constructor(
    private readonly prefix: string,
    private readonly rules: PathRules,
    private readonly cache: StatCache | null,
    private readonly pool: StatPool,
    private readonly onHash: ((path: string) => void) | undefined,
    private readonly budget: ByteBudget,
    private readonly hasher: HashStream,
    /** Whether the folders above the walk's '/' (the root's own path) are trusted. */
    private readonly rootTrusted: boolean,
    private readonly onListed: ((key: string) => void) | undefined,
  ) {
    this.pending = new Pending(prefix);
    this.flags = new FlagsStream((i) => this.pending.path(i), (i, mask) => this.gotFlags(i, mask));
  }

  /** Walk one walk root: checks that it is reachable without following a link, then visits it. */
  async walkRoot(root: string): Promise<void> {
    let trusted = this.rootTrusted;
    // '/' itself, then each folder on the way to the walk root.
    if (root !== '/') trusted &&= trustedFolder(lstatSync(this.prefix + '/', { bigint: true, throwIfNoEntry: false }));
    const scope = rootScope(this.rules, root, (path) => {
      let st: BigIntStats | undefined;
      try {
        st = lstatSync(this.prefix + path, { bigint: true, throwIfNoEntry: false });
      } catch (err) {
        this.unread.push({ path, reason: errnoOf(err) });
        return false;
      }
      // Absent, or reached only through a symlink or a file: there is nothing under it to report.
      if (!st || !st.isDirectory()) return false;
      trusted &&= trustedFolder(st);
      return true;
    });
    if (scope !== null) await this.visit(root, scope.watch, scope.ignore, true, true, trusted);
  }

  /**
   * Visit one path. `folder`: readdir listed it as a folder (a walk root counts
   * as one): it is stat'ed now, to decide whether to enter it; anything else is
   * stat'ed now or on the helper thread, and read after the walk.
   */
  private visit(key: string, watch: CompiledGlob<WatchRule>[], ignore: CompiledGlob<IgnoreRule>[], folder: boolean, isRoot: boolean, trusted: boolean): Promise<void> | undefined {
    if (ignored(ignore, key)) return undefined;
    const disk = this.prefix + key;
    const rule = ruleAt(watch, key);
    if (!folder) {
      this.visitKeys.push(key);
      this.visitRules.push(rule);
      this.visitRefs.push(this.pool.stat(disk));
      this.visitTrust.push(trusted ? 1 : 0);
      return undefined;
    }
    return this.visitFolder(key, disk, watch, ignore, rule, isRoot, trusted);
  }

  /**
   * Let the event loop run now and then (every YIELD_MS of walking): lsattr reads
   * the paths queued for it and its answers are taken while the walk goes on.
   */
  private async breathe(): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.yieldAt = performance.now() + YIELD_MS;
  }

  /** The folder part of `visit`: stat it now, and enter it when a watch glob may match below it. */
  private async visitFolder(key: string, disk: string, watch: CompiledGlob<WatchRule>[], ignore: CompiledGlob<IgnoreRule>[], rule: WatchRule | null, isRoot: boolean, trusted: boolean): Promise<void> {
    if (performance.now() >= this.yieldAt) await this.breathe();
    const ref = this.pool.statNow(disk);
    const error = this.pool.error(ref);
    if (error !== undefined && isRoot) {
      // A walk base that does not exist is nothing to report.
      if (error !== 'ENOENT') this.unread.push({ path: key, reason: error });
      return;
    }
    this.visitKeys.push(key);
    this.visitRules.push(rule);
    this.visitRefs.push(ref);
    this.visitTrust.push(trusted ? 1 : 0);
    if (error !== undefined) return;
    // Enter a folder only on the way to a watch base, or where a watch glob may match below it.
    if ((this.pool.modeOf(ref) & S_IFMT) !== S_IFDIR || !enters(this.rules, watch, key)) return;
    let dirents: Dirent[];
    try {
      dirents = readdirSync(disk, { withFileTypes: true });
    } catch (err) {
      this.unread.push({ path: key, reason: errnoOf(err) });
      return;
    }
    const base = key === '/' ? '/' : `${key}/`;
    const st = this.pool.read(ref, this.folderView);
    const inner = trusted && st.uid === 0 && (st.mode & 0o022) === 0;
    this.onListed?.(key);
    // A string listing turns bytes that are not UTF-8 into U+FFFD: a name no lstat
    // can find, and two such names would be one key. Only a folder with a U+FFFD in
    // a name is listed again as bytes, so valid names cost one indexOf each (a
    // listing as Buffers made the whole incremental scan ~13% slower).
    for (let i = 0; i < dirents.length; i++) {
      if ((dirents[i] as Dirent).name.indexOf('\uFFFD') >= 0) {
        await this.visitByteNames(key, disk, base, watch, ignore, inner);
        this.recordReady();
        return;
      }
    }
    for (const d of dirents) {
      const child = base + d.name;
      const folder = this.visit(child, withBaseAt(watch, this.rules.watchAt, child), withBaseAt(ignore, this.rules.ignoreAt, child), d.isDirectory(), false, inner);
      if (folder !== undefined) await folder;
    }
    this.recordReady();
  }

  /**
   * Visit what folder `key` holds, listed as bytes: a name that is not valid UTF-8
   * is not representable in the manifest's UTF-8 keys, so it is reported unread
   * (EILSEQ) under its escaped name (see escapeName) and never stat'ed or hashed.
   */
  private async visitByteNames(key: string, disk: string, base: string, watch: CompiledGlob<WatchRule>[], ignore: CompiledGlob<IgnoreRule>[], trusted: boolean): Promise<void> {
    let dirents: Dirent<Buffer>[];
    try {
      dirents = readdirSync(disk, { withFileTypes: true, encoding: 'buffer' });
    } catch (err) {
      this.unread.push({ path: key, reason: errnoOf(err) });
      return;
    }
    for (const d of dirents) {
      const name = d.name;
      if (!isUtf8(name)) {
        const bad = unreadName(this.rules, ignore, base, name);
        if (bad !== null) this.unread.push(bad);
        continue;
      }
      const child = base + name.toString('utf8');
      const folder = this.visit(child, withBaseAt(watch, this.rules.watchAt, child), withBaseAt(ignore, this.rules.ignoreAt, child), d.isDirectory(), false, trusted);
      if (folder !== undefined) await folder;
    }
  }

  /** After the walk and `pool.finish()`: make the entries of the paths not recorded yet. */
  recordAll(): void {
    this.recordReady();
    this.pool.release();
  }

  /** Make the entries of the visits whose stats are in, in walk order, up to the first still on the helper. */
  private recordReady(): void {
    const pool = this.pool;
    pool.poll();
    const keys = this.visitKeys;
    const rules = this.visitRules;
    const refs = this.visitRefs;
    const trust = this.visitTrust;
    let i = this.cursor;
    for (; i < keys.length; i++) {
      const ref = refs[i] as number;
      if (!pool.ready(ref)) break;
      const key = keys[i] as string;
      const error = pool.error(ref);
      if (error !== undefined) {
        // Listed by readdir, then failed (ENOENT: vanished mid-walk).
        this.unread.push({ path: key, reason: error });
      } else {
        const rule = rules[i];
        if (rule) this.record(key, ref, pool.read(ref, this.view), rule, trust[i] === 1);
      }
      pool.consumed(ref);
    }
    if (i === keys.length) {
      keys.length = 0;
      rules.length = 0;
      refs.length = 0;
      trust.length = 0;
      pool.forgetRefs();
      i = 0;
    } else if (i > 16384) {
      keys.splice(0, i);
      rules.splice(0, i);
      refs.splice(0, i);
      trust.splice(0, i);
      i = 0;
    }
    this.cursor = i;
    this.offerHashes();
  }

  /**
   * Give the hash pool the files recorded since the last call, in walk order (the
   * scan budget is taken in that order, so which files it leaves out does not
   * depend on threads), and let its workers hash them while the walk goes on.
   */
  private offerHashes(): void {
    const pending = this.pending;
    const budget = this.budget;
    let added = false;
    for (let i = this.offered; i < pending.length; i++) {
      if (!pending.wants(i, WANT_HASH)) continue;
      const size = pending.size(i);
      // A file over the per-file budget goes to the pool too, which says so with its allocated size.
      if (hashBudget(budget, size) !== 'over-scan') {
        this.hashed.push(i);
        this.hasher.add(pending.path(i), size, pending.dev(i), pending.ino(i), !pending.wants(i, TRUSTED_PATH));
        added = true;
      } else this.failed(pending.keys[i] as string, REASONS.overScan(budget.maxScanBytes));
    }
    this.offered = pending.length;
    if (added) this.hasher.pump();
  }

  private record(key: string, ref: number, st: StatView, rule: WatchRule, trusted: boolean): void {
    const mode = st.mode;
    const type = fileType(mode);
    const cache = this.cache;
    // A record of this path's stat: its attributes hold while the stat does (any change moves ctime).
    let hit = cache !== null && type !== 'other' ? cache.find(st.view, st.stampAt) : -1;
    let bits = hit >= 0 ? (cache as StatCache).bitsOf(hit) : 0;
    // A record of another type (an inode number reused with equal times) is no hit.
    if (hit >= 0 && (bits & TYPE_BITS) !== attrType(mode)) hit = -1;
    let cached: string | undefined;
    let wantsContent = false;
    if (type === 'file') {
      cached = hit >= 0 ? (cache as StatCache).shaOf(hit) : undefined;
      wantsContent = wantsContentOf(rule, st.size);
      if (cached !== undefined && !wantsContent && bits === (ATTR_FLAGS_READ | attrType(mode))) {
        // The common case of an incremental scan, made in one literal (one object shape, no transitions).
        const entry: FileEntry = { type, mode: modeText(mode), uid: st.uid, gid: st.gid, size: st.size, sha256: cached, mtime: st.mtime };
        this.entries[key] = entry;
        if (st.nlink !== 1) entry.nlink = st.nlink;
        const flags = (cache as StatCache).flagsOf(hit);
        if (flags !== 0) entry.flags = flagsText(flags);
        return;
      }
    }
    const entry = newEntry(type, mode, st.uid, st.gid, st.mtime, st.nlink, st.size);
    this.entries[key] = entry;
    const disk = this.prefix + key;
    if (type === 'other') {
      this.recordOther(key, disk, entry);
      return;
    }

    // Attributes beyond the stat: from the cache on a hit, read otherwise (the
    // stage is taken before reading, so that a change during the read is seen next time).
    const stage = hit < 0 && cache !== null ? cache.stageStamp(st.view, st.stampAt, type === 'file' ? st.nlink : 1) : -1;
    if (hit < 0) bits = attrType(mode);
    if (hit < 0 || (bits & ATTR_HAS_XATTRS) !== 0) {
      const { facts, problems } = readXattrs(disk);
      assignXattrs(entry, facts);
      if (facts.caps !== undefined || facts.acl !== undefined || facts.defaultAcl !== undefined || facts.xattrs !== undefined) bits |= ATTR_HAS_XATTRS;
      if (problems.length > 0) {
        for (const p of problems) this.unread.push({ path: key, reason: p.reason });
        cache?.forget(stage);
      }
    }
    let want = 0;
    if (type !== 'symlink') {
      if (hit >= 0 && (bits & ATTR_FLAGS_READ) !== 0) {
        const flags = (cache as StatCache).flagsOf(hit);
        if (flags !== 0) entry.flags = flagsText(flags);
      } else want = WANT_FLAGS;
    }
    cache?.setAttrs(stage, 0, bits);

    if (type === 'symlink') {
      const target = this.pool.target(ref);
      if (target !== undefined) entry.target = target;
      else {
        this.unread.push({ path: key, reason: this.pool.linkError(ref) ?? 'EIO' });
        cache?.forget(stage);
      }
      cache?.record(stage, null);
      return;
    }
    if (type !== 'file') {
      if (want !== 0) this.pend(key, want, stage, bits, st);
      cache?.record(stage, null);
      return;
    }
    if (!wantsContent) {
      if (cached !== undefined) entry.sha256 = cached;
      else want |= WANT_HASH | (trusted ? TRUSTED_PATH : 0);
      if (want !== 0) this.pend(key, want, stage, bits, st);
      return;
    }
    if (want !== 0) this.pend(key, want, stage, bits, st);
    if (!this.budget.take(st.size)) {
      this.failed(key, REASONS.overScan(this.budget.maxScanBytes));
      return;
    }
    let bytes: Buffer;
    try {
      bytes = readFileChecked(disk, CONTENT_CAP_BYTES, { expect: { dev: devOf(st), ino: inoOf(st), size: st.size }, checkPath: !trusted });
    } catch (err) {
      this.failed(key, err instanceof HashError ? err.code : errnoOf(err));
      return;
    }
    // On a cache hit the file is unchanged, so its bytes are only needed for the content.
    if (cached !== undefined) {
      entry.sha256 = cached;
    } else {
      entry.sha256 = sha256Hex(bytes);
      this.onHash?.(key);
      cache?.record(stage, entry.sha256);
    }
    const content = contentFor(rule.content, key, mode, bytes);
    if (content !== undefined) entry.content = content;
  }

  /** Queue a path for reading after it is recorded; its inode flags are read by lsattr from now on, while the walk goes on. */
  private pend(key: string, want: number, stage: number, bits: number, st: StatView): void {
    this.pending.push(key, want, stage, bits, st);
    if ((want & WANT_FLAGS) !== 0) this.flags.add(this.pending.length - 1);
  }

  /** A device node, FIFO or socket: its device numbers and extended attributes (never cached: they are few). */
  private recordOther(key: string, disk: string, entry: FileEntry): void {
    let st: BigIntStats | undefined;
    try {
      st = lstatSync(disk, { bigint: true, throwIfNoEntry: false });
    } catch (err) {
      this.unread.push({ path: key, reason: errnoOf(err) });
      return;
    }
    if (!st) {
      this.failed(key, 'ENOENT');
      return;
    }
    const device = deviceText(Number(st.mode), st.rdev);
    if (device !== undefined) entry.device = device;
    const { facts, problems } = readXattrs(disk);
    assignXattrs(entry, facts);
    for (const p of problems) this.unread.push({ path: key, reason: p.reason });
  }

  /**
   * Wait for the inode flags of the paths queued during the walk (lsattr has been
   * reading them since the first; each answer is put on its entry and stat cache
   * record as it comes, see gotFlags) and report the paths it could not read. A file
   * system that has none is reported once, at the first of its paths by name; lsattr
   * missing, once for the scan.
   */
  async readFlags(): Promise<void> {
    const pending = this.pending;
    const keys = pending.keys;
    const result = await this.flags.finish();
    if (result.missing !== null) {
      this.unread.push({ path: '/', reason: `flags: ${result.missing}` });
      return;
    }
    const errors = new FlagErrors(this.unread);
    for (const [i, reason] of result.errors) {
      errors.add(keys[i] as string, pending.dev(i), reason);
    }
    errors.finish();
  }

  /** Stop reading inode flags (the walk failed): lsattr, started with the walk's first paths, must not outlive it. */
  abortFlags(): void {
    this.flags.abort();
  }

  /** lsattr's answer for pending path `i`: on its entry and its stat cache record. */
  private gotFlags(i: number, mask: number): void {
    const pending = this.pending;
    // An entry gone meanwhile (the file vanished before it was hashed) takes no flags.
    const entry = this.entries[pending.keys[i] as string];
    if (mask !== 0 && entry !== undefined) entry.flags = flagsText(mask);
    this.cache?.setAttrs(pending.stage(i), mask, pending.bits(i) | ATTR_FLAGS_READ);
  }

  /**
   * A file that could not be read: gone files leave the entries, and so do paths
   * that led to another file when opened (their lstat may describe that other
   * file); others keep their metadata.
   */
  failed(key: string, reason: string): void {
    readFailed(this.entries, this.unread, key, reason);
  }
}

/**
 * A files collector with tuning options (pool size, a hook counting hashes);
 * `filesCollector` is the one with defaults.
 */
export function createFilesCollector(options: FilesCollectorOptions = {}): Collector<'files'> {
  return {
    section: 'files',
    async collect(ctx: CollectContext): Promise<CollectResult<FileEntry>> {
      const startedAt = options.clock ? options.clock() : new Date();
      const rules = compilePathRules(ctx.rules);
      const prefix = ctx.root === '/' ? '' : realPrefix(ctx.root);
      const budget = ctx.budget ?? new ByteBudget();
      let cache: StatCache | null = null;
      if (ctx.stateDir !== null) {
        cache = ctx.forceRehash ? StatCache.empty(ctx.root, startedAt) : StatCache.load(ctx.stateDir, ctx.root, startedAt);
      }
      // The helper thread pays off where lstat dominates: an incremental scan with a
      // warm cache. A first or forced scan is bound by hashing, and the thread's
      // second V8 heap would only raise its peak memory.
      const warm = cache !== null && cache.loadedCount > 0;
      const thread = options.walkThread ?? (warm && availableParallelism() > 1 && options.workers !== 1);
      const pool = new StatPool({ thread, ...(options.walkThreadAfter !== undefined ? { threadAfter: options.walkThreadAfter } : {}) });
      const hashOptions: HashOptions = {};
      if (options.workers !== undefined) hashOptions.workers = options.workers;
      if (options.inlineBelowBytes !== undefined) hashOptions.inlineBelowBytes = options.inlineBelowBytes;
      hashOptions.maxFileBytes = budget.maxFileBytes;
      // Files are hashed as the walk finds them: its workers start on the first ones while the walk goes on.
      const hasher = new HashStream(hashOptions);
      const walk = new Walk(prefix, rules, cache, pool, options.onHash, budget, hasher, ancestorsTrusted(prefix), options.onListed);
      try {
        for (const root of rules.walkRoots) await walk.walkRoot(root);
        await pool.finish();
        walk.recordAll();
      } catch (err) {
        hasher.abort();
        walk.abortFlags();
        throw err;
      } finally {
        pool.close();
      }
      options.onWalk?.(pool.counts);

      const pending = walk.pending;
      const jobs = walk.hashed;
      // lsattr, running since the walk's first paths, finishes in its own process while this one hashes what the workers have not.
      const [hashes] = await Promise.all([hasher.finish(), walk.readFlags()]);
      for (let k = 0; k < hashes.length; k++) {
        const hash = hashes[k] as string | HashError;
        const i = jobs[k] as number;
        const key = pending.keys[i] as string;
        if (hash instanceof HashError) {
          walk.failed(key, hash.code);
          continue;
        }
        const entry = walk.entries[key];
        if (entry !== undefined) entry.sha256 = hash;
        options.onHash?.(key);
        cache?.record(pending.stage(i), hash);
      }

      if (cache && ctx.stateDir !== null) {
        try {
          cache.save(ctx.stateDir);
        } catch (err) {
          // The cache only saves work; a state folder that cannot be written must not fail the collection.
          process.emitWarning(`drift: could not write the stat cache in ${ctx.stateDir} (${err instanceof DriftError ? err.message : errnoOf(err)}); every file will be hashed again next time`);
        }
      }
      const unread = walk.unread.sort(compareUnread);
      return { entries: walk.entries, unread };
    },
  };
}

/** A folder whose entries no user but root can rename or replace: root's, and writable by neither group nor others (an ACL granting write shows in the group bits). */
function trustedFolder(st: BigIntStats | undefined): boolean {
  return st !== undefined && st.isDirectory() && st.uid === 0n && (st.mode & 0o022n) === 0n;
}

/** Whether every folder above the walk's prefix (the scanned root's real path) is trusted; '' (the host's '/') has none. */
function ancestorsTrusted(prefix: string): boolean {
  if (prefix === '') return true;
  const parts = prefix.split('/');
  for (let i = 1; i < parts.length; i++) {
    const path = parts.slice(0, i).join('/') || '/';
    let st: BigIntStats | undefined;
    try {
      st = lstatSync(path, { bigint: true, throwIfNoEntry: false });
    } catch {
      return false;
    }
    if (!trustedFolder(st)) return false;
  }
  return true;
}

/**
 * The root as a path without symlinks (the operator chose it; every path below it
 * must then be free of symlinks, which the hash module checks on each opened file).
 * A root that cannot be resolved is used as given: the walk reports what it cannot reach.
 */
function realPrefix(root: string): string {
  try {
    const real = realpathSync(root);
    return real === '/' ? '' : real;
  } catch {
    return root.replace(/\/+$/, '');
  }
}

/** The files collector of the agent (default pool size, stat cache in ctx.stateDir). */
export const filesCollector: Collector<'files'> = createFilesCollector();
