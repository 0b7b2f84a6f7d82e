import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { RuleSet } from '../../agent/protocol/rules.js';
import type { Sections } from '../../agent/protocol/manifest.js';
import type { StoredBaseline } from '../store/store.js';
import type { StoredPins } from '../store/pins.js';
import type { DecideReads, Decision, ReportJob } from './decide.js';
import { HttpError } from './errors.js';

/**
 * The report workers: a bounded pool of worker threads that parse, check and compare
 * authenticated reports (server/http/decide.ts), so that one large report never
 * holds the event loop that answers every other host, the admin API and /healthz.
 * The store stays on the main thread: a worker asks it for a host's pins or stored
 * sections through messages, and hands back what to store.
 */
export interface PoolOptions {
  /** Worker threads. */
  size: number;
  /** Reports waiting for a worker beyond those being decided; past it, 503 with Retry-After. */
  queue: number;
  /** Wall-clock bound of one report in a worker, ms; past it the worker is replaced and the report refused. */
  timeoutMs: number;
  /** Old-generation heap bound of each worker (MB), `resourceLimits.maxOldGenerationSizeMb`. */
  heapMb: number;
  rules: RuleSet;
}

/** Worker threads when not configured: one or two, never more than the cores. */
export function defaultWorkers(): number {
  return Math.max(1, Math.min(2, availableParallelism()));
}

export const POOL_DEFAULTS = Object.freeze({
  /** Reports waiting per worker. */
  queuePerWorker: 32,
  /** A 200,000-file report (the protocol's bound) takes ~10 s of one idle core. */
  timeoutMs: 120_000,
  /** The 200,000-file report peaks near 500 MB of heap. */
  heapMb: 1024,
  /**
   * Young-generation bound of each worker (MB), `resourceLimits.maxYoungGenerationSizeMb`.
   * A report's parse allocates fast, and V8 grows the young generation to its bound
   * and keeps it: at 64 MB each worker held ~60 MB more RSS after a 3,000-file report
   * than at 16 MB, for no measurable gain (what a report parses lives on into the
   * old generation anyway).
   */
  youngMb: 16,
});

/**
 * Heap bytes a report worker may need per byte of report JSON: a 200,000-file report
 * (31 MB of JSON) peaked at 580 MB of heap parsed, checked, compared and packed (19×).
 * A worker refuses, before parsing, a body whose estimate exceeds the heap it has
 * free: `resourceLimits` alone is best effort in Node.js (one large allocation past the
 * limit, e.g. JSON.parse growing an object of a million keys, aborts the whole process,
 * nodejs/node#47224), so the estimate keeps reports well below it.
 */
export const HEAP_PER_BODY_BYTE = 20;

/** Seconds a client told 503 (pool full) waits before it retries. */
export const POOL_RETRY_AFTER_S = 5;

/** Messages main → worker. */
export type ToWorker =
  | { type: 'baseline'; imageId: string; baseline: StoredBaseline | null }
  | { type: 'job'; id: number; job: ReportJob }
  | { type: 'read'; id: number; value: StoredPins | null | Partial<Sections> };

/** Messages worker → main. */
export type FromWorker =
  | { type: 'done'; id: number; decision: Decision }
  | { type: 'failed'; id: number; message: string }
  | { type: 'read'; id: number; what: 'pins' | 'sections' }
  | { type: 'ready' };

interface Pending {
  job: ReportJob;
  reads: DecideReads;
  resolve: (d: Decision) => void;
  reject: (err: unknown) => void;
}

interface Slot {
  worker: Worker;
  /** Loaded and listening: a report's time bound starts when it reaches a ready worker. */
  ready: boolean;
  busy: Pending | null;
  timer: NodeJS.Timeout | null;
}

/** The report worker pool; `run` answers a Decision or rejects with an HttpError (5xx, 503 when full). */
export class ReportPool {
  private readonly slots: Slot[] = [];
  private readonly waiting: Pending[] = [];
  private readonly baselines = new Map<string, StoredBaseline | null>();
  private closed = false;
  /** Workers replaced after dying or timing out. */
  replaced = 0;
  /** Reports refused because the queue was full. */
  rejectedFull = 0;

  /**
   * Workers start when reports need them, not with the collector: one per report
   * waiting beyond the idle (or starting) workers, up to `size`. Clean and small reports
   * are decided on the main thread, so a fleet that rarely drifts runs one worker, or none.
   */
  constructor(private readonly opts: PoolOptions, private readonly log: (msg: string, fields: Record<string, unknown>) => void = () => {}) {}

  /** Worker threads running (started, or starting). */
  workers(): number {
    return this.slots.length;
  }

  /** Reports being decided or waiting. */
  inFlight(): number {
    return this.waiting.length + this.deciding();
  }

  /** Reports being decided by a worker now. */
  deciding(): number {
    return this.slots.filter((s) => s.busy).length;
  }

  /** Give every worker (and those started later) the baseline of an image, or forget it (null). */
  setBaseline(imageId: string, baseline: StoredBaseline | null): void {
    this.baselines.set(imageId, baseline);
    for (const s of this.slots) s.worker.postMessage({ type: 'baseline', imageId, baseline } satisfies ToWorker);
  }

  /** Decide a report in a worker. The job's bytes are moved to the worker (not copied). */
  run(job: ReportJob, reads: DecideReads): Promise<Decision> {
    if (this.closed) return Promise.reject(new HttpError('DRIFT_ERR_IO', 'the collector is stopping; send the report again later', 503));
    if (this.waiting.length >= this.opts.queue) {
      this.rejectedFull++;
      return Promise.reject(new PoolFull(`the collector is deciding ${this.inFlight()} reports (its --report-workers ${this.opts.size} and queue of ${this.opts.queue} are full); send the report again after ${POOL_RETRY_AFTER_S} s`));
    }
    return new Promise<Decision>((resolve, reject) => {
      this.waiting.push({ job, reads, resolve, reject });
      this.feed();
    });
  }

