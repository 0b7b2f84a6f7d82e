import { errnoOf } from '../../protocol/errors.js';
import type { PackageEntry } from '../../protocol/manifest.js';
import type { PackageDbResult, PathOwner } from '../contract.js';
import { localDbReader, type DbReader } from './dpkg.js';
import { parseApkInstalled } from './apk-parse.js';

/** Where apk keeps its installed database, inside the root. */
export const APK_DB = '/lib/apk/db/installed';

/**
 * Collect installed apk packages (keys `apk:name:arch`, source = origin) and
 * path ownership from `lib/apk/db/installed` (F: folders and R: files; apk has
 * no conffile notion, so `conffile` is false). No database → empty result; an
 * unreadable one → one `unread` entry.
 */
export async function collectApk(root: string, read: DbReader = localDbReader(root)): Promise<PackageDbResult> {
  const entries: Record<string, PackageEntry> = {};
  const owners = new Map<string, PathOwner>();
  let text: string | null;
  try {
    text = await read.readText(APK_DB);
  } catch (err) {
    return { entries, unread: [{ path: APK_DB, reason: errnoOf(err) }], owners };
  }
  if (text === null) return { entries, unread: [], owners };
  const pkgs = parseApkInstalled(text).sort((a, b) => (`${a.name}:${a.arch}` < `${b.name}:${b.arch}` ? -1 : 1));
  for (const p of pkgs) {
    const entry: PackageEntry = { version: p.version };
    if (p.origin !== undefined) entry.source = p.origin;
    entries[`apk:${p.name}:${p.arch}`] = entry;
    for (const path of [...p.dirs, ...p.files]) if (!owners.has(path)) owners.set(path, { owner: `apk:${p.name}`, conffile: false });
  }
  return { entries, unread: [], owners };
}
