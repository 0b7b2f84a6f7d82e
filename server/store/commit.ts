import type { SaveReport, Store } from './store.js';

interface Pending {
  report: SaveReport;
  resolve: () => void;
  reject: (err: Error) => void;
}

/**
 * Group commit: the writes of reports that arrive together are committed in one
 * transaction (one WAL append instead of one per report), and each caller's promise
 * settles only after that commit returned, so a report is still acknowledged only
 * once it is stored. A batch is written at the end of the event-loop turn in which
 * its first write was queued (`maxDelayMs` 0), after `maxDelayMs`, or as soon as it
 * holds `maxItems` writes. Each write runs in its own savepoint: one that fails
 * rejects its own promise and leaves the others stored.
 *
 * Reads that decide a write (a host's last seq and state) must not overlap a queued
 * write of the same host: callers wait for `pending(host)` to be null first.
 */
export class GroupCommit {
  private queue: Pending[] = [];
  private hosts = new Map<number, Promise<void>>();
  private batchDone: Promise<void> | null = null;
  private settleBatch: (() => void) | null = null;
  private scheduled: NodeJS.Immediate | NodeJS.Timeout | null = null;

  constructor(private readonly store: Store, private readonly opts: { maxItems?: number; maxDelayMs?: number } = {}) {}

  /** Queue one report's writes; resolves after the transaction holding them committed. */
  save(report: SaveReport): Promise<void> {
    const done = new Promise<void>((resolve, reject) => {
      this.queue.push({ report, resolve, reject });
    });
    if (!this.batchDone) this.batchDone = new Promise<void>((resolve) => { this.settleBatch = resolve; });
    this.hosts.set(report.host.rowid, this.batchDone);
    if (this.queue.length >= (this.opts.maxItems ?? 512)) this.flush();
    else if (!this.scheduled) {
      const delay = this.opts.maxDelayMs ?? 0;
      this.scheduled = delay > 0 ? setTimeout(() => this.flush(), delay) : setImmediate(() => this.flush());
    }
    return done;
  }

  /** Settles when the queued write of host `rowid` is committed; null when none is queued. */
  pending(rowid: number): Promise<void> | null {
    return this.hosts.get(rowid) ?? null;
  }

  /** Commit what is queued now (before a write that must come after it, and on stop). */
  flush(): void {
    if (this.scheduled) {
      clearTimeout(this.scheduled as NodeJS.Timeout);
      clearImmediate(this.scheduled as NodeJS.Immediate);
      this.scheduled = null;
    }
    const batch = this.queue;
    const settle = this.settleBatch;
    this.queue = [];
    this.hosts = new Map();
    this.batchDone = null;
    this.settleBatch = null;
    if (batch.length === 0) { settle?.(); return; }
    let results: (Error | null)[];
    try {
      results = this.store.saveReports(batch.map((p) => p.report));
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err));
      for (const p of batch) p.reject(e);
      settle?.();
      return;
    }
    batch.forEach((p, i) => {
      const e = results[i];
      if (e) p.reject(e);
      else p.resolve();
    });
    settle?.();
  }
}