  /** Stop every worker; waiting and running reports are refused (503: send again). */
  async close(): Promise<void> {
    this.closed = true;
    const err = new HttpError('DRIFT_ERR_IO', 'the collector is stopping; send the report again later', 503);
    for (const p of this.waiting.splice(0)) p.reject(err);
    await Promise.all(this.slots.map(async (s) => {
      if (s.timer) clearTimeout(s.timer);
      s.busy?.reject(err);
      s.busy = null;
      await s.worker.terminate();
    }));
  }

  private spawn(): Slot {
    const worker = new Worker(new URL('./report-worker.js', import.meta.url), {
      workerData: { driftReportWorker: true, rules: this.opts.rules },
      resourceLimits: { maxOldGenerationSizeMb: this.opts.heapMb, maxYoungGenerationSizeMb: POOL_DEFAULTS.youngMb },
    });
    const slot: Slot = { worker, ready: false, busy: null, timer: null };
    for (const [imageId, baseline] of this.baselines) worker.postMessage({ type: 'baseline', imageId, baseline } satisfies ToWorker);
    worker.on('message', (m: FromWorker) => this.onMessage(slot, m));
    worker.on('error', (err) => this.lost(slot, err));
    worker.on('exit', (code) => { if (!this.closed) this.lost(slot, new Error(`exited with code ${code}`)); });
    worker.unref();
    return slot;
  }

  private feed(): void {
    // Start workers for the reports that no idle or starting worker will take.
    const free = this.slots.filter((s) => !s.busy).length;
    for (let i = free; i < this.waiting.length && this.slots.length < this.opts.size && !this.closed; i++) this.slots.push(this.spawn());
    for (const slot of this.slots) {
      if (slot.busy || !slot.ready) continue;
      const next = this.waiting.shift();
      if (!next) return;
      slot.busy = next;
      const id = ++this.seq;
      slot.timer = setTimeout(() => this.timedOut(slot), this.opts.timeoutMs);
      slot.timer.unref();
      const { bytes } = next.job;
      // Move the body when it owns its memory; a slice of a shared buffer is copied.
      const own = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && !(bytes.buffer instanceof SharedArrayBuffer);
      slot.worker.postMessage({ type: 'job', id, job: next.job } satisfies ToWorker, own ? [bytes.buffer as ArrayBuffer] : []);
      this.ids.set(slot, id);
    }
  }

  private seq = 0;
  private readonly ids = new WeakMap<Slot, number>();

  private onMessage(slot: Slot, m: FromWorker): void {
    if (m.type === 'ready') { slot.ready = true; this.feed(); return; }
    const p = slot.busy;
    if (!p || this.ids.get(slot) !== m.id) return;
    if (m.type === 'read') {
      const answer = m.what === 'pins' ? p.reads.pins() : p.reads.sections();
      answer.then(
        (value) => slot.worker.postMessage({ type: 'read', id: m.id, value } satisfies ToWorker),
        (err: unknown) => { this.finish(slot); p.reject(err); },
      );
      return;
    }
    this.finish(slot);
    if (m.type === 'done') p.resolve(m.decision);
    else p.reject(new HttpError('DRIFT_ERR_IO', `the collector failed to decide the report (${m.message}); see its log`, 500));
  }

  private finish(slot: Slot): void {
    if (slot.timer) clearTimeout(slot.timer);
    slot.timer = null;
    slot.busy = null;
    queueMicrotask(() => this.feed());
  }

  private timedOut(slot: Slot): void {
    const p = slot.busy;
    this.replace(slot);
    p?.reject(new HttpError('DRIFT_ERR_TOO_LARGE', `report of host ${p.job.host.id} took more than ${this.opts.timeoutMs / 1000} s to decide (the collector's --report-timeout): it was dropped and nothing of it stored; send a smaller manifest (fewer watched files) or raise --report-timeout`, 413));
  }

  /** A worker died (heap bound, crash): replace it; its report is refused, the others go on. */
  private lost(slot: Slot, err: unknown): void {
    if (!this.slots.includes(slot)) return;
    const p = slot.busy;
    const oom = (err as { code?: string }).code === 'ERR_WORKER_OUT_OF_MEMORY';
    this.log('report worker lost', { host: p?.job.host.id ?? null, error: (err as Error).message, oom });
    this.replace(slot);
    if (!p) return;
    p.reject(oom
      ? new HttpError('DRIFT_ERR_TOO_LARGE', `report of host ${p.job.host.id} needed more than the ${this.opts.heapMb} MB heap a report may take (the collector's --report-heap): it was dropped and nothing of it stored; send a smaller manifest (fewer watched files) or raise --report-heap`, 413)
      : new HttpError('DRIFT_ERR_IO', `the worker deciding the report of host ${p.job.host.id} stopped (${(err as Error).message}); nothing of it was stored: send it again`, 503));
  }

  private replace(slot: Slot): void {
    const i = this.slots.indexOf(slot);
    if (i < 0) return;
    if (slot.timer) clearTimeout(slot.timer);
    slot.busy = null;
    slot.worker.removeAllListeners('exit');
    slot.worker.on('exit', () => {});
    void slot.worker.terminate();
    this.replaced++;
    // Its successor starts when a report needs it (feed).
    this.slots.splice(i, 1);
    if (!this.closed) queueMicrotask(() => this.feed());
  }
}

/** The pool's queue is full: 503 with Retry-After. */
export class PoolFull extends HttpError {
  readonly retryAfter = POOL_RETRY_AFTER_S;
  constructor(message: string) { super('DRIFT_ERR_IO', message, 503); }
}
