/**
 * Failed attempts per client address in a fixed window: once an address has failed
 * `max` times within `windowMs`, it is refused until its window ends. Enrollment
 * uses it, so guessing the enrollment secret or trying host ids costs a window per
 * `max` tries. The table holds at most `maxKeys` addresses (the oldest window is
 * forgotten first), so a flood of addresses costs bounded memory.
 */
export class FailureLimiter {
  private readonly windows = new Map<string, { start: number; failures: number }>();

  constructor(private readonly opts: { max: number; windowMs: number; maxKeys: number }) {}

  /** Milliseconds until `key` may try again, or 0 when it may now. */
  retryAfter(key: string, now: number): number {
    const w = this.windows.get(key);
    if (!w) return 0;
    if (now - w.start >= this.opts.windowMs) {
      this.windows.delete(key);
      return 0;
    }
    return w.failures >= this.opts.max ? w.start + this.opts.windowMs - now : 0;
  }

  /** Count one failure of `key`. */
  fail(key: string, now: number): void {
    let w = this.windows.get(key);
    if (!w || now - w.start >= this.opts.windowMs) {
      this.windows.delete(key);
      if (this.windows.size >= this.opts.maxKeys) {
        const oldest = this.windows.keys().next();
        if (!oldest.done) this.windows.delete(oldest.value);
      }
      w = { start: now, failures: 0 };
      this.windows.set(key, w);
    }
    w.failures++;
  }
}
