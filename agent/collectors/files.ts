import { closeSync, constants, lstatSync, openSync, readSync, readdirSync, readlinkSync, type BigIntStats } from 'node:fs';
import { isUtf8 } from 'node:buffer';
import { errnoOf } from '../protocol/errors.js';
import type { FileEntry, FileType, Unread } from '../protocol/manifest.js';
import type { IgnoreRule, WatchRule } from '../protocol/rules.js';
import type { CollectContext, CollectResult, Collector } from './contract.js';
import { anyMatch, compilePathRules, lastMatch, withBaseAt, type CompiledGlob, type PathRules } from '../glob.js';
import { HashError, hashFiles, sha256Hex, type HashJob, type HashOptions } from '../hash.js';
import { StatCache } from '../statcache.js';

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

/** Largest file whose text is kept as `content`. */
export const CONTENT_CAP_BYTES = 64 * 1024;

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
}

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

const CONTENT_CAP_BIG = BigInt(CONTENT_CAP_BYTES);
/** `0000`…`7777`, indexed by permission bits: formatting a mode is a hot-path lookup. */
const MODE_STRINGS = Array.from({ length: 0o10000 }, (_, m) => m.toString(8).padStart(4, '0'));

const SHADOW_FILES = new Set(['/etc/shadow', '/etc/shadow-', '/etc/gshadow', '/etc/gshadow-']);
const SSH_HOST_KEY = /\/ssh_host_[^/]*_key$/;
// sudo requires its files unreadable by others (0440), yet they hold rules, not
// credentials, and their content is what shows who gained root.
const SUDOERS = /^\/etc\/sudoers(\.d\/[^/]+)?$/;
const PRIVATE_KEY_HEADER = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----/;

/**
 * Why a file's content must not be kept, or null when it may be:
 * - `shadow`: /etc/shadow, /etc/gshadow and their `-` backups (their `names` are not secret);
 * - `key`: an SSH host private key, or any file with a PEM/OpenSSH/PGP PRIVATE KEY header;
 * - `private`: a file others may not read (mode & 0o004 == 0), except sudoers files.
 * `key` is the path as seen from the root, `mode` the permission bits, `bytes` the content.
 */
