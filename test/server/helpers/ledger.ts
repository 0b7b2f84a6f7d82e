import { createHash } from 'node:crypto';
import type { Finding } from '../../../agent/protocol/finding.js';
import type { Store } from '../../../server/store/store.js';
import { baselineOf } from './fleet.js';

/**
 * A fleet written straight into a real store, as accepted reports would leave it:
 * a signed-looking baseline per image, enrolled hosts, and reports whose findings
 * the test chooses. Each distinct drift is a distinct state, as it is for real agents.
 */
export class FleetBuilder {
  private readonly seqs = new Map<string, number>();
  constructor(readonly store: Store) {}

  image(imageId: string, keyId: string | null = 'bake-key'): void {
    const { baseline, digest } = baselineOf(imageId);
    this.store.putBaseline({ imageId, digest, keyId, baseline, now: 0 });
  }

  enroll(id: string, imageId: string, now: number, instanceId?: string): void {
    this.store.enroll({ id, hostname: `host-${id}`, imageId, keyHash: createHash('sha256').update(id).digest().subarray(0, 16), now });
    if (instanceId !== undefined) this.report(id, now, [], instanceId);
  }

  /** One accepted report of `id` at `now` with these findings (keys of files changed). */
  report(id: string, now: number, drift: string[], instanceId?: string): void {
    const host = this.store.hostById(id);
    if (!host) throw new Error(`test fleet: no host ${id}`);
    const seq = (this.seqs.get(id) ?? 0) + 1;
    this.seqs.set(id, seq);
    const label = drift.length === 0 ? 'clean' : `${id}:${drift.join(',')}`;
    const root = `sha256:${createHash('sha256').update(label).digest('hex')}`;
    const baseline = host.imageId ? this.store.getBaseline(host.imageId) ?? null : null;
    this.store.saveReport({
      host, seq, now, hostname: host.hostname, imageId: host.imageId, role: host.role, digests: { root } as never, kind: 'digests',
      baseline, findings: drift.map(fileFinding), machineId: id, ...(instanceId !== undefined ? { instanceId } : {}),
    });
  }
}

export function fileFinding(path: string): Finding {
  return {
    kind: 'file', key: path, change: 'modified', changed: ['sha256'], before: null, after: null,
    severity: 'critical', action: 'replace', rule: 'test:1', explanation: `${path} edited`,
  };
}
