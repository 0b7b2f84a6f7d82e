import { createHash } from 'node:crypto';
import { closeSync, read, type Stats } from 'node:fs';
import { lstat, stat } from 'node:fs/promises';
import { promisify } from 'node:util';
import { HashError, openChecked, REASONS } from '../hash.js';
import { DriftError, errnoOf } from '../protocol/errors.js';
import { dpkgInfoName, parseDpkgList, parseMd5sums, type DpkgRecord } from '../collectors/packages/dpkg-parse.js';
import { dpkgAdminDir, readDpkgDb, readInfoFile, underRoot } from '../collectors/packages/dpkg.js';
import { mapLimit } from '../limit.js';
import { planDpkgVerify, type PackageFiles, type VerifyCheck } from './dpkg-plan.js';

/**
 * One package-owned path that no longer matches what dpkg installed. This is
 * the JSON shape `drift verify-packages --format json` prints (an array of these).
 */
export interface VerifyProblem {
  /** Absolute path as seen inside the root (diversions applied), as dpkg prints it. */
  path: string;
  /** `missing`: lstat failed; `changed`: present but not the installed content or type. */
  status: 'missing' | 'changed';
  /** dpkg's rpm-style nine-character check string: `missing  `, `??5??????`, `?M5??????`, `?M???????`… */
  checks: string;
  /** dpkg's `c` attribute: the path is a conffile. */
  conffile: boolean;
  package: string;
  arch: string;
  /** Why it is missing when that is not "does not exist" (`Not a directory`), or why it could not be hashed. */
  reason?: string;
}

/** What a verification found. */
export interface VerifyReport {
  /** Problems in dpkg's order: packages in status order, paths in files-list order. */
  problems: VerifyProblem[];
  /** Number of paths checked. */
  checked: number;
}

/** Options of {@link verifyDpkg}. */
export interface VerifyOptions {
  /** Files hashed at once (default 8). */
  concurrency?: number;
}

/** strerror() texts for the errno codes lstat can meet, so the `reason` reads like dpkg's. */
const STRERROR: Record<string, string> = {
  ENOTDIR: 'Not a directory',
  EACCES: 'Permission denied',
  ELOOP: 'Too many levels of symbolic links',
  ENAMETOOLONG: 'File name too long',
  EIO: 'Input/output error',
  EPERM: 'Operation not permitted',
  EISDIR: 'Is a directory',
  ENOENT: 'No such file or directory',
};

/** Bytes read per call while hashing. */
const CHUNK = 1 << 20;

const readAsync = promisify(read);

/**
 * md5 of a file's content. A regular file is opened with O_NOFOLLOW|O_NONBLOCK and
 * must be the one `lstat` saw (device, inode, size: a path swapped meanwhile is not
 * read); a symlink is followed like dpkg's open(2) does, non-blocking, and only to a
 * regular file. Never reads a FIFO, a device (`/dev/zero`) or more than
 * DEFAULT_MAX_FILE_BYTES: those throw HashError with the reason.
 */
async function md5File(path: string, st: Stats): Promise<string> {
  const file = openChecked(path, st.isFile()
    ? { expect: { dev: st.dev, ino: st.ino, size: st.size }, checkPath: false }
    : { follow: true, checkPath: false });
  try {
    const hash = createHash('md5');
    const buffer = Buffer.allocUnsafe(Math.min(CHUNK, Math.max(1, file.size)));
    for (let left = file.size; left > 0;) {
      const { bytesRead } = await readAsync(file.fd, buffer, 0, Math.min(buffer.length, left), null);
      if (bytesRead === 0) throw new HashError(REASONS.shrank);
      hash.update(buffer.subarray(0, bytesRead));
      left -= bytesRead;
    }
    return hash.digest('hex');
  } finally {
    closeSync(file.fd);
  }
}

