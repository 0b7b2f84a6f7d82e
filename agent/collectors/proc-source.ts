import { closeSync, fstatSync } from 'node:fs';
import { open, readdir, readlink, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { mapLimit } from '../limit.js';
import type { Unread } from '../protocol/manifest.js';
import { DriftError, errnoOf } from '../protocol/errors.js';
import { ByteBudget, CHUNK_BYTES, HashError, REASONS, hashOpened, openChecked, readFileChecked, type OpenedFile } from '../hash.js';
import { EXE_CACHE_FILE, StatCache } from '../statcache.js';
import { parseSocketLink, vanished, type FileId } from './proc.js';

/**
 * Where the processes and ports collectors read a host's live state: its /proc and
 * the few files of its root they need. One collector code reads through either
 * source: LocalProcSource (this host's file system: `drift collect`, the agent) or
 * the agentless source of agent/remote/agentless.ts (a remote host through an SSH
 * session). Paths below the /proc are relative (`123/stat`, `net/tcp`); root paths
 * are absolute as seen from the collected root (`/etc/passwd`, `/usr/sbin/sshd`).
 *
 * Every method throws, or answers per item, an Error-like value with the errno-like
 * `code` the collectors record (`ENOENT`, `EACCES`, or a reason of REASONS).
 */
export interface ProcSource {
  /** The /proc folder as messages name it. */
  readonly proc: string;
  /** The collected root; an exe link below it is shown as seen from it. */
  readonly root: string;
  /** The numeric entries of the /proc (one per process), ascending; throws when it cannot be listed. */
  listPids(): Promise<number[]>;
  /** The text of a file below the /proc, at most `cap` bytes (more is refused, never kept). */
  readText(rel: string, cap: number): Promise<string>;
  /** The target of a link below the /proc (`123/exe`). */
  readlink(rel: string): Promise<string>;
  /** The image each of `pids` runs (`<proc>/PID/exe` followed), as `dev:inode`, or the error code. */
  exeImages(pids: readonly number[]): Promise<Map<number, FileId | { code: string }>>;
  /** `dev:inode` of what each root path leads to (links followed), or the error code. */
  rootIds(paths: readonly string[]): Promise<Map<string, FileId | { code: string }>>;
  /** A small file of the root (`/etc/passwd`), read like any untrusted file, at most `cap` bytes. */
  readRootFile(path: string, cap: number): Promise<Buffer>;
  /**
   * The sha256 of each running image, read through `<proc>/PID/exe` of the first of
   * its processes that still runs it, within the byte budgets.
   */
  hashImages(images: ReadonlyMap<FileId, readonly number[]>, opts: ImageHashOptions): Promise<Map<FileId, ImageHash>>;
  /** inode → the PIDs holding it, for the sockets in `wanted`, and the PIDs whose fd folder could not be read. */
  socketHolders(wanted: ReadonlySet<string>): Promise<SocketHolders>;
}

/** What the image hashing of one collection is given. */
export interface ImageHashOptions {
  budget: ByteBudget;
  /** Folder of the image cache; null disables it. */
  stateDir: string | null;
  forceRehash: boolean;
  startedAt: Date;
  /** Called with the /proc/PID/exe path of each image actually read (not for cache hits). */
  onHash: ((path: string) => void) | undefined;
}

/** The outcome for one image: its hash, gone (every process of it exited), or unread. */
export type ImageHash = { kind: 'hash'; sha256: string } | { kind: 'gone' } | { kind: 'unread'; unread: Unread };

export interface SocketHolders {
  holders: Map<string, number[]>;
  unreadable: { pid: number; reason: string }[];
}

/** The /proc texts the collectors read (stat, status, cgroup) are a few KiB; this bounds a hostile one. */
export const PROC_TEXT_CAP_BYTES = 1024 * 1024;
/** A socket table of a very busy host (150 bytes a socket): past this it is refused. */
export const NET_TABLE_CAP_BYTES = 256 * 1024 * 1024;

/** The error of a /proc that cannot be listed: the collectors of live state cannot run. */
export function cannotList(source: ProcSource, err: unknown): DriftError {
  return new DriftError('DRIFT_ERR_IO', `cannot list processes in ${source.proc}: ${errnoOf(err)}; check that --proc names a mounted /proc`, { cause: err });
}

/** Whether an answer of exeImages/rootIds is an error. */
export function isFailure(v: FileId | { code: string } | undefined): v is { code: string } {
  return typeof v === 'object';
}

function codeError(code: string): Error {
  return Object.assign(new Error(code), { code });
}

/** Files read at once from a local /proc. */
const LOCAL_PARALLEL = 16;

/** This host's /proc and root, read with the local file system. */
export class LocalProcSource implements ProcSource {
  constructor(readonly root: string, readonly proc: string) {}

  async listPids(): Promise<number[]> {
    const names = await readdir(this.proc);
    return names.filter((n) => /^\d+$/.test(n)).map(Number).sort((a, b) => a - b);
  }

  async readText(rel: string, cap: number): Promise<string> {
    const file = await open(join(this.proc, rel), 'r');
    try {
      // /proc files show size 0: read to EOF, one byte past the cap at most.
      const chunks: Buffer[] = [];
      let total = 0;
      for (;;) {
        const buf = Buffer.allocUnsafe(Math.min(cap + 1 - total, 64 * 1024));
        const { bytesRead } = await file.read(buf, 0, buf.length, null);
        if (bytesRead === 0) break;
        chunks.push(buf.subarray(0, bytesRead));
        total += bytesRead;
        if (total > cap) throw codeError(`over ${cap} bytes; not read`);
      }
      return chunks.length === 1 ? (chunks[0] as Buffer).toString('utf8') : Buffer.concat(chunks).toString('utf8');
    } finally {
      await file.close();
    }
  }

  readlink(rel: string): Promise<string> {
    return readlink(join(this.proc, rel));
  }

  async exeImages(pids: readonly number[]): Promise<Map<number, FileId | { code: string }>> {
    const out = new Map<number, FileId | { code: string }>();
    await mapLimit(pids, LOCAL_PARALLEL, async (pid) => {
      try {
        const st = await stat(join(this.proc, String(pid), 'exe'), { bigint: true });
        out.set(pid, `${st.dev}:${st.ino}`);
      } catch (err) {
        out.set(pid, { code: errnoOf(err) });
      }
    });
    return out;
  }

  async rootIds(paths: readonly string[]): Promise<Map<string, FileId | { code: string }>> {
    const out = new Map<string, FileId | { code: string }>();
    await mapLimit(paths, LOCAL_PARALLEL, async (path) => {
      try {
        const st = await stat(join(this.root, path), { bigint: true });
        out.set(path, `${st.dev}:${st.ino}`);
      } catch (err) {
        out.set(path, { code: errnoOf(err) });
      }
    });
    return out;
  }

  readRootFile(path: string, cap: number): Promise<Buffer> {
    // An image's passwd may be a symlink, a FIFO or a device: read like any untrusted file.
    return Promise.resolve().then(() => readFileChecked(join(this.root, path), cap, { checkPath: false }));
  }

  async hashImages(images: ReadonlyMap<FileId, readonly number[]>, opts: ImageHashOptions): Promise<Map<FileId, ImageHash>> {
    // Images are cached like files, by their own device, inode, size, mtime and ctime.
    const cacheRoot = `proc:${this.proc}`;
    const cache = opts.stateDir === null ? null : opts.forceRehash ? StatCache.empty(cacheRoot, opts.startedAt, EXE_CACHE_FILE) : StatCache.load(opts.stateDir, cacheRoot, opts.startedAt, EXE_CACHE_FILE);
    const tools: HashTools = { cache, budget: opts.budget, buffer: Buffer.allocUnsafe(CHUNK_BYTES), onHash: opts.onHash };
    const out = new Map<FileId, ImageHash>();
    for (const [image, pids] of images) out.set(image, this.hashImage(image, pids, tools));
    if (cache && opts.stateDir !== null) {
      try {
        cache.save(opts.stateDir);
      } catch (err) {
        process.emitWarning(`drift: could not write the process image cache in ${opts.stateDir} (${err instanceof DriftError ? err.message : errnoOf(err)}); running images will be hashed again next time`);
      }
    }
    return out;
  }

  /**
   * Hashes one running image through the first of its processes that is still alive
   * and still runs it, opened through /proc/PID/exe and checked like any file (a
   * regular file, that image's device and inode, within the byte budgets).
   */
  private hashImage(image: FileId, pids: readonly number[], tools: HashTools): ImageHash {
    for (const pid of pids) {
      const exe = `/proc/${pid}/exe`;
      let file: OpenedFile;
      try {
        file = openChecked(join(this.proc, String(pid), 'exe'), { follow: true, maxBytes: tools.budget.maxFileBytes });
      } catch (err) {
        // Exited: try the next process of this image.
        if (vanished(err)) continue;
        return { kind: 'unread', unread: { path: exe, reason: err instanceof HashError ? err.code : errnoOf(err) } };
      }
      try {
        const st = fstatSync(file.fd, { bigint: true });
        // The PID now runs another program: try the next process of this image.
        if (`${st.dev}:${st.ino}` !== image) continue;
        const cached = tools.cache?.lookup(st);
        if (cached !== undefined) return { kind: 'hash', sha256: cached };
        if (!tools.budget.take(file.size)) return { kind: 'unread', unread: { path: exe, reason: REASONS.overScan(tools.budget.maxScanBytes) } };
        const stage = tools.cache ? tools.cache.stage(st) : -1;
        const sha256 = hashOpened(file, tools.buffer);
        tools.onHash?.(exe);
        tools.cache?.record(stage, sha256);
        return { kind: 'hash', sha256 };
      } catch (err) {
        if (vanished(err)) continue;
        return { kind: 'unread', unread: { path: exe, reason: err instanceof HashError ? err.code : errnoOf(err) } };
      } finally {
        closeSync(file.fd);
      }
    }
    return { kind: 'gone' };
  }

  /** Scans every <proc>/PID/fd for `socket:[INODE]` links among `wanted`. */
  async socketHolders(wanted: ReadonlySet<string>): Promise<SocketHolders> {
    const pids = await this.listPids();
    const holders = new Map<string, number[]>();
    const unreadable: { pid: number; reason: string }[] = [];
    await mapLimit(pids, LOCAL_PARALLEL, async (pid) => {
      const fdDir = join(this.proc, String(pid), 'fd');
      let fds: string[];
      try {
        fds = await readdir(fdDir);
      } catch (err) {
        if (!vanished(err)) unreadable.push({ pid, reason: errnoOf(err) });
        return;
      }
      let denied: string | null = null;
      for (const fd of fds) {
        let target: string;
        try {
          target = await readlink(join(fdDir, fd));
        } catch (err) {
          // A vanished fd was closed since the folder was listed; any other error hides a holder.
          if (!vanished(err)) denied ??= errnoOf(err);
          continue;
        }
        const inode = parseSocketLink(target);
        if (inode !== null && wanted.has(inode)) addHolder(holders, inode, pid);
      }
      if (denied !== null) unreadable.push({ pid, reason: denied });
    });
    unreadable.sort((a, b) => a.pid - b.pid);
    return { holders, unreadable };
  }
}

/** Records `pid` as a holder of socket `inode` (once). */
export function addHolder(holders: Map<string, number[]>, inode: string, pid: number): void {
  const list = holders.get(inode);
  if (list === undefined) holders.set(inode, [pid]);
  else if (!list.includes(pid)) list.push(pid);
}

interface HashTools {
  cache: StatCache | null;
  budget: ByteBudget;
  buffer: Buffer;
  onHash: ((path: string) => void) | undefined;
}
