import type { PackageEntry, Unread } from '../../protocol/manifest.js';
import type { CollectContext, CollectResult, Collector, PathOwner } from '../contract.js';
import { addResolvedAliases } from './aliases.js';
import { collectApk } from './apk.js';
import { collectDpkg } from './dpkg.js';
import { collectRpm } from './rpm.js';

/**
 * The packages collector: dpkg, rpm and apk under `ctx.root`, merged. Keys are
 * `dpkg:name:arch`, `rpm:name:arch`, `apk:name:arch`. A manager without a
 * database under the root contributes nothing; a database that exists but cannot
 * be read contributes an `unread` entry with the reason. `owners` maps every
 * path a package manager lists (diversions applied) to its package; where two
 * managers claim a path, dpkg wins over rpm over apk. A path listed through a
 * symlinked folder (`/bin/false` with `/bin` → `usr/bin`) is owned under its
 * resolved path too (`/usr/bin/false`).
 */
/** The packages of several package databases as one section; a path's first owner wins. */
export function mergePackageParts(parts: readonly CollectResult<PackageEntry>[]): { entries: Record<string, PackageEntry>; unread: Unread[]; owners: Map<string, PathOwner> } {
  const entries: Record<string, PackageEntry> = {};
  const owners = new Map<string, PathOwner>();
  const unread: Unread[] = [];
  for (const part of parts) {
    Object.assign(entries, part.entries);
    unread.push(...part.unread);
    for (const [path, owner] of part.owners ?? []) if (!owners.has(path)) owners.set(path, owner);
  }
  return { entries, unread, owners };
}

export const packagesCollector: Collector<'packages'> = {
  section: 'packages',
  async collect(ctx: CollectContext): Promise<CollectResult<PackageEntry>> {
    const { entries, unread, owners } = mergePackageParts(await Promise.all([collectDpkg(ctx.root), collectRpm(ctx.root), collectApk(ctx.root)]));
    addResolvedAliases(ctx.root, owners);
    return { entries, unread, owners };
  },
};