/** Check one planned path on disk the way dpkg's `verify_file()` does; null when it passes. */
export async function checkPath(root: string, c: VerifyCheck): Promise<VerifyProblem | null> {
  const full = underRoot(root, c.path);
  const base = { path: c.path, conffile: c.conffile, package: c.package, arch: c.arch };
  let st;
  try {
    st = await lstat(full);
  } catch (err) {
    const code = errnoOf(err);
    const p: VerifyProblem = { ...base, status: 'missing', checks: 'missing  ' };
    if (code !== 'ENOENT') p.reason = STRERROR[code] ?? code;
    return p;
  }
  if (c.md5 === null) return null;
  // dpkg's heuristic: a path with a known digest must be a regular file.
  const modeFail = !st.isFile();
  let md5Char = '?';
  let reason: string | undefined;
  try {
    md5Char = (await md5File(full, st)) === c.md5 ? '.' : '5';
  } catch (err) {
    // open() failed (dangling symlink, no permission), the path became a folder (dpkg
    // aborts the whole run there; drift reports the path and carries on), or it is not a
    // regular file, was swapped since lstat, or is over the byte bound (HashError reasons).
    const code = errnoOf(err);
    // A folder in its place reads as dpkg's EISDIR.
    reason = code === REASONS.notRegular('a folder') ? STRERROR['EISDIR'] as string : STRERROR[code] ?? code;
  }
  if (!modeFail && md5Char === '.') return null;
  const p: VerifyProblem = { ...base, status: 'changed', checks: `?${modeFail ? 'M' : '?'}${md5Char}??????` };
  if (reason !== undefined) p.reason = reason;
  return p;
}

/**
 * Verify every dpkg-installed file of a root against the package database, with
 * the same result set as `dpkg --root ROOT --verify` (dpkg 1.21): see
 * {@link planDpkgVerify} for what is checked. Throws DriftError when the root is
 * not a folder, has no dpkg database, or the database cannot be read.
 */
export async function verifyDpkg(root: string, opts: VerifyOptions = {}): Promise<VerifyReport> {
  try {
    if (!(await stat(root)).isDirectory()) throw new Error('ENOTDIR');
  } catch (err) {
    throw new DriftError('DRIFT_ERR_USAGE', `root ${root} is not a readable folder (${errnoOf(err)}); pass --root a mounted image or chroot`, { cause: err });
  }
  let db;
  try {
    db = await readDpkgDb(root);
  } catch (err) {
    throw new DriftError('DRIFT_ERR_IO', `cannot read the dpkg database ${dpkgAdminDir(root)}/status: ${errnoOf(err)}; check its permissions`, { cause: err });
  }
  if (!db) {
    throw new DriftError('DRIFT_ERR_NOT_FOUND', `no dpkg database under ${root} (${dpkgAdminDir(root)}/status is missing); verify-packages checks dpkg-installed files only`);
  }
  for (const u of db.unread) {
    throw new DriftError('DRIFT_ERR_IO', `cannot read ${underRoot(root, u.path)}: ${u.reason}`);
  }
  const records = db.records.filter((r) => r.state !== 'not-installed' && r.state !== '');
  const loaded = await mapLimit(records, 32, async (rec): Promise<PackageFiles> => {
    try {
      const list = await readInfoFile(root, rec, 'list');
      const md5sums = await readInfoFile(root, rec, 'md5sums');
      return { list: list === null ? null : parseDpkgList(list), md5sums: md5sums === null ? null : parseMd5sums(md5sums) };
    } catch (err) {
      throw new DriftError('DRIFT_ERR_IO', `cannot read the files of package ${dpkgInfoName(rec)} in ${dpkgAdminDir(root)}/info: ${errnoOf(err)}`, { cause: err });
    }
  });
  const byRecord = new Map<DpkgRecord, PackageFiles>(records.map((r, i) => [r, loaded[i] ?? { list: null, md5sums: null }]));
  const plan = planDpkgVerify(records, (r) => byRecord.get(r) ?? { list: null, md5sums: null }, db.diversions);
  const results = await mapLimit(plan, opts.concurrency ?? 8, (c) => checkPath(root, c));
  return { problems: results.filter((p): p is VerifyProblem => p !== null), checked: plan.length };
}

/** One problem as a text line in dpkg's format plus the package: `??5?????? c /etc/foo  [pkg:arch]`. */
export function formatProblem(p: VerifyProblem): string {
  const reason = p.reason ? ` (${p.reason})` : '';
  return `${p.checks} ${p.conffile ? 'c' : ' '} ${p.path}${reason}  [${p.package}:${p.arch}]`;
}
