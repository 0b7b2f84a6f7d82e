import { lstatSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { privateDirProblem, writeFileAtomicSync } from '../../atomic.js';
import { readFileChecked } from '../../hash.js';
import { errnoOf } from '../../protocol/errors.js';
import { ManifestSchema, type PackageEntry, type Unread } from '../../protocol/manifest.js';
import { underRoot } from './dpkg.js';
import { OwnerIndex } from './owners.js';

/**
 * The packages section and the owned paths of a root, kept in the state folder
 * (`packages-cache.json`, 0600) with the stamp of the package databases they were
 * read from: while no database changed, the next collection takes them from here
 * instead of reading and parsing every package's file list again.
 *
 * The stamp is the device, inode, size, mtime and ctime (ns) of each database file
 * and folder below (or that it is absent): dpkg's status, `info/` and `updates/`
 * folders (dpkg replaces a file list by renaming a new one in, which moves the
 * folder's times) and diversions, rpm's database files, apk's `installed`. It is
 * taken before reading; the cache is written only when it is the same after
 * reading and none of its times is within a second of now (a change in the same
 * clock tick could otherwise go unseen). The file is read like any file drift does
 * not trust: no-follow, regular, bounded, every part checked; anything wrong and it
 * is not used (and written anew).
 */

/** The cache file in the state folder. */
export const PACKAGES_CACHE_FILE = 'packages-cache.json';
/** Largest cache file read. */
const CACHE_CAP_BYTES = 64 * 1024 * 1024;
const VERSION = 1;

/** The database files and folders whose stamp decides whether the cache holds. */
const STAMPED = [
  '/var/lib/dpkg/status', '/var/lib/dpkg/info', '/var/lib/dpkg/updates', '/var/lib/dpkg/diversions',
  '/var/lib/rpm', '/var/lib/rpm/rpmdb.sqlite', '/var/lib/rpm/Packages.db', '/var/lib/rpm/Packages',
  '/usr/lib/sysimage/rpm', '/usr/lib/sysimage/rpm/rpmdb.sqlite', '/usr/lib/sysimage/rpm/Packages.db', '/usr/lib/sysimage/rpm/Packages',
  '/lib/apk/db/installed',
] as const;

/** What the cache holds: the packages collector's result before symlinked-folder aliases are added. */
export interface CachedPackages {
  entries: Record<string, PackageEntry>;
  unread: Unread[];
  owners: OwnerIndex;
}

/** The stamp of a root's package databases, and the newest of their times (ns). */
export function databaseStamp(root: string): { stamp: string; newestNs: bigint } {
  const parts: string[] = [];
  let newestNs = 0n;
  for (const path of STAMPED) {
    try {
      const st = lstatSync(underRoot(root, path), { bigint: true });
      parts.push(`${st.dev}:${st.ino}:${st.mode}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`);
      if (st.mtimeNs > newestNs) newestNs = st.mtimeNs;
      if (st.ctimeNs > newestNs) newestNs = st.ctimeNs;
    } catch (err) {
      parts.push(`-${errnoOf(err)}`);
    }
  }
  return { stamp: parts.join('|'), newestNs };
}

const CacheFileSchema = z.object({
  version: z.literal(VERSION),
  root: z.string(),
  stamp: z.string(),
  entries: ManifestSchema.shape.packages.unwrap(),
  unread: ManifestSchema.shape.unread,
  // OwnerIndex.fromParts checks names, paths and codes member by member: no copy of
  // their 100,000-odd members here.
  names: z.unknown(),
  paths: z.unknown(),
  codes: z.unknown(),
});

/** The cached packages of `root` when the cache in `stateDir` was made at `stamp`, else null. */
export function readPackagesCache(stateDir: string, root: string, stamp: string): CachedPackages | null {
  // A cache another user could write could hide a change: it is not read.
  if (privateDirProblem(stateDir) !== null) return null;
  let data: unknown;
  try {
    data = JSON.parse(readFileChecked(join(stateDir, PACKAGES_CACHE_FILE), CACHE_CAP_BYTES, { checkPath: false }).toString('utf8'));
  } catch {
    return null;
  }
  const r = CacheFileSchema.safeParse(data);
  if (!r.success || r.data.root !== root || r.data.stamp !== stamp) return null;
  const owners = OwnerIndex.fromParts(r.data.paths, r.data.codes, r.data.names);
  return owners === null ? null : { entries: r.data.entries, unread: r.data.unread, owners };
}

/**
 * Keep `packages` for the next collection of `root`, when the databases' stamp is
 * still `before` and not too recent (see the module comment). A state folder that
 * cannot be written only costs the next collection its reading.
 */
export function writePackagesCache(stateDir: string, root: string, before: string, packages: CachedPackages, now: Date = new Date()): void {
  const after = databaseStamp(root);
  if (after.stamp !== before || after.newestNs >= BigInt(now.getTime() - 1000) * 1_000_000n) return;
  if (privateDirProblem(stateDir) !== null) return;
  const text = JSON.stringify({
    version: VERSION, root, stamp: before, entries: packages.entries, unread: packages.unread,
    names: packages.owners.names, paths: packages.owners.paths, codes: packages.owners.codeList(),
  });
  try {
    writeFileAtomicSync(join(stateDir, PACKAGES_CACHE_FILE), text, 0o600);
  } catch (err) {
    process.emitWarning(`drift: could not write the packages cache in ${stateDir} (${err instanceof Error ? err.message : errnoOf(err)}); the package lists will be read again next time`);
  }
}
