import { closeSync, constants, fstatSync, openSync, readSync, readlinkSync, type Stats } from 'node:fs';
import { createHash, hash as sha256Once } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { MessageChannel, Worker, isMainThread, parentPort, receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import { errnoOf } from './protocol/errors.js';
import { startWorker } from './bundle.js';

/**
 * Reading and hashing files of a host where users can write: the one place that
 * opens a host file for its bytes (file hashes, kept content, process images,
 * identity files).
 *
 * Every file is opened with O_NOFOLLOW and O_NONBLOCK (a path swapped for a symlink
 * is refused, a FIFO does not hang), then checked on the open descriptor before a
 * byte is read: it must be a regular file, and when the caller stat'ed the path
 * before (the walk), the same device and inode with the same size; where /proc is
 * mounted, the descriptor's path must also be the path asked for, so a parent
 * folder swapped for a symlink (a user's `~/.ssh` pointed at `/root/.ssh`) is
 * refused even when the swap came before the walk's lstat (the files collector
 * leaves that check out below folders that only root can change). Reads never go past the
 * size seen on the descriptor, and files above the per-file byte budget are not
 * read at all (see ByteBudget).
 *
 * Files are streamed through one fixed, reusable buffer, and many files are hashed
 * on a small pool of worker threads, each hashing whole batches synchronously so
 * that no promise or message is paid per file.
 */

/** Read size: large enough to amortise the syscall, small enough to stay in cache. */
export const CHUNK_BYTES = 256 * 1024;

/** Default per-file byte budget: larger files are listed unread, not read. */
export const DEFAULT_MAX_FILE_BYTES = 2 * 1024 ** 3;
/** Default per-scan byte budget: files hashed after it is spent are listed unread. */
export const DEFAULT_MAX_SCAN_BYTES = 32 * 1024 ** 3;

// O_NOFOLLOW: a path swapped for a symlink since it was stat'ed is refused (ELOOP),
// never followed. O_NONBLOCK: a path swapped for a FIFO does not hang the open.
// O_NOCTTY: a path swapped for a terminal never becomes our controlling terminal.
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY;
// For /proc/PID/exe, a link the kernel resolves to the running image itself.
const OPEN_LINK_FLAGS = constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY;

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
/** What a file type (`mode & S_IFMT`, as a decimal string) is called in the `not a regular file` reason. */
export const TYPE_NAMES: Record<string, string> = {
  [String(0o040000)]: 'a folder',
  [String(0o120000)]: 'a symlink',
  [String(0o020000)]: 'a character device',
  [String(0o060000)]: 'a block device',
  [String(0o010000)]: 'a FIFO',
  [String(0o140000)]: 'a socket',
};

/** The `unread` reasons of this module (errno codes are used as they are). */
export const REASONS = {
  swapped: 'changed between stat and open: the path now leads to another file',
  shrank: 'changed while read: shorter than its size',
  changed: 'changed while read: its size or times moved between the stats before and after the read',
  resized: (was: number, now: number): string => `changed between stat and open: size ${was} → ${now} bytes`,
  notRegular: (what: string): string => `not a regular file when opened (${what})`,
  overFile: (size: number, allocated: number, max: number): string =>
    `over the per-file byte budget: ${size} bytes (${allocated} allocated${allocated * 2 < size ? ', sparse' : ''}) > ${max}; raise --max-file-bytes to read it`,
  overScan: (max: number): string => `over the per-scan byte budget of ${max} bytes; raise --max-scan-bytes to read it`,
} as const;

/** A file that could not be read or hashed: an errno code (`ENOENT`, `EACCES`, `ELOOP`, …) or a reason from REASONS. */
export class HashError {
  constructor(readonly code: string) {}
}

/**
 * The byte budgets of one collection. `maxFileBytes`: a file larger than this (its
 * apparent size: a sparse file costs its holes too, since they are read as zeros)
 * is not read. `maxScanBytes`: the bytes all collectors of one scan may read;
 * `take` reserves them before a file is read. The files collector takes in walk
 * order; the processes collector runs beside it, so once the budget runs out,
 * which of the two got the last bytes may differ from one scan to the next.
 */
export class ByteBudget {
  private spent = 0;
  constructor(
    readonly maxFileBytes: number = DEFAULT_MAX_FILE_BYTES,
    readonly maxScanBytes: number = DEFAULT_MAX_SCAN_BYTES,
  ) {}

  /** Reserve `bytes` of the scan budget; false (nothing reserved) when that would overspend it. */
  take(bytes: number): boolean {
    if (this.spent + bytes > this.maxScanBytes) return false;
    this.spent += bytes;
    return true;
  }

  /** Bytes reserved so far. */
  get used(): number {
    return this.spent;
  }
}

/** What the caller knows of the file it means to read, from an earlier lstat. */
export interface Expected {
  /** Device and inode as Numbers (as a non-bigint stat gives them). */
  dev: number;
  ino: number;
  /** The size it had; undefined: not checked. */
  size?: number | undefined;
}

/** How to open and check a file. */
export interface OpenOptions {
  /** The file must be this one (device, inode and size). */
  expect?: Expected | undefined;
  /** Follow the last component: only for /proc/PID/exe, which the kernel resolves to the running image. */
  follow?: boolean;
  /** Files larger than this are refused with REASONS.overFile (default DEFAULT_MAX_FILE_BYTES). */
  maxBytes?: number;
  /** Compare the opened descriptor's path with `path` (default true; needs `path` free of symlinks and absolute). */
  checkPath?: boolean;
}

/** Whether /proc/self/fd can tell which path a descriptor was opened at (probed once per thread). */
let procFd: boolean | null = null;
function haveProcFd(): boolean {
  if (procFd === null) {
    try {
      readlinkSync('/proc/self/exe');
      procFd = true;
    } catch {
      // No /proc: the device, inode and type checks still hold; the path check cannot be made.
      procFd = false;
    }
  }
  return procFd;
}

/** A regular file opened for reading and checked; `size` is its size on the descriptor. */
export interface OpenedFile {
  fd: number;
  st: Stats;
  size: number;
}

/**
 * Open `path` for reading and check the descriptor (see the module comment).
 * Throws HashError with an errno code or a REASONS text; the descriptor is closed
 * on every error.
 */
export function openChecked(path: string, options: OpenOptions = {}): OpenedFile {
  let fd: number;
  try {
    fd = openSync(path, options.follow === true ? OPEN_LINK_FLAGS : OPEN_FLAGS);
  } catch (err) {
    throw new HashError(errnoOf(err));
  }
  try {
    // Number stats: a bigint fstat costs several allocations per file on the hot path.
    const st = fstatSync(fd);
    if ((st.mode & S_IFMT) !== S_IFREG) throw new HashError(REASONS.notRegular(TYPE_NAMES[String(st.mode & S_IFMT)] ?? 'another type'));
    const expect = options.expect;
    if (expect !== undefined) {
      if (st.dev !== expect.dev || st.ino !== expect.ino) throw new HashError(REASONS.swapped);
      if (expect.size !== undefined && st.size !== expect.size) throw new HashError(REASONS.resized(expect.size, st.size));
    }
    if (options.follow !== true && options.checkPath !== false && haveProcFd()) {
      let at: string;
      try {
        at = readlinkSync(`/proc/self/fd/${fd}`);
      } catch (err) {
        throw new HashError(errnoOf(err));
      }
      // A folder on the way was a symlink when the path was opened.
      if (at !== path) throw new HashError(REASONS.swapped);
    }
    const max = options.maxBytes ?? DEFAULT_MAX_FILE_BYTES;
    if (st.size > max) throw new HashError(REASONS.overFile(st.size, st.blocks * 512, max));
    return { fd, st, size: st.size };
  } catch (err) {
    closeSync(fd);
    throw err instanceof HashError ? err : new HashError(errnoOf(err));
  }
}

/**
 * sha256 (hex) of a file opened by `openChecked`, read up to the size its descriptor
 * showed (the descriptor stays open). Throws HashError(REASONS.shrank) when it ends before.
 */
export function hashOpened(file: OpenedFile, buffer: Buffer = Buffer.allocUnsafe(CHUNK_BYTES)): string {
  try {
    return hashOpen(file.fd, file.size, buffer);
  } catch (err) {
    throw err instanceof HashError ? err : new HashError(errnoOf(err));
  }
}

function hashOpen(fd: number, size: number, buffer: Buffer): string {
  if (size <= buffer.length) {
    // Most files fit in the buffer: read whole, then hashed in one call, with no hash object.
    let length = 0;
    while (length < size) {
      const n = readSync(fd, buffer, length, size - length, null);
      if (n === 0) throw new HashError(REASONS.shrank);
      length += n;
    }
    return sha256Once('sha256', buffer.subarray(0, size), 'hex');
  }
  const hash = createHash('sha256');
  let left = size;
  while (left > 0) {
    const n = readSync(fd, buffer, 0, Math.min(buffer.length, left), null);
    if (n === 0) throw new HashError(REASONS.shrank);
    hash.update(n === buffer.length ? buffer : buffer.subarray(0, n));
    left -= n;
  }
  return hash.digest('hex');
}

/**
 * sha256 (lowercase hex) of the file at `path`, opened and checked as `openChecked`
 * does, read up to the size its descriptor showed. Throws HashError.
 */
export function hashFileSync(path: string, options: OpenOptions = {}, buffer: Buffer = Buffer.allocUnsafe(CHUNK_BYTES)): string {
  const file = openChecked(path, options);
  try {
    return hashOpen(file.fd, file.size, buffer);
  } catch (err) {
    throw err instanceof HashError ? err : new HashError(errnoOf(err));
  } finally {
    closeSync(file.fd);
  }
}

/**
 * Why a file that drift reads whole (a rule file, a config file) could not be read, in a
 * person's words: `code` from readFileChecked (an errno code or a REASONS text).
 */
export function unreadableWhy(code: string, cap: number): string {
  if (code === 'ELOOP') return 'it is a symbolic link, which drift does not follow: name the file it points to';
  if (code.startsWith('over the per-file byte budget')) return `it is larger than ${cap} bytes`;
  return code;
}

/**
 * The bytes of a small file at `path`, opened and checked as `openChecked` does;
 * a file larger than `cap` bytes is refused (HashError) without being read.
 * For identity files and kept content.
 */
export function readFileChecked(path: string, cap: number, options: Omit<OpenOptions, 'maxBytes'> = {}): Buffer {
  const file = openChecked(path, { ...options, maxBytes: cap });
  try {
    const buffer = Buffer.allocUnsafe(file.size);
    let length = 0;
    while (length < file.size) {
      const n = readSync(file.fd, buffer, length, file.size - length, null);
      if (n === 0) throw new HashError(REASONS.shrank);
      length += n;
    }
    return buffer;
  } catch (err) {
    throw err instanceof HashError ? err : new HashError(errnoOf(err));
  } finally {
    closeSync(file.fd);
  }
}

/** sha256 (lowercase hex) of bytes already in memory. */
export function sha256Hex(data: Uint8Array): string {
  return sha256Once('sha256', data, 'hex');
}

/**
 * What a batch needs besides its paths: the walk's device, inode (NaN: not checked)
 * and size of each file, whether each file's path is checked on its descriptor
 * (see OpenOptions.checkPath), and the per-file budget.
 */
interface BatchChecks {
  devs: Float64Array;
  inos: Float64Array;
  sizes: Float64Array;
  checkPaths: Uint8Array;
  maxBytes: number;
}

/** Hash a batch; errors are returned in place as `!REASON` so one message answers the batch. */
function hashBatch(paths: readonly string[], checks: BatchChecks, buffer: Buffer): string[] {
  const out = new Array<string>(paths.length);
  for (let i = 0; i < paths.length; i++) {
    const dev = checks.devs[i] as number;
    try {
      out[i] = hashFileSync(
        paths[i] as string,
        {
          expect: Number.isNaN(dev) ? undefined : { dev, ino: checks.inos[i] as number, size: checks.sizes[i] as number },
          maxBytes: checks.maxBytes,
          checkPath: checks.checkPaths[i] === 1,
        },
        buffer,
      );
    } catch (err) {
      out[i] = `!${err instanceof HashError ? err.code : errnoOf(err)}`;
    }
  }
  return out;
}

/** One file to hash: its path on disk, its size, and (from the walk's lstat) its device and inode, which the opened file must match. */
export interface HashJob {
  path: string;
  size: number;
  dev?: number;
  ino?: number;
}

/**
 * Jobs read by index, for callers that hold many of them without an object each
 * (the files collector's cold scan queues every regular file).
 */
export interface HashJobList {
  readonly length: number;
  path(i: number): string;
  size(i: number): number;
  /** Device and inode the opened file must have (NaN: not checked). */
  dev(i: number): number;
  ino(i: number): number;
}

function listOf(jobs: readonly HashJob[] | HashJobList): HashJobList {
  if (!Array.isArray(jobs)) return jobs as HashJobList;
  const array = jobs as readonly HashJob[];
  return {
    length: array.length,
    path: (i) => (array[i] as HashJob).path,
    size: (i) => (array[i] as HashJob).size,
    dev: (i) => (array[i] as HashJob).dev ?? Number.NaN,
    ino: (i) => (array[i] as HashJob).ino ?? Number.NaN,
  };
}

/** How to hash many files. */
export interface HashOptions {
  /**
   * Threads that hash, the calling thread included (it hashes batches too once
   * it waits): 1 hashes on the calling thread only. Default: the CPUs available, at most 4.
   */
  workers?: number;
  /** Below this many bytes in total (and 2,000 files), hash on the calling thread: a worker costs ~30 ms to start. */
  inlineBelowBytes?: number;
  /** Per-file byte budget (default DEFAULT_MAX_FILE_BYTES). */
  maxFileBytes?: number;
  /** Check each descriptor's path against the job's path, for jobs added without their own choice (default true; see openChecked). */
  checkPath?: boolean;
  /**
   * Called with each hash worker as it is started, after its first batches are
   * sent (tests stop one to check that its batches are hashed on the calling thread).
   */
  onWorker?: (worker: Worker) => void;
}

/** Default pool size: one hashing thread per CPU, at most 4. */
export function defaultWorkers(): number {
  return Math.max(1, Math.min(4, availableParallelism()));
}

const BATCH_FILES = 128;
const BATCH_BYTES = 4 * 1024 * 1024;
const INLINE_BELOW_BYTES = 32 * 1024 * 1024;
const INLINE_BELOW_FILES = 2000;
/** Batches sent ahead to each worker, so that it never idles waiting for the next. */
const IN_FLIGHT = 2;

interface WorkerRequest {
  id: number;
  paths: string[];
  checks: BatchChecks;
}
interface WorkerReply {
  id: number;
  hashes: string[];
}

/** A batch being filled or waiting to be hashed: its first job's index, its paths and its checks' columns. */
interface Batch {
  start: number;
  paths: string[];
  devs: number[];
  inos: number[];
  sizes: number[];
  checkPaths: number[];
  bytes: number;
}

/** One hash worker: its reply port (read synchronously while the caller is busy) and the batches it holds. */
interface PoolWorker {
  worker: Worker;
  replies: MessagePort;
  held: Set<number>;
  dead: boolean;
}

/**
 * A hash pool that takes jobs while they are found: the files collector adds each
 * regular file as its walk records it, and the pool's worker threads hash the first
 * batches while the walk goes on (the walk calls `pump`, which takes the workers'
 * replies without yielding, through `receiveMessageOnPort`, and sends them more).
 * `finish` then hashes the rest on the calling thread and the workers together.
 * Results come back in the order the jobs were added. Workers start only once the
 * jobs add up to more than a few files' worth (see HashOptions.inlineBelowBytes);
 * a worker that fails or exits early is not an error: the batches it did not answer
 * are hashed on the calling thread.
 */
export class HashStream {
  private readonly out: string[] = [];
  private readonly threads: number;
  private readonly inlineBelow: number;
  private readonly maxBytes: number;
  private readonly checkPath: boolean;
  private readonly onWorker: ((worker: Worker) => void) | undefined;
  /** Batches not yet hashed, by id; a batch leaves when its hashes are stored. */
  private readonly batches = new Map<number, Batch>();
  /** Ids of full batches not yet sent or hashed, in order. */
  private readonly queue: number[] = [];
  private current: Batch | null = null;
  private nextId = 0;
  private readonly workers: PoolWorker[] = [];
  private started = false;
  private queuedBytes = 0;
  private queuedFiles = 0;
  private failure: unknown = null;
  /** Resolves `finish`'s wait for the workers' last replies. */
  private wake: (() => void) | null = null;
  private readonly buffer = Buffer.allocUnsafe(CHUNK_BYTES);

  constructor(options: HashOptions = {}) {
    this.threads = options.workers ?? defaultWorkers();
    this.inlineBelow = options.inlineBelowBytes ?? INLINE_BELOW_BYTES;
    this.maxBytes = options.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES;
    this.checkPath = options.checkPath ?? true;
    this.onWorker = options.onWorker;
  }

  /** Jobs added so far. */
  get length(): number {
    return this.out.length;
  }

  /** Add one job; its result is at the same index of `finish`'s answer. */
  add(path: string, size: number, dev: number, ino: number, checkPath: boolean = this.checkPath): void {
    const index = this.out.length;
    this.out.push('');
    const bytes = Math.min(size, this.maxBytes);
    let batch = this.current;
    if (batch !== null && (batch.paths.length >= BATCH_FILES || batch.bytes + bytes > BATCH_BYTES)) {
      this.close(batch);
      batch = null;
    }
    if (batch === null) {
      batch = { start: index, paths: [], devs: [], inos: [], sizes: [], checkPaths: [], bytes: 0 };
      this.current = batch;
    }
    batch.paths.push(path);
    batch.devs.push(dev);
    batch.inos.push(ino);
    batch.sizes.push(size);
    batch.checkPaths.push(checkPath ? 1 : 0);
    batch.bytes += bytes;
    this.queuedBytes += bytes;
    this.queuedFiles += 1;
  }

  /** Take the workers' replies and send them queued batches, without yielding (for a caller that is busy). */
  pump(): void {
    if (!this.started && this.threads > 1 && (this.queuedBytes >= this.inlineBelow || this.queuedFiles >= INLINE_BELOW_FILES)) this.start();
    for (const w of this.workers) {
      if (w.dead) continue;
      for (let m = receiveMessageOnPort(w.replies); m !== undefined; m = receiveMessageOnPort(w.replies)) this.reply(w, m.message as WorkerReply);
      this.feed(w);
    }
  }

  /** Hash what is left (here and on the workers) and return every job's hash or HashError, in the order added. */
  async finish(): Promise<(string | HashError)[]> {
    if (this.current !== null) this.close(this.current);
    this.current = null;
    try {
      this.pump();
      // The workers' replies are now taken as they come, while this thread hashes queued batches too.
      for (const w of this.workers) {
        w.replies.on('message', (reply: WorkerReply) => {
          this.reply(w, reply);
          this.feed(w);
          this.wake?.();
        });
      }
      while (this.queue.length > 0) {
        this.hashHere(this.queue.shift() as number);
        // Let replies and worker failures in between batches.
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      while (this.workers.some((w) => !w.dead && w.held.size > 0)) {
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
        this.wake = null;
      }
    } finally {
      await Promise.all(this.workers.map((w) => { w.replies.close(); return w.worker.terminate(); }));
    }
    // What no worker answered (one failed or could not start) is hashed here, as if there had been no pool.
    for (const id of [...this.batches.keys()].sort((a, b) => a - b)) this.hashHere(id);
    // In place: a second array of 100,000s of results would only raise the peak.
    const out = this.out as (string | HashError)[];
    for (let i = 0; i < out.length; i++) {
      const h = out[i] as string;
      if (h.startsWith('!')) out[i] = new HashError(h.slice(1));
    }
    return out;
  }

  /** Stop the workers without waiting for them (the caller failed and wants no results). */
  abort(): void {
    for (const w of this.workers) {
      w.dead = true;
      w.replies.close();
      void w.worker.terminate();
    }
  }

  /** The error that stopped a worker, if one did (the pool went on without it). */
  get workerFailure(): unknown {
    return this.failure;
  }

  private close(batch: Batch): void {
    const id = this.nextId++;
    this.batches.set(id, batch);
    this.queue.push(id);
  }

  private checksOf(batch: Batch): BatchChecks {
    return {
      devs: Float64Array.from(batch.devs),
      inos: Float64Array.from(batch.inos),
      sizes: Float64Array.from(batch.sizes),
      checkPaths: Uint8Array.from(batch.checkPaths),
      maxBytes: this.maxBytes,
    };
  }

  private store(id: number, hashes: readonly string[]): void {
    const batch = this.batches.get(id);
    if (batch === undefined) return;
    for (let i = 0; i < hashes.length; i++) this.out[batch.start + i] = hashes[i] as string;
    this.batches.delete(id);
    this.queuedBytes -= batch.bytes;
    this.queuedFiles -= batch.paths.length;
  }

  private hashHere(id: number): void {
    const batch = this.batches.get(id);
    if (batch !== undefined) this.store(id, hashBatch(batch.paths, this.checksOf(batch), this.buffer));
  }

  private reply(w: PoolWorker, reply: WorkerReply): void {
    w.held.delete(reply.id);
    this.store(reply.id, reply.hashes);
  }

  private feed(w: PoolWorker): void {
    while (!w.dead && w.held.size < IN_FLIGHT && this.queue.length > 0) {
      const id = this.queue.shift() as number;
      const batch = this.batches.get(id) as Batch;
      const request: WorkerRequest = { id, paths: batch.paths, checks: this.checksOf(batch) };
      w.held.add(id);
      w.worker.postMessage(request);
    }
  }

  private start(): void {
    this.started = true;
    for (let n = 0; n < this.threads - 1; n++) {
      const { port1, port2 } = new MessageChannel();
      let worker: Worker;
      try {
        worker = startWorker(import.meta.url, { workerData: { driftHashWorker: true, replies: port2 }, transferList: [port2] });
      } catch (err) {
        // No thread to be had (resource limits): the calling thread hashes what is left.
        this.failure ??= err;
        port1.close();
        break;
      }
      const w: PoolWorker = { worker, replies: port1, held: new Set(), dead: false };
      this.workers.push(w);
      const fail = (err: unknown): void => {
        w.dead = true;
        this.failure ??= err;
        this.wake?.();
      };
      worker.on('error', fail);
      worker.on('exit', (code) => {
        if (w.held.size > 0) fail(new Error(`hash worker exited with code ${code} before finishing its batches`));
        // A worker that is gone gets no more batches, whether or not it held any.
        w.dead = true;
        this.wake?.();
      });
      this.feed(w);
      this.onWorker?.(worker);
    }
  }
}

/**
 * sha256 of every job's file, in job order: a hex string, or a HashError for a
 * file that could not be read. Small totals are hashed inline; larger ones on a
 * pool of worker threads that is started and stopped by this call (a HashStream).
 */
export async function hashFiles(jobs: readonly HashJob[] | HashJobList, options: HashOptions = {}): Promise<(string | HashError)[]> {
  const list = listOf(jobs);
  const stream = new HashStream(options);
  for (let i = 0; i < list.length; i++) stream.add(list.path(i), list.size(i), list.dev(i), list.ino(i));
  return stream.finish();
}

// Worker entry: this module started as a hash worker by a HashStream.
if (!isMainThread && parentPort && (workerData as { driftHashWorker?: boolean } | null)?.driftHashWorker === true) {
  const replies = (workerData as { replies: MessagePort }).replies;
  const buffer = Buffer.allocUnsafe(CHUNK_BYTES);
  parentPort.on('message', (request: WorkerRequest) => {
    const reply: WorkerReply = { id: request.id, hashes: hashBatch(request.paths, request.checks, buffer) };
    replies.postMessage(reply);
  });
}
