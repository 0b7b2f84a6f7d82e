/**
 * A log destination for fastify's pino that batches lines written within one turn
 * of the event loop into one write to stdout. At thousands of requests a second,
 * one write per line costs more than the request itself; a crash loses at most the
 * lines of the current turn. `flush()` writes what is pending (call it on stop).
 */
export class BatchedStdout {
  private lines: string[] = [];
  private scheduled = false;

  constructor(private readonly out: { write(s: string): unknown } = process.stdout) {}

  write(line: string): void {
    this.lines.push(line);
    if (this.lines.length >= 512) this.flush();
    else if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  flush(): void {
    this.scheduled = false;
    if (this.lines.length === 0) return;
    const batch = this.lines.join('');
    this.lines = [];
    this.out.write(batch);
  }
}
