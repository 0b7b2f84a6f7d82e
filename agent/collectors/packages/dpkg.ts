import { readdir } from 'node:fs/promises';
import { HashError, readFileChecked } from '../../hash.js';
import { compareUnread } from '../../protocol/unread.js';
import { mapLimit } from '../../limit.js';
import { errnoOf } from '../../protocol/errors.js';
import type { PackageEntry, Unread } from '../../protocol/manifest.js';
import type { PackageDbResult, PathOwner } from '../contract.js';
import {
  divertedPath,
  dpkgInfoName,
  isDpkgInstalled,
  parseDiversions,
  parseDpkgList,
  parseDpkgStatus,
  type DpkgDiversion,
  type DpkgRecord,
} from './dpkg-parse.js';

/** `root` + an absolute database path, without the lexical `..` folding of path.join (the kernel resolves it). */
export function underRoot(root: string, path: string): string {
  const base = root.replace(/\/+$/, '');
  return `${base}${path}`;
}

/** Where dpkg keeps its database under a root. */
export function dpkgAdminDir(root: string): string {
  return underRoot(root, '/var/lib/dpkg');
}

/** The dpkg database of a root, as read from disk; null fields mean "absent". */
export interface DpkgDb {
  /** Status records with the `updates/` journal applied, in status-file order. */
  records: DpkgRecord[];
  /** Diversions keyed by diverted path. */
  diversions: Map<string, DpkgDiversion>;
  /** Problems met while reading (a journal entry or the diversions file that could not be read). */
  unread: Unread[];
}

/**
 * The most a package database file may hold (dpkg's status file of a large host is
 * tens of MB): a file the host grew past it is reported unread, not read into memory.
 */
export const PACKAGE_DB_MAX_BYTES = 256 * 1024 * 1024;

/**
 * Read a package database file as text, mapping "does not exist" to null and letting
 * other errors through (as an Error whose `code` is the errno code or a REASONS text).
 * The file is opened without following a symlink and without blocking, must be a
 * regular file, and is read only up to its size and PACKAGE_DB_MAX_BYTES: a FIFO or
 * device planted in the database cannot hang or flood the scan.
 */
export async function readIfExists(path: string): Promise<string | null> {
  try {
    return readFileChecked(path, PACKAGE_DB_MAX_BYTES, { checkPath: false }).toString('utf8');
  } catch (err) {
    const code = err instanceof HashError ? err.code : errnoOf(err);
    if (code === 'ENOENT') return null;
    throw Object.assign(new Error(`${path}: ${code}`), { code });
  }
}

/**
 * How the package collectors read a root's database: the local file system, or a
 * remote host's through an SSH session (agentless scans). Paths are absolute inside
 * the root. `readText` is null when the file does not exist and throws an Error whose
 * `code` says why otherwise (as readIfExists); `list` gives a folder's names, throwing
 * an Error with the errno `code` (ENOENT when absent).
 */
export interface DbReader {
  readText(path: string): Promise<string | null>;
  list(path: string): Promise<string[]>;
}

/** The reader of a local root (readIfExists and readdir under it). */
export function localDbReader(root: string): DbReader {
  return {
    readText: (path) => readIfExists(underRoot(root, path)),
    list: (path) => readdir(underRoot(root, path)),
  };
}

/**
 * Read a root's dpkg database: `status`, the `updates/` journal and `diversions`.
 * Returns null when the root has no `var/lib/dpkg/status` (dpkg absent); throws
 * the underlying error when the status file exists but cannot be read.
 */
export async function readDpkgDb(root: string, read: DbReader = localDbReader(root)): Promise<DpkgDb | null> {
  const admin = '/var/lib/dpkg';
  const status = await read.readText(`${admin}/status`);
  if (status === null) return null;
  const unread: Unread[] = [];
  const updates: string[] = [];
  try {
    const names = (await read.list(`${admin}/updates`)).filter((n) => /^\d+$/.test(n)).sort((a, b) => Number(a) - Number(b));
    for (const n of names) updates.push((await read.readText(`${admin}/updates/${n}`)) ?? '');
  } catch (err) {
    if (errnoOf(err) !== 'ENOENT') unread.push({ path: '/var/lib/dpkg/updates', reason: errnoOf(err) });
  }
  const diversions = new Map<string, DpkgDiversion>();
  try {
    for (const d of parseDiversions((await read.readText(`${admin}/diversions`)) ?? '')) diversions.set(d.from, d);
  } catch (err) {
    unread.push({ path: '/var/lib/dpkg/diversions', reason: errnoOf(err) });
  }
  return { records: parseDpkgStatus(status, updates), diversions, unread };
}

/**
 * Read a package's `info/<name>.<ext>` file; null when it does not exist.
 * Other errors are thrown.
 */
export async function readInfoFile(root: string, rec: DpkgRecord, ext: string, read: DbReader = localDbReader(root)): Promise<string | null> {
  return read.readText(`/var/lib/dpkg/info/${dpkgInfoName(rec)}.${ext}`);
}

/**
 * Collect the installed dpkg packages of a root (keys `dpkg:name:arch`) and who
 * owns each path (`info/*.list`, with diversions applied the way dpkg applies
 * them, and the `Conffiles` field). Where several packages list a path (shared
 * folders), the first in key order owns it. No database → empty result; an
 * unreadable status file → one `unread` entry; an unreadable or missing files
 * list of an installed package → an `unread` entry for that list.
 */
export async function collectDpkg(root: string, read: DbReader = localDbReader(root)): Promise<PackageDbResult> {
  const entries: Record<string, PackageEntry> = {};
  const owners = new Map<string, PathOwner>();
  let db: DpkgDb | null;
  try {
    db = await readDpkgDb(root, read);
  } catch (err) {
    return { entries, unread: [{ path: '/var/lib/dpkg/status', reason: errnoOf(err) }], owners };
  }
  if (!db) return { entries, unread: [], owners };
  const unread = [...db.unread];
  const installed = db.records.filter(isDpkgInstalled).sort((a, b) => {
    const ka = `${a.package}:${a.arch}`;
    const kb = `${b.package}:${b.arch}`;
    return ka < kb ? -1 : ka > kb ? 1 : 0;
  });
  for (const rec of installed) entries[`dpkg:${rec.package}:${rec.arch}`] = { version: rec.version, source: rec.source };

  const lists = await mapLimit(installed, 32, async (rec) => {
    try {
      const text = await readInfoFile(root, rec, 'list', read);
      if (text === null) unread.push({ path: `/var/lib/dpkg/info/${dpkgInfoName(rec)}.list`, reason: 'ENOENT' });
      return text;
    } catch (err) {
      unread.push({ path: `/var/lib/dpkg/info/${dpkgInfoName(rec)}.list`, reason: errnoOf(err) });
      return null;
    }
  });
  installed.forEach((rec, i) => {
    const owner = `dpkg:${rec.package}`;
    // One owner object per package and kind, shared by its paths.
    const plain: PathOwner = { owner, conffile: false };
    const conffile: PathOwner = { owner, conffile: true };
    const conffiles = new Set(rec.conffiles.map((c) => c.path));
    for (const path of parseDpkgList(lists[i] ?? '')) {
      const at = divertedPath(path, rec.package, db.diversions);
      if (!owners.has(at)) owners.set(at, conffiles.has(path) ? conffile : plain);
    }
  });
  unread.sort(compareUnread);
  return { entries, unread, owners };
}
