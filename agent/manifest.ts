import { computeDigests } from './protocol/digests.js';
import { compareUnread } from './protocol/unread.js';
import { MANIFEST_SCHEMA, type FileEntry, type HostInfo, type Manifest, type SectionName, type Sections, type Unread } from './protocol/manifest.js';
import type { CollectContext, Collector } from './collectors/contract.js';
import { filesCollector } from './collectors/files.js';
import { packagesCollector } from './collectors/packages/index.js';
import { processesCollector } from './collectors/processes.js';
import { portsCollector } from './collectors/ports.js';
import { VERSION } from './version.js';

export { computeDigests };

/** Where the sections come from: the local collectors, or those of an agentless scan reading a remote host. */
export interface ManifestSources {
  packages: Collector<'packages'>;
  files: Collector<'files'>;
  /** Default: the local processes collector (ctx.proc). */
  processes?: Collector<'processes'>;
  /** Default: the local ports collector (ctx.proc). */
  ports?: Collector<'ports'>;
}

/**
 * Collect every section of a root into a manifest. Processes and ports are read
 * only when a /proc is given. Files get their owning package from the packages
 * collector. Unread paths of all collectors are kept, sorted, never dropped.
 */
export async function collectManifest(ctx: CollectContext, host: HostInfo, now: Date = new Date(),
  sources: ManifestSources = { packages: packagesCollector, files: filesCollector }): Promise<Manifest> {
  const wanted = (s: SectionName): boolean => ctx.sections === undefined || ctx.sections.includes(s);
  // The packages collector also names each file's owner: it runs for files alone too.
  // The files collector runs alone, after the others: its walk, stat cache and hash
  // workers are the largest transient memory of a scan, and the package lists, /proc
  // and the sockets are read before it rather than beside it, so their transient
  // memory (list texts, /proc reads) is gone when it starts.
  const [packagesRead, processes, ports] = await Promise.all([
    wanted('packages') || wanted('files') ? sources.packages.collect(ctx) : null,
    ctx.proc && wanted('processes') ? (sources.processes ?? processesCollector).collect(ctx) : null,
    ctx.proc && wanted('ports') ? (sources.ports ?? portsCollector).collect(ctx) : null,
  ]);
  const packages = packagesRead && wanted('packages') ? packagesRead : null;
  let owners = packagesRead?.owners ?? null;
  if (packagesRead) delete packagesRead.owners;
  const files = wanted('files') ? await sources.files.collect(ctx) : null;
  if (owners && files) {
    for (const path in files.entries) {
      const owner = owners.get(path);
      if (!owner) continue;
      const entry = files.entries[path] as FileEntry;
      entry.owner = owner.owner;
      if (owner.conffile) entry.conffile = true;
    }
  }
  // The owners map (a path per packaged file) is not needed for the digests: let it go now.
  owners = null;
  const sections: Partial<Sections> = {};
  if (packages) sections.packages = packages.entries;
  if (files) sections.files = files.entries;
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
