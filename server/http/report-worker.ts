/**
 * A report worker thread (server/http/pool.ts): decides the reports the main thread
 * hands it, one at a time, with the real compare engine, and asks the main thread
 * for what only the store knows (a host's pins, its stored sections).
 */
import { getHeapStatistics } from 'node:v8';
import { parentPort, workerData } from 'node:worker_threads';
import { compare } from '../../agent/engine/compare.js';
import type { RuleSet } from '../../agent/protocol/rules.js';
import type { Sections } from '../../agent/protocol/manifest.js';
import type { StoredPins } from '../store/pins.js';
import { ReportDecider, type PreparedSection } from './decide.js';
import { HEAP_PER_BODY_BYTE, type FromWorker, type ToWorker } from './pool.js';

const data = workerData as { driftReportWorker?: boolean; rules: RuleSet } | null;
const port = parentPort;
if (port && data?.driftReportWorker === true) {
  const decider = new ReportDecider({ rules: data.rules, compare, prepare: true });
  let answer: ((value: unknown) => void) | null = null;
  const ask = <T>(id: number, what: 'pins' | 'sections'): Promise<T> => new Promise<T>((resolve) => {
    answer = resolve as (value: unknown) => void;
    port.postMessage({ type: 'read', id, what } satisfies FromWorker);
  });
  port.on('message', (m: ToWorker) => {
    switch (m.type) {
      case 'baseline': decider.setBaseline(m.imageId, m.baseline); return;
      case 'read': { const a = answer; answer = null; a?.(m.value); return; }
      case 'job': {
        const { id, job } = m;
        // Structured clone hands a Buffer over as a plain Uint8Array.
        const bytes = Buffer.from(job.bytes.buffer, job.bytes.byteOffset, job.bytes.byteLength);
        const heap = getHeapStatistics();
        const free = heap.heap_size_limit - heap.used_heap_size;
        if (bytes.length * HEAP_PER_BODY_BYTE > free) {
          const mib = (n: number): string => `${Math.ceil(n / 1048576)} MiB`;
          port.postMessage({ type: 'done', id, decision: {
            kind: 'refused', reason: 'too-large', code: 'DRIFT_ERR_TOO_LARGE', status: 413,
            message: `report of host ${job.host.id} is ${mib(bytes.length)} of JSON: deciding it takes about ${HEAP_PER_BODY_BYTE}× that (${mib(bytes.length * HEAP_PER_BODY_BYTE)}) of heap, more than the ${mib(free)} a report worker has free (the collector's --report-heap): nothing of it was stored; send a smaller manifest (fewer watched files) or raise --report-heap`,
          } } satisfies FromWorker);
          return;
        }
        decider.decide({ ...job, bytes }, {
          pins: () => ask<StoredPins | null>(id, 'pins'),
          sections: () => ask<Partial<Sections>>(id, 'sections'),
        }).then((decision) => {
          const transfer: ArrayBuffer[] = [];
          if (decision.kind === 'save') {
            for (const p of Object.values(decision.report.prepared ?? {}) as PreparedSection[]) {
              for (const b of [p.packed, p.delta?.packed]) {
                if (b && b.byteOffset === 0 && b.byteLength === b.buffer.byteLength && !transfer.includes(b.buffer as ArrayBuffer)) transfer.push(b.buffer as ArrayBuffer);
              }
            }
          }
          port.postMessage({ type: 'done', id, decision } satisfies FromWorker, transfer);
        }, (err: unknown) => {
          port.postMessage({ type: 'failed', id, message: err instanceof Error ? err.message : String(err) } satisfies FromWorker);
        });
        return;
      }
      default: { const never: never = m; throw new Error(`unknown message ${JSON.stringify(never)}`); }
    }
  });
  port.postMessage({ type: 'ready' } satisfies FromWorker);
}
