import { closeSync, constants, fchmodSync, fsyncSync, lstatSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { DriftError, errnoOf } from './protocol/errors.js';

/**
 * The one way drift replaces a file (state, node key, spool, stat caches, baselines,
 * image stamps): a temporary file in the target's folder, created exclusively
 * (O_CREAT|O_EXCL, which never follows a symlink, plus O_NOFOLLOW) under a name no
 * one can guess (`.NAME.tmp-<24 hex digits>`), written, given its mode, fsync'd,
 * then renamed over the target (rename replaces a symlink at the target, never what
 * it points to) and the folder fsync'd. A crash leaves the old file or the new one,
 * never half of one; a planted temp name or symlink cannot redirect the write.
 */

const CREATE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

/** A replacement of one file being written; `commit` puts it in place, `abort` removes it. */
export class AtomicFile {
  private constructor(
    readonly path: string,
    readonly temp: string,
    readonly fd: number,
    private readonly mode: number,
  ) {}

  /** Start replacing `path`; its new content gets `mode` (not narrowed by the umask). Throws the fs error. */
  static create(path: string, mode = 0o644): AtomicFile {
    const temp = join(dirname(path), `.${basename(path)}.tmp-${randomBytes(12).toString('hex')}`);
    const fd = openSync(temp, CREATE_FLAGS, mode & 0o600);
    return new AtomicFile(path, temp, fd, mode);
  }

  /** Append bytes. Throws the fs error. */
  write(data: string | Uint8Array): void {
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    let done = 0;
    while (done < bytes.length) done += writeSync(this.fd, bytes, done, bytes.length - done);
  }

  /**
   * Give the mode, fsync, rename over the target, fsync the folder. Throws the fs error (the temp file is then removed).
   * `to` names another target in the same folder (a content-addressed file whose name is known only once written).
   */
  commit(to: string = this.path): void {
    if (dirname(to) !== dirname(this.path)) {
      this.abort();
      throw new Error(`atomic write of ${this.path} cannot be committed to ${to}: another folder`);
    }
    try {
      fchmodSync(this.fd, this.mode);
      fsyncSync(this.fd);
      closeSync(this.fd);
    } catch (err) {
      this.abort();
      throw err;
    }
    try {
      renameSync(this.temp, to);
    } catch (err) {
      rmSync(this.temp, { force: true });
      throw err;
    }
    syncFolder(dirname(this.path));
  }

  /** Drop the replacement: close and remove the temp file (never throws). */
  abort(): void {
    try {
      closeSync(this.fd);
    } catch {
      // already closed
    }
    try {
      rmSync(this.temp, { force: true });
    } catch {
      // nothing more to do: a crash-time leftover is collected by its `.tmp-` name
    }
  }
}

/** fsync a folder so a rename in it survives a power loss; a file system that cannot is not an error. */
function syncFolder(dir: string): void {
  let fd: number;
  try {
    fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  } catch {
    return;
  }
  try {
    fsyncSync(fd);
  } catch {
    // some file systems refuse fsync on a folder
  } finally {
    closeSync(fd);
  }
}

/** Replace `path` with `data` atomically (see the module comment); DRIFT_ERR_IO naming the path on failure. */
export function writeFileAtomicSync(path: string, data: string | Uint8Array, mode = 0o644): void {
  let file: AtomicFile;
  try {
    file = AtomicFile.create(path, mode);
  } catch (err) {
    throw new DriftError('DRIFT_ERR_IO', `cannot write ${path}: ${errnoOf(err)}; check that its folder exists and is writable`, { cause: err });
  }
  try {
    file.write(data);
    file.commit();
  } catch (err) {
    file.abort();
    throw new DriftError('DRIFT_ERR_IO', `cannot write ${path}: ${errnoOf(err)}; check the free space and permissions of its folder`, { cause: err });
  }
}

/** `writeFileAtomicSync` for async callers. */
export async function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  writeFileAtomicSync(path, data, mode);
}

/**
 * Why `dir` cannot hold state that root trusts, or null when it can: it must be a
 * real folder (not a symlink), owned by the user drift runs as, and writable by no
 * one else (no group or other write bit) — otherwise another user could plant the
 * files (a stat cache that hides a change, a symlink where a temp file goes) that
 * drift then reads or writes.
 */
export function privateDirProblem(dir: string): string | null {
  let st;
  try {
    st = lstatSync(dir);
  } catch (err) {
    return `cannot stat it (${errnoOf(err)})`;
  }
  if (st.isSymbolicLink()) return 'it is a symlink; point --state-dir at the real folder';
  if (!st.isDirectory()) return 'it is not a folder';
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) return `it is owned by uid ${st.uid}, not by uid ${uid} that drift runs as; chown it or pick another folder`;
  if ((st.mode & 0o022) !== 0) return `it is writable by ${(st.mode & 0o002) !== 0 ? 'everyone' : 'its group'} (mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')}); run chmod go-w on it`;
  return null;
}

/** Throw DRIFT_ERR_IO when `dir` is not a private folder (see privateDirProblem). */
export function assertPrivateDir(dir: string): void {
  const problem = privateDirProblem(dir);
  if (problem !== null) throw new DriftError('DRIFT_ERR_IO', `refusing state folder ${dir}: ${problem}`);
}
