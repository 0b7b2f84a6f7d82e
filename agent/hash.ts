import { closeSync, constants, openSync, readSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { errnoOf } from './protocol/errors.js';
import { startWorker } from './bundle.js';

/**
 * sha256 of files, the agent's hot path. Files are streamed through one fixed,
 * reusable buffer (never buffered whole, never skipped for their size), and many
 * files are hashed on a small pool of worker threads, each hashing whole batches
 * synchronously so that no promise or message is paid per file.
 */

/** Read size: large enough to amortise the syscall, small enough to stay in cache. */
export const CHUNK_BYTES = 256 * 1024;

// O_NOFOLLOW: a path swapped for a symlink since it was stat'ed is refused (ELOOP),
// never followed. O_NONBLOCK: a path swapped for a FIFO does not hang the hash.
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

/** A file that could not be hashed, with its errno code (`ENOENT`, `EACCES`, `ELOOP`, …). */
export class HashError {
  constructor(readonly code: string) {}
}


/**
 * sha256 (lowercase hex) of the file at `path`, read to its end through `buffer`.
 * Throws the fs error (with its errno `code`) when it cannot be opened or read.
 */
export function hashFileSync(path: string, buffer: Buffer = Buffer.allocUnsafe(CHUNK_BYTES)): string {
  const fd = openSync(path, OPEN_FLAGS);
  try {
    const hash = createHash('sha256');
    for (;;) {
      const n = readSync(fd, buffer, 0, buffer.length, null);
      if (n === 0) break;
      hash.update(n === buffer.length ? buffer : buffer.subarray(0, n));
    }
    return hash.digest('hex');
  } finally {
    closeSync(fd);
  }
}

/** sha256 (lowercase hex) of bytes already in memory. */
export function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Hash a batch; errors are returned in place as `!CODE` so one message answers the batch. */
function hashBatch(paths: readonly string[], buffer: Buffer): string[] {
  const out = new Array<string>(paths.length);
  for (let i = 0; i < paths.length; i++) {
    try {
      out[i] = hashFileSync(paths[i] as string, buffer);
    } catch (err) {
      out[i] = `!${errnoOf(err)}`;
    }
  }
  return out;
}

/** One file to hash: its path on disk and its size (used only to balance batches). */
export interface HashJob {
  path: string;
  size: number;
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
export async function hashFiles(jobs: readonly HashJob[], options: HashOptions = {}): Promise<(string | HashError)[]> {
  const workers = options.workers ?? defaultWorkers();
  const inlineBelow = options.inlineBelowBytes ?? INLINE_BELOW_BYTES;
  let total = 0;
  for (const j of jobs) total += j.size;
  const raw =
    workers <= 1 || (total < inlineBelow && jobs.length < INLINE_BELOW_FILES)
      ? hashBatch(jobs.map((j) => j.path), Buffer.allocUnsafe(CHUNK_BYTES))
      : await hashOnPool(jobs, workers, options.onWorker);
  return raw.map((h) => (h.startsWith('!') ? new HashError(h.slice(1)) : h));
}

/** Cut jobs into batches of at most BATCH_FILES files or about BATCH_BYTES bytes. */
function batchesOf(jobs: readonly HashJob[]): { start: number; paths: string[] }[] {
  const batches: { start: number; paths: string[] }[] = [];
  let current: string[] = [];
  let start = 0;
  let bytes = 0;
  jobs.forEach((job, i) => {
    if (current.length > 0 && (current.length >= BATCH_FILES || bytes + job.size > BATCH_BYTES)) {
      batches.push({ start, paths: current });
      current = [];
      start = i;
      bytes = 0;
    }
    current.push(job.path);
    bytes += job.size;
  });
  if (current.length > 0) batches.push({ start, paths: current });
  return batches;
}

/**
 * Hash batches on `threads - 1` worker threads and on the calling thread, all
 * taking the next batch from one queue. The calling thread hashes one batch at a
 * time and yields between batches so that worker replies are handled; a worker
 * costs ~10 MB, so the calling thread doing its share keeps the pool small.
 */
async function hashOnPool(jobs: readonly HashJob[], threads: number, onWorker: ((worker: Worker) => void) | undefined): Promise<string[]> {
  const out = new Array<string>(jobs.length);
  const batches = batchesOf(jobs);
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
  const buffer = Buffer.allocUnsafe(CHUNK_BYTES);
  try {
    let inFlight = 0;
    let wake: (() => void) | null = null;
    const feed = (worker: Worker): void => {
      const batch = batches[next];
      if (!batch) return;
      const request: WorkerRequest = { id: next, paths: batch.paths };
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
      store(id, hashBatch((batches[id] as { paths: string[] }).paths, buffer));
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
    for (let id = 0; id < batches.length; id++) if (!stored[id]) store(id, hashBatch((batches[id] as { paths: string[] }).paths, buffer));
  }
  return out;
}

// Worker entry: this module started as a hash worker by hashOnPool.
if (!isMainThread && parentPort && (workerData as { driftHashWorker?: boolean } | null)?.driftHashWorker === true) {
  const port = parentPort;
  const buffer = Buffer.allocUnsafe(CHUNK_BYTES);
  port.on('message', (request: WorkerRequest) => {
    const reply: WorkerReply = { id: request.id, hashes: hashBatch(request.paths, buffer) };
    port.postMessage(reply);
  });
}
