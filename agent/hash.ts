import { closeSync, constants, fstatSync, openSync, readSync, readlinkSync, type Stats } from 'node:fs';
import { createHash } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
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
 * refused even when the swap came before the walk's lstat. Reads never go past the
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
  return createHash('sha256').update(data).digest('hex');
}

/** What a batch needs besides its paths: the walk's device, inode (NaN: not checked) and size of each file, and the per-file budget. */
interface BatchChecks {
  devs: Float64Array;
  inos: Float64Array;
  sizes: Float64Array;
  maxBytes: number;
  checkPath: boolean;
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
          checkPath: checks.checkPath,
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
   * Threads that hash, the calling thread included (it hashes batches too while
   * it waits): 1 hashes on the calling thread only. Default: the CPUs available, at most 4.
   */
  workers?: number;
  /** Below this many bytes in total (and 2,000 files), hash on the calling thread: a worker costs ~30 ms to start. */
  inlineBelowBytes?: number;
  /** Per-file byte budget (default DEFAULT_MAX_FILE_BYTES). */
  maxFileBytes?: number;
  /** Check each descriptor's path against the job's path (default true; see openChecked). */
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

interface WorkerRequest {
  id: number;
  paths: string[];
  checks: BatchChecks;
}
interface WorkerReply {
  id: number;
  hashes: string[];
}

/**
 * sha256 of every job's file, in job order: a hex string, or a HashError for a
 * file that could not be read. Small totals are hashed inline; larger ones on a
 * pool of worker threads that is started and stopped by this call. A worker that
 * fails or exits early is not an error: the batches it did not answer are hashed
 * on the calling thread.
 */
export async function hashFiles(jobs: readonly HashJob[] | HashJobList, options: HashOptions = {}): Promise<(string | HashError)[]> {
  const list = listOf(jobs);
  const workers = options.workers ?? defaultWorkers();
  const inlineBelow = options.inlineBelowBytes ?? INLINE_BELOW_BYTES;
  const maxBytes = options.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES;
  const checkPath = options.checkPath ?? true;
  let total = 0;
  for (let i = 0; i < list.length; i++) total += Math.min(list.size(i), maxBytes);
  const raw =
    workers <= 1 || (total < inlineBelow && list.length < INLINE_BELOW_FILES)
      ? hashBatch(Array.from({ length: list.length }, (_, i) => list.path(i)), checksOf(list, 0, list.length, maxBytes, checkPath), Buffer.allocUnsafe(CHUNK_BYTES))
      : await hashOnPool(list, workers, maxBytes, checkPath, options.onWorker);
  // In place: a second array of 100,000s of results would only raise the peak.
  const out = raw as (string | HashError)[];
  for (let i = 0; i < raw.length; i++) {
    const h = raw[i] as string;
    if (h.startsWith('!')) out[i] = new HashError(h.slice(1));
  }
  return out;
}

/** The checks of jobs `start` to `end` (exclusive). */
function checksOf(jobs: HashJobList, start: number, end: number, maxBytes: number, checkPath: boolean): BatchChecks {
  const n = end - start;
  const checks: BatchChecks = { devs: new Float64Array(n), inos: new Float64Array(n), sizes: new Float64Array(n), maxBytes, checkPath };
  for (let i = 0; i < n; i++) {
    checks.devs[i] = jobs.dev(start + i);
    checks.inos[i] = jobs.ino(start + i);
    checks.sizes[i] = jobs.size(start + i);
  }
  return checks;
}

/** One batch: jobs `start` to `end` (exclusive) and their paths; its checks are built only when it is sent or hashed. */
interface Batch {
  start: number;
  end: number;
  paths: string[];
}

/** Cut jobs into batches of at most BATCH_FILES files or about BATCH_BYTES bytes. */
function batchesOf(jobs: HashJobList, maxBytes: number): Batch[] {
  const batches: Batch[] = [];
  let current: string[] = [];
  let start = 0;
  let bytes = 0;
  for (let i = 0; i < jobs.length; i++) {
    const size = Math.min(jobs.size(i), maxBytes);
    if (current.length > 0 && (current.length >= BATCH_FILES || bytes + size > BATCH_BYTES)) {
      batches.push({ start, end: i, paths: current });
      current = [];
      start = i;
      bytes = 0;
    }
    current.push(jobs.path(i));
    bytes += size;
  }
  if (current.length > 0) batches.push({ start, end: jobs.length, paths: current });
  return batches;
}

/**
 * Hash batches on `threads - 1` worker threads and on the calling thread, all
 * taking the next batch from one queue. The calling thread hashes one batch at a
 * time and yields between batches so that worker replies are handled; a worker
 * costs ~10 MB, so the calling thread doing its share keeps the pool small.
 */
async function hashOnPool(
  jobs: HashJobList,
  threads: number,
  maxBytes: number,
  checkPath: boolean,
  onWorker: ((worker: Worker) => void) | undefined,
): Promise<string[]> {
  const out = new Array<string>(jobs.length);
  const batches = batchesOf(jobs, maxBytes);
  const checksFor = (b: Batch): BatchChecks => checksOf(jobs, b.start, b.end, maxBytes, checkPath);
  const stored = new Array<boolean>(batches.length).fill(false);
  const pool: Worker[] = [];
  let next = 0;
  let failure: unknown = null;
  const store = (id: number, hashes: string[]): void => {
    const batch = batches[id];
    if (!batch) return;
    for (let i = 0; i < hashes.length; i++) out[batch.start + i] = hashes[i] as string;
    stored[id] = true;
  };
  const hashHere = (id: number): void => {
    const b = batches[id] as Batch;
    store(id, hashBatch(b.paths, checksFor(b), buffer));
  };
  const buffer = Buffer.allocUnsafe(CHUNK_BYTES);
  try {
    let inFlight = 0;
    let wake: (() => void) | null = null;
    const feed = (worker: Worker): void => {
      const batch = batches[next];
      if (!batch) return;
      const request: WorkerRequest = { id: next, paths: batch.paths, checks: checksFor(batch) };
      next += 1;
      inFlight += 1;
      worker.postMessage(request);
    };
    const workerCount = Math.min(threads - 1, Math.max(0, batches.length - 1));
    for (let w = 0; w < workerCount; w++) {
      let worker: Worker;
      try {
        worker = startWorker(import.meta.url, { workerData: { driftHashWorker: true } });
      } catch (err) {
        // No thread to be had (resource limits): the calling thread hashes what is left.
        failure ??= err;
        break;
      }
      pool.push(worker);
      worker.on('message', (reply: WorkerReply) => {
        store(reply.id, reply.hashes);
        inFlight -= 1;
        feed(worker);
        wake?.();
      });
      const fail = (err: unknown): void => {
        failure ??= err;
        wake?.();
      };
      worker.on('error', fail);
      worker.on('exit', (code) => {
        if (inFlight > 0) fail(new Error(`hash worker exited with code ${code} before finishing its batches`));
      });
      // Two batches in flight per worker, so a worker never idles waiting for the next.
      feed(worker);
      feed(worker);
      onWorker?.(worker);
    }
    // Batches still queued are hashed here even after a worker failed.
    while (next < batches.length) {
      const id = next;
      next += 1;
      hashHere(id);
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    while (failure === null && inFlight > 0) {
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
      wake = null;
    }
  } finally {
    await Promise.all(pool.map((w) => w.terminate()));
  }
  // A worker failed (or could not start): what no worker answered is hashed here,
  // as if there had been no pool.
  if (failure !== null) {
    for (let id = 0; id < batches.length; id++) if (!stored[id]) hashHere(id);
  }
  return out;
}

// Worker entry: this module started as a hash worker by hashOnPool.
if (!isMainThread && parentPort && (workerData as { driftHashWorker?: boolean } | null)?.driftHashWorker === true) {
  const port = parentPort;
  const buffer = Buffer.allocUnsafe(CHUNK_BYTES);
  port.on('message', (request: WorkerRequest) => {
    const reply: WorkerReply = { id: request.id, hashes: hashBatch(request.paths, request.checks, buffer) };
    port.postMessage(reply);
  });
}
