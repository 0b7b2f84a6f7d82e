import { computeDigests } from './protocol/digests.js';
import { compareUnread } from './protocol/unread.js';
import { MANIFEST_SCHEMA, type HostInfo, type Manifest, type Sections, type Unread } from './protocol/manifest.js';
import type { CollectContext } from './collectors/contract.js';
import { filesCollector } from './collectors/files.js';
import { packagesCollector } from './collectors/packages/index.js';
import { processesCollector } from './collectors/processes.js';
import { portsCollector } from './collectors/ports.js';
import { VERSION } from './version.js';

export { computeDigests };

/**
 * Collect every section of a root into a manifest. Processes and ports are read
 * only when a /proc is given. Files get their owning package from the packages
 * collector. Unread paths of all collectors are kept, sorted, never dropped.
 */
export async function collectManifest(ctx: CollectContext, host: HostInfo, now: Date = new Date()): Promise<Manifest> {
  const [packages, files, processes, ports] = await Promise.all([
    packagesCollector.collect(ctx),
    filesCollector.collect(ctx),
    ctx.proc ? processesCollector.collect(ctx) : null,
    ctx.proc ? portsCollector.collect(ctx) : null,
  ]);
  if (packages.owners) {
    for (const [path, entry] of Object.entries(files.entries)) {
      const owner = packages.owners.get(path);
      if (!owner) continue;
      entry.owner = owner.owner;
      if (owner.conffile) entry.conffile = true;
    }
  }
  const sections: Partial<Sections> = { packages: packages.entries, files: files.entries };
  if (processes) sections.processes = processes.entries;
  if (ports) sections.ports = ports.entries;
  const unread: Unread[] = [packages, files, processes, ports]
    .flatMap((r) => (r ? r.unread : []))
    .sort(compareUnread);
  return {
    schema: MANIFEST_SCHEMA,
    host,
    collectedAt: now.toISOString(),
    agent: { version: VERSION },
    digests: computeDigests(sections),
    ...sections,
    unread,
  };
}
