import { computeDigests } from '../../../agent/manifest.js';
import { baselineDigest } from '../../../agent/baseline.js';
import { MANIFEST_SCHEMA, type Baseline, type FileEntry, type Manifest, type Sections } from '../../../agent/protocol/manifest.js';

/** Small, realistic sections of a Debian host: a few packages, files, processes and ports. */
export function imageSections(): Sections {
  const file = (sha: string, size: number, owner?: string): FileEntry => ({
    type: 'file', mode: '0644', uid: 0, gid: 0, size, sha256: sha.repeat(64).slice(0, 64), ...(owner ? { owner } : {}),
  });
  return {
    packages: {
      'dpkg:openssh-server:amd64': { version: '1:9.2p1-2+deb12u3', source: 'openssh' },
      'dpkg:openssl:amd64': { version: '3.0.15-1~deb12u1' },
      'dpkg:bash:amd64': { version: '5.2.15-2+b7' },
    },
    files: {
      '/etc/hosts': file('a', 186),
      '/etc/ssh/sshd_config': { ...file('b', 3223, 'dpkg:openssh-server'), conffile: true },
      '/usr/bin/bash': { ...file('c', 1265648, 'dpkg:bash'), mode: '0755' },
      '/usr/sbin': { type: 'dir', mode: '0755', uid: 0, gid: 0 },
    },
    processes: { '/usr/sbin/sshd|root': { count: 1, deleted: false } },
    ports: { 'tcp:0.0.0.0:22': { process: '/usr/sbin/sshd' } },
  };
}

/** A manifest of `sections` for a host; digests computed as the agent does. */
export function manifestOf(sections: Partial<Sections>, host: { hostname: string; machineId: string; imageId?: string; baselineDigest?: string }): Manifest {
  const image = host.imageId ? { id: host.imageId, ...(host.baselineDigest ? { baselineDigest: host.baselineDigest } : {}) } : undefined;
  return {
    schema: MANIFEST_SCHEMA,
    host: { hostname: host.hostname, machineId: host.machineId, ...(image ? { image } : {}) },
    collectedAt: '2026-01-01T00:00:00.000Z',
    agent: { version: 'test' },
    digests: computeDigests(sections),
    ...sections,
    unread: [],
  };
}

/** An unsigned baseline of an image, with its digest. */
export function baselineOf(imageId: string, sections: Partial<Sections> = imageSections()): { baseline: Baseline; digest: string } {
  const baseline: Baseline = manifestOf(sections, { hostname: 'bake', machineId: 'bake', imageId });
  return { baseline, digest: baselineDigest(baseline) };
}

/** The body of POST /v1/reports carrying a full manifest. */
export function fullReport(seq: number, m: Manifest, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { schema: 'drift.report-request/v1', seq, collectedAt: m.collectedAt, host: m.host, digests: m.digests, manifest: m, ...extra };
}

/** The body of POST /v1/reports carrying digests only. */
export function digestReport(seq: number, m: Manifest, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { schema: 'drift.report-request/v1', seq, collectedAt: m.collectedAt, host: m.host, digests: m.digests, ...extra };
}
