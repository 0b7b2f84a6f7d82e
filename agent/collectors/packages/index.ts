import type { PackageEntry, Unread } from '../../protocol/manifest.js';
import type { CollectContext, CollectResult, Collector, PackageDbResult, PathOwner } from '../contract.js';
import { resolvedAliases } from './aliases.js';
import { databaseStamp, readPackagesCache, writePackagesCache } from './cache.js';
import { OwnerIndex } from './owners.js';
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
 * resolved path too (`/usr/bin/false`). `owners` is an OwnerIndex (sorted, compact).
 * With a state folder, what the databases give is cached there while they do not
 * change (see cache.ts).
 */
/** The packages of several package databases as one section; a path's first owner wins. */
export function mergePackageParts(parts: readonly PackageDbResult[]): { entries: Record<string, PackageEntry>; unread: Unread[]; owners: Map<string, PathOwner> } {
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

/** A packages collector; `clock` (default: the system clock) is when the collection starts, for the cache's freshness rule. */
export function createPackagesCollector(options: { clock?: () => Date } = {}): Collector<'packages'> {
  return {
    section: 'packages',
    async collect(ctx: CollectContext): Promise<CollectResult<PackageEntry>> {
      const now = options.clock ? options.clock() : new Date();
      // The stamp is taken before reading, so that a change made while reading is seen next time.
      const stamp = ctx.stateDir !== null ? databaseStamp(ctx.root).stamp : null;
      let read = ctx.stateDir !== null && stamp !== null ? readPackagesCache(ctx.stateDir, ctx.root, stamp) : null;
      if (read === null) {
        const { entries, unread, owners } = mergePackageParts(await Promise.all([collectDpkg(ctx.root), collectRpm(ctx.root), collectApk(ctx.root)]));
        read = { entries, unread, owners: OwnerIndex.fromMap(owners) };
        if (ctx.stateDir !== null && stamp !== null) writePackagesCache(ctx.stateDir, ctx.root, stamp, read, now);
      }
      // Symlinked folders are resolved at every collection: they are not part of the databases' stamp.
      const owners = read.owners.withAdded(resolvedAliases(ctx.root, read.owners.entries()));
      return { entries: read.entries, unread: read.unread, owners };
    },
  };
}

/** The packages collector of the agent and the scans (its cache in ctx.stateDir, when given). */
export const packagesCollector: Collector<'packages'> = createPackagesCollector();