export function secretKind(key: string, mode: number, bytes: Uint8Array): 'shadow' | 'key' | 'private' | null {
  if (SHADOW_FILES.has(key)) return 'shadow';
  if (SSH_HOST_KEY.test(key)) return 'key';
  if (PRIVATE_KEY_HEADER.test(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1'))) return 'key';
  if ((mode & 0o004) === 0 && !SUDOERS.test(key)) return 'private';
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

/** Read a small file whole; null when it turns out larger than `cap` (it grew since its stat). */
function readSmall(path: string, cap: number): Buffer | null {
  const fd = openSync(path, OPEN_FLAGS);
  try {
    const buffer = Buffer.allocUnsafe(cap + 1);
    let length = 0;
    for (;;) {
      const n = readSync(fd, buffer, length, buffer.length - length, null);
      if (n === 0) break;
      length += n;
      if (length > cap) return null;
    }
    return buffer.subarray(0, length);
  } finally {
    closeSync(fd);
  }
}

/** A file to hash after the walk (`path` is on disk, `key` as seen from the root). */
interface Job extends HashJob {
  key: string;
  entry: FileEntry;
  /** Its stat fields staged in the stat cache, or -1. */
  stage: number;
}

/** One collection: the walk state, kept together so the recursive walk stays allocation-light. */
class Walk {
  readonly entries: Record<string, FileEntry> = {};
  readonly unread: Unread[] = [];
  readonly jobs: Job[] = [];

  constructor(
    private readonly prefix: string,
    private readonly rules: PathRules,
    private readonly cache: StatCache | null,
    private readonly onHash: ((path: string) => void) | undefined,
  ) {}

  /** Walk one walk root: checks that it is reachable without following a link, then visits it. */
  walkRoot(root: string): void {
    let watch: CompiledGlob<WatchRule>[] = withBaseAt([], this.rules.watchAt, '/');
    let ignore: CompiledGlob<IgnoreRule>[] = withBaseAt([], this.rules.ignoreAt, '/');
    if (root !== '/') {
      const parts = root.split('/');
      for (let i = 2; i <= parts.length; i++) {
        const path = parts.slice(0, i).join('/');
        watch = withBaseAt(watch, this.rules.watchAt, path);
        ignore = withBaseAt(ignore, this.rules.ignoreAt, path);
        if (anyMatch(ignore, path)) return;
        if (path === root) break;
        let st: BigIntStats | undefined;
        try {
          st = lstatSync(this.prefix + path, { bigint: true, throwIfNoEntry: false });
        } catch (err) {
          this.unread.push({ path, reason: errnoOf(err) });
          return;
        }
        // Absent, or reached only through a symlink or a file: there is nothing under it to report.
        if (!st || !st.isDirectory()) return;
      }
    }
    this.visit(root, watch, ignore, true);
  }

  private visit(key: string, watch: CompiledGlob<WatchRule>[], ignore: CompiledGlob<IgnoreRule>[], isRoot: boolean): void {
    if (ignore.length > 0 && anyMatch(ignore, key)) return;
    const disk = this.prefix + key;
    let st: BigIntStats | undefined;
    try {
      st = lstatSync(disk, { bigint: true, throwIfNoEntry: false });
    } catch (err) {
      this.unread.push({ path: key, reason: errnoOf(err) });
      return;
    }
    if (!st) {
      // A walk base that does not exist is nothing to report; a listed path that is gone vanished mid-walk.
      if (!isRoot) this.unread.push({ path: key, reason: 'ENOENT' });
      return;
    }
    const mode = Number(st.mode);
    const type = fileType(mode);
    const rule = watch.length > 0 ? lastMatch(watch, key) : undefined;
    if (rule) this.record(key, disk, st, mode, type, rule.rule);
    if (type !== 'dir' || (watch.length === 0 && !this.rules.aboveWatchBase.has(key))) return;
    let names: string[];
    try {
      names = readdirSync(disk);
    } catch (err) {
      this.unread.push({ path: key, reason: errnoOf(err) });
      return;
    }
    const base = key === '/' ? '/' : `${key}/`;
    for (const name of names) {
      const child = base + name;
      this.visit(child, withBaseAt(watch, this.rules.watchAt, child), withBaseAt(ignore, this.rules.ignoreAt, child), false);
    }
  }

  private record(key: string, disk: string, st: BigIntStats, mode: number, type: FileType, rule: WatchRule): void {
    const entry: FileEntry = {
      type,
      mode: MODE_STRINGS[mode & 0o7777] as string,
      uid: Number(st.uid),
      gid: Number(st.gid),
    };
    this.entries[key] = entry;
    if (type === 'symlink') {
      entry.size = Number(st.size);
      try {
        entry.target = readlinkSync(disk);
      } catch (err) {
        this.unread.push({ path: key, reason: errnoOf(err) });
      }
      return;
    }
    if (type !== 'file') return;
    entry.size = Number(st.size);
    const cached = this.cache?.lookup(st);
    const wantsContent = rule.content !== undefined && rule.content !== false && st.size <= CONTENT_CAP_BIG;
    if (!wantsContent) {
      if (cached !== undefined) entry.sha256 = cached;
      else this.queue(key, disk, st, entry);
      return;
    }
    let bytes: Buffer | null;
    try {
      bytes = readSmall(disk, CONTENT_CAP_BYTES);
    } catch (err) {
      this.failed(key, errnoOf(err));
      return;
    }
    if (bytes === null) {
      // Grew past the cap since its stat: no content, hashed like any large file.
      if (cached !== undefined) entry.sha256 = cached;
      else this.queue(key, disk, st, entry);
      return;
    }
    // On a cache hit the file is unchanged, so its bytes are only needed for the content.
    if (cached !== undefined) {
      entry.sha256 = cached;
    } else {
      entry.sha256 = sha256Hex(bytes);
      this.onHash?.(key);
      if (this.cache) this.cache.record(this.cache.stage(st), entry.sha256);
    }
    const content = contentFor(rule.content, key, mode, bytes);
    if (content !== undefined) entry.content = content;
  }

  private queue(key: string, path: string, st: BigIntStats, entry: FileEntry): void {
    this.jobs.push({ key, path, size: Number(st.size), entry, stage: this.cache ? this.cache.stage(st) : -1 });
  }

  /** A file that could not be read: gone files leave the entries, others keep their metadata. */
  failed(key: string, reason: string): void {
    this.unread.push({ path: key, reason });
    if (reason === 'ENOENT') delete this.entries[key];
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
      const prefix = ctx.root === '/' ? '' : ctx.root.replace(/\/+$/, '');
      let cache: StatCache | null = null;
      if (ctx.stateDir !== null) {
        cache = ctx.forceRehash ? StatCache.empty(ctx.root, startedAt) : StatCache.load(ctx.stateDir, ctx.root, startedAt);
      }
      const walk = new Walk(prefix, rules, cache, options.onHash);
      for (const root of rules.walkRoots) walk.walkRoot(root);

      const hashOptions: HashOptions = {};
      if (options.workers !== undefined) hashOptions.workers = options.workers;
      if (options.inlineBelowBytes !== undefined) hashOptions.inlineBelowBytes = options.inlineBelowBytes;
      const jobs = walk.jobs;
      const hashes = await hashFiles(jobs, hashOptions);
      hashes.forEach((hash, i) => {
        const job = jobs[i] as Job;
        if (hash instanceof HashError) {
          walk.failed(job.key, hash.code);
          return;
        }
        job.entry.sha256 = hash;
        options.onHash?.(job.key);
        cache?.record(job.stage, hash);
      });

      if (cache && ctx.stateDir !== null) {
        try {
          cache.save(ctx.stateDir);
        } catch (err) {
          // The cache only saves work; a state folder that cannot be written must not fail the collection.
          process.emitWarning(`drift: could not write the stat cache in ${ctx.stateDir} (${errnoOf(err)}); every file will be hashed again next time`);
        }
      }
      const unread = walk.unread.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : a.reason < b.reason ? -1 : a.reason > b.reason ? 1 : 0));
      return { entries: walk.entries, unread };
    },
  };
}

/** The files collector of the agent (default pool size, stat cache in ctx.stateDir). */
export const filesCollector: Collector<'files'> = createFilesCollector();
