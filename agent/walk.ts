import { lstatSync, readlinkSync } from 'node:fs';
import { MessageChannel, MessagePort, Worker, isMainThread, parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
// errors.ts and bundle.ts import nothing of ours, so the worker entry stays light.
import { errnoOf } from './protocol/errors.js';
import { startWorker } from './bundle.js';

/**
 * lstat on two threads, for the files collector's walk. The walk itself (readdir,
 * globs, which paths to record, in which order) stays on the calling thread; it
 * hands the lstat (and readlink) of non-folder paths to a helper thread while
 * that thread keeps up, and does the rest itself, so the two cores share the
 * kernel path walks that dominate an incremental scan.
 *
 * Results are compact, never one object per file: each stat is 40 bytes of
 * `dev ino size mtimeNs ctimeNs` (u64, little-endian: the key layout of the stat
 * cache, so a cache check is one byte comparison) plus mode, uid, gid, nlink and
 * size as numbers, in blocks of typed arrays that a worker transfers without copy.
 * Which thread stat'ed a path never changes the result: the same lstat fields,
 * targets and errno codes come back either way.
 */

/** Bytes of the stat key of one path: dev, ino, size, mtimeNs, ctimeNs (u64 LE). */
export const STAMP_BYTES = 40;
/** Numbers kept per path: mode, uid, gid, nlink, size, mtime (whole seconds). */
const META = 6;
const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;

/** One block of lstat results; `at(i)` style accessors below read it. */
export interface StatBlock {
  /** STAMP_BYTES per path. */
  stamps: Uint8Array;
  /** A view over `stamps`, for writing u64s. */
  view: DataView;
  /** META numbers per path. */
  meta: Float64Array;
  /** errno code of a path whose lstat failed (missing = lstat worked; `ENOENT` = gone). */
  errors: Map<number, string>;
  /** Symlink target of a symlink path. */
  targets: Map<number, string>;
  /** errno code of a symlink path whose readlink failed. */
  linkErrors: Map<number, string>;
}

function newBlock(size: number): StatBlock {
  const stamps = new Uint8Array(size * STAMP_BYTES);
  return { stamps, view: new DataView(stamps.buffer), meta: new Float64Array(size * META), errors: new Map(), targets: new Map(), linkErrors: new Map() };
}

/**
 * A number read from a Float64Array is a double, and V8 keeps a double stored in an
 * object as a 16-byte heap number even when it is whole: 3 per file entry (uid, gid,
 * size), 8 MB over 140k entries. `| 0` turns a value in V8's small-integer range
 * (below 2^30) into a small integer, stored inline; larger ones stay as they are.
 */
function small(n: number): number {
  return n < 0x40000000 ? n | 0 : n;
}


/** lstat `path` (never followed) into slot `i` of `block`, and readlink it when it is a symlink. */
function statInto(block: StatBlock, i: number, path: string): void {
  let st;
  try {
    st = lstatSync(path, { bigint: true, throwIfNoEntry: false });
  } catch (err) {
    block.errors.set(i, errnoOf(err));
    return;
  }
  if (!st) {
    block.errors.set(i, 'ENOENT');
    return;
  }
  const view = block.view;
  const at = i * STAMP_BYTES;
  view.setBigUint64(at, st.dev, true);
  view.setBigUint64(at + 8, st.ino, true);
  view.setBigUint64(at + 16, st.size, true);
  view.setBigUint64(at + 24, st.mtimeNs, true);
  view.setBigUint64(at + 32, st.ctimeNs, true);
  const m = block.meta;
  const o = i * META;
  const mode = Number(st.mode);
  m[o] = mode;
  m[o + 1] = Number(st.uid);
  m[o + 2] = Number(st.gid);
  m[o + 3] = Number(st.nlink);
  m[o + 4] = Number(st.size);
  // Whole seconds toward zero; mtimeMs (already made by the BigIntStats, truncated) spares a BigInt division per path.
  m[o + 5] = Math.trunc(Number(st.mtimeMs) / 1000);
  if ((mode & S_IFMT) === S_IFLNK) {
    try {
      block.targets.set(i, readlinkSync(path));
    } catch (err) {
      block.linkErrors.set(i, errnoOf(err));
    }
  }
}

/** The lstat fields of one path, read from its block. */
export interface StatView {
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  size: number;
  /** Last modification, whole seconds since the epoch (toward zero). */
  mtime: number;
  /** A view of the block's stamp bytes, and the offset of this path's STAMP_BYTES in it. */
  view: DataView;
  stampAt: number;
}

/** Holds a block that may arrive later (a helper batch, until `replied`). */
interface Holder {
  block: StatBlock;
  replied: boolean;
}

/** How the walk uses a helper thread. */
export interface StatPoolOptions {
  /** Use a helper thread at all (false: every lstat on the calling thread). */
  thread: boolean;
  /** Paths stat'ed on the calling thread before the helper is started (default 2000): a small tree is not worth a thread. */
  threadAfter?: number;
}

const LOCAL_BLOCK = 1024;
/** Paths per message to the helper. */
const BATCH = 256;
/** Paths handed to the helper and not yet done, above which the calling thread stats them itself. */
const MAX_BACKLOG = 8192;
const DEFAULT_THREAD_AFTER = 2000;
/** The block of a helper batch until its reply arrives (never read before `finish`). */
const PENDING = newBlock(0);

interface Request {
  paths: string[];
}
interface Reply {
  id: number;
  stamps: Uint8Array;
  meta: Float64Array;
  errors: Map<number, string>;
  targets: Map<number, string>;
  linkErrors: Map<number, string>;
}

/**
 * lstat for one walk: `stat` now, on this thread, or later, on the helper;
 * `finish` waits for the helper's results (after it, every ref is readable).
 * A helper that fails or exits early is not an error: its unfinished paths are
 * stat'ed on the calling thread.
 */
export class StatPool {
  private local: Holder = { block: newBlock(LOCAL_BLOCK), replied: true };
  /** Where the helper's replies arrive (read synchronously mid-walk with `poll`). */
  private replyPort: MessagePort | null = null;
  /** Per ref: the holder of its block, and its slot in it. */
  private readonly refHolder: Holder[] = [];
  private readonly refSlot: number[] = [];
  private localUsed = 0;
  private worker: Worker | null = null;
  /** Paths the helper has done, written by it (Int32 in shared memory, so we see it mid-walk). */
  private done: Int32Array | null = null;
  private sent = 0;
  private batch: string[] = [];
  /** Blocks for the helper's paths, one per batch, filled in when its reply arrives. */
  private readonly batches: (Holder & { paths: string[] })[] = [];
  private replies = 0;
  private failure: unknown = null;
  private wake: (() => void) | null = null;
  private seen = 0;
  private readonly threadAfter: number;

  constructor(private readonly options: StatPoolOptions) {
    this.threadAfter = options.threadAfter ?? DEFAULT_THREAD_AFTER;
  }

  /** Paths stat'ed so far on the calling thread (`local`) and handed to the helper (`helper`). */
  readonly counts = { local: 0, helper: 0 };
  /** lstat `path` on this thread now; returns its ref, readable at once. */
  statNow(path: string): number {
    if (this.localUsed === LOCAL_BLOCK) {
      this.local = { block: newBlock(LOCAL_BLOCK), replied: true };
      this.localUsed = 0;
    }
    const slot = this.localUsed++;
    this.counts.local += 1;
    statInto(this.local.block, slot, path);
    this.refHolder.push(this.local);
    return this.refSlot.push(slot) - 1;
  }

  /** lstat `path`, here or on the helper; returns its ref, readable only after `finish`. */
  stat(path: string): number {
    this.seen += 1;
    if (!this.options.thread || this.failure !== null) return this.statNow(path);
    if (this.worker === null) {
      if (this.seen <= this.threadAfter) return this.statNow(path);
      try {
        this.start();
      } catch (err) {
        // No thread to be had (resource limits): the walk goes on without one.
        this.failure = err;
        return this.statNow(path);
      }
    }
    const done = this.done as Int32Array;
    if (this.sent - Atomics.load(done, 0) >= MAX_BACKLOG) return this.statNow(path);
    this.sent += 1;
    this.counts.helper += 1;
    if (this.batch.length === 0) this.batches.push({ paths: this.batch, block: PENDING, replied: false });
    const slot = this.batch.length;
    this.batch.push(path);
    // The batch's block is replaced by the helper's reply: refs reach it through the batch entry.
    this.refHolder.push(this.batches[this.batches.length - 1] as Holder);
    if (this.batch.length === BATCH) this.flush();
    return this.refSlot.push(slot) - 1;
  }

  /** The errno code of a failed lstat of `ref`, or undefined when it worked. */
  error(ref: number): string | undefined {
    const errors = (this.refHolder[ref] as Holder).block.errors;
    return errors.size === 0 ? undefined : errors.get(this.refSlot[ref] as number);
  }

  /** The symlink target of `ref`; undefined for other types and when readlink failed. */
  target(ref: number): string | undefined {
    return (this.refHolder[ref] as Holder).block.targets.get(this.refSlot[ref] as number);
  }

  /** The errno code of a failed readlink of symlink `ref`, or undefined. */
  linkError(ref: number): string | undefined {
    const errors = (this.refHolder[ref] as Holder).block.linkErrors;
    return errors.size === 0 ? undefined : errors.get(this.refSlot[ref] as number);
  }

  /** The mode (type and permission bits) of `ref`, which must have been stat'ed without error. */
  modeOf(ref: number): number {
    return (this.refHolder[ref] as Holder).block.meta[(this.refSlot[ref] as number) * META] as number;
  }

  /** Fill `out` with the lstat fields of `ref` (one reused object: no allocation per path). */
  read(ref: number, out: StatView): StatView {
    const block = (this.refHolder[ref] as Holder).block;
    const slot = this.refSlot[ref] as number;
    const m = block.meta;
    const o = slot * META;
    out.mode = small(m[o] as number);
    out.uid = small(m[o + 1] as number);
    out.gid = small(m[o + 2] as number);
    out.nlink = small(m[o + 3] as number);
    out.size = small(m[o + 4] as number);
    const mtime = m[o + 5] as number;
    // Seconds fit an int32 until 2038: kept as a small integer where V8 allows (see `small`).
    out.mtime = mtime >= -0x80000000 && mtime < 0x80000000 ? mtime | 0 : mtime;
    out.view = block.view;
    out.stampAt = slot * STAMP_BYTES;
    return out;
  }

  private start(): void {
    const shared = new SharedArrayBuffer(4);
    this.done = new Int32Array(shared);
    const { port1, port2 } = new MessageChannel();
    const worker = startWorker(import.meta.url, {
      workerData: { driftStatWorker: true, done: shared, replies: port2 },
      transferList: [port2],
    });
    this.worker = worker;
    this.replyPort = port1;
    port1.on('message', (reply: Reply) => {
      this.accept(reply);
      this.wake?.();
    });
    const fail = (err: unknown): void => {
      this.failure ??= err;
      this.wake?.();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`stat worker exited with code ${code}`)));
  }

  private accept(reply: Reply): void {
    const b = this.batches[reply.id];
    if (!b || b.replied) return;
    const { stamps, meta, errors, targets, linkErrors } = reply;
    b.block = { stamps, view: new DataView(stamps.buffer, stamps.byteOffset, stamps.byteLength), meta, errors, targets, linkErrors };
    b.replied = true;
    // Kept only to stat them here should the helper fail.
    b.paths = [];
    this.replies += 1;
  }

  /** Take in the helper's replies that have arrived, without waiting (the walk calls this as it goes). */
  poll(): void {
    const port = this.replyPort;
    if (port === null) return;
    for (let m = receiveMessageOnPort(port); m !== undefined; m = receiveMessageOnPort(port)) this.accept(m.message as Reply);
  }

  /** True when the result of `ref` can be read now. */
  ready(ref: number): boolean {
    return (this.refHolder[ref] as Holder).replied;
  }

  /** Forget the block of `ref` when `ref` is its last slot: its results have been read. */
  consumed(ref: number): void {
    const holder = this.refHolder[ref] as Holder;
    if (holder !== this.local && (this.refSlot[ref] as number) === holder.block.meta.length / META - 1) holder.block = PENDING;
  }

  private flush(): void {
    if (this.batch.length === 0) return;
    const request: Request = { paths: this.batch };
    this.worker?.postMessage(request);
    this.batch = [];
  }

  /**
   * Forget every ref handed out so far (all have been read): new refs count from 0
   * again, and the calling thread's block is filled again from its first slot (a
   * walk then reuses one block instead of leaving ~90 KB of garbage per 1,024 paths).
   */
  forgetRefs(): void {
    this.refHolder.length = 0;
    this.refSlot.length = 0;
    const block = this.local.block;
    if (block !== PENDING && this.localUsed > 0) {
      block.errors.clear();
      block.targets.clear();
      block.linkErrors.clear();
      this.localUsed = 0;
    }
  }

  /** Drop every result (after they have been read): refs are invalid from here on. */
  release(): void {
    this.refHolder.length = 0;
    this.refSlot.length = 0;
    this.batches.length = 0;
    this.local = { block: PENDING, replied: true };
    this.localUsed = LOCAL_BLOCK;
  }

  /** Stop the helper without waiting for it (after a walk that failed); `finish` stops it otherwise. */
  close(): void {
    const worker = this.worker;
    this.worker = null;
    this.failure ??= new Error('stat pool closed');
    this.replyPort?.close();
    this.replyPort = null;
    if (worker) {
      worker.removeAllListeners('exit');
      void worker.terminate();
    }
  }

  /** Wait for every path handed to the helper; stop the helper. */
  async finish(): Promise<void> {
    this.flush();
    const worker = this.worker;
    if (worker === null) return;
    while (this.failure === null && this.replies < this.batches.length) {
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
      this.wake = null;
    }
    worker.removeAllListeners('exit');
    this.worker = null;
    this.replyPort?.close();
    this.replyPort = null;
    await worker.terminate();
    // A helper that failed: what it did not answer is stat'ed here, as if there had been no helper.
    for (const b of this.batches) {
      if (b.replied) continue;
      const block = newBlock(b.paths.length);
      b.paths.forEach((path, i) => statInto(block, i, path));
      b.block = block;
      b.replied = true;
    }
  }
}

// Worker entry: this module started as the stat helper by StatPool.
if (!isMainThread && parentPort && (workerData as { driftStatWorker?: boolean } | null)?.driftStatWorker === true) {
  const port = parentPort;
  const data = workerData as { done: SharedArrayBuffer; replies: MessagePort };
  const done = new Int32Array(data.done);
  const replies = data.replies;
  let id = 0;
  port.on('message', (request: Request) => {
    const block = newBlock(request.paths.length);
    const paths = request.paths;
    for (let i = 0; i < paths.length; i++) {
      statInto(block, i, paths[i] as string);
      if ((i & 15) === 15) Atomics.add(done, 0, 16);
    }
    Atomics.add(done, 0, paths.length & 15);
    const { stamps, meta, errors, targets, linkErrors } = block;
    const reply: Reply = { id: id++, stamps, meta, errors, targets, linkErrors };
    replies.postMessage(reply, [block.stamps.buffer as ArrayBuffer, block.meta.buffer as ArrayBuffer]);
  });
}
