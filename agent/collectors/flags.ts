import { spawn } from 'node:child_process';

/**
 * Inode flags (chattr/lsattr: immutable, append-only, ...). They are read with the
 * FS_IOC_GETFLAGS ioctl, which Node cannot make, so drift runs `lsattr -d` from
 * e2fsprogs (priority "required" on Debian, in every RHEL and Alpine base image)
 * over batches of regular files and folders: one process per few thousand paths,
 * running while the files are hashed.
 *
 * lsattr lstats each path and opens only regular files and folders (O_NONBLOCK),
 * so symlinks, devices, FIFOs and sockets are never opened; drift never passes
 * it anything else. A path swapped for a symlink between drift's lstat and
 * lsattr's own is a race lsattr narrows to its lstat-then-open window; the flags
 * of what it then opened would be recorded for a path whose type and stat drift
 * recorded before the swap, so the swap itself still shows in the next scan.
 *
 * Its output is `FLAGS PATH\n` per path that worked, in argument order, and
 * `lsattr: REASON While reading flags on PATH` (or `... while trying to stat
 * PATH`) on stderr for the others. A path with a newline in its name would make
 * that output ambiguous, so such paths are read in a batch of their own.
 */

/**
 * The letters drift records: what chattr can set and what changes how a file may
 * be used. The file system's own bookkeeping (`e` extents, `I` indexed folder,
 * `N` inline data, `E` encrypted, `h` huge file) is left out: it says nothing about
 * drift and differs between file systems holding the same tree.
 */
export const FLAG_ORDER = 'suSDiadAcjtTCxFPVm';
const FLAG_BITS = new Map<string, number>([...FLAG_ORDER].map((c, i) => [c, 1 << i]));

/** The mask of the kept letters of `letters` (the stat cache stores flags as this mask). */
export function flagsMask(letters: string): number {
  let mask = 0;
  for (const c of letters) mask |= FLAG_BITS.get(c) ?? 0;
  return mask;
}

/** The letters of a mask, in lsattr's order (`ia`); '' for none. */
export function flagsText(mask: number): string {
  let out = '';
  for (let i = 0; i < FLAG_ORDER.length; i++) if (mask & (1 << i)) out += FLAG_ORDER[i] as string;
  return out;
}

/** Paths per lsattr run at most, and argument bytes per run at most. */
const BATCH_PATHS = 4096;
const BATCH_BYTES = 512 * 1024;
/** lsattr output accepted per run: a line per path, each at most ~4 KiB of path. */
const MAX_OUTPUT_BYTES = 64 * 1024 * 1024;

const REASONS: Record<string, string> = {
  'Operation not supported': 'EOPNOTSUPP',
  'Inappropriate ioctl for device': 'ENOTTY',
  'No such file or directory': 'ENOENT',
  'Permission denied': 'EACCES',
  'Too many levels of symbolic links': 'ELOOP',
  'Not a directory': 'ENOTDIR',
  'No such device or address': 'ENXIO',
};

/** The flags lsattr printed (`----i---------e-------`), as the mask of the kept letters. */
export function keptFlags(field: string): number {
  return flagsMask(field);
}

/** Flags read per path index of a batch, and why the others were not. */
export interface FlagsResult {
  /** Mask of the kept letters (see flagsText). */
  flags: Map<number, number>;
  /** errno code (`ENOTTY`, `EOPNOTSUPP`, ...) or lsattr's message, per path index not read. */
  errors: Map<number, string>;
}

/**
 * Match lsattr's output to the paths it was given, in order. Pure. A line is
 * `FLAGS SP PATH`: FLAGS is letters and `-`, and PATH must be exactly the next
 * path still expected; a path with no such line failed, and its reason is taken
 * from stderr (`lsattr: REASON While reading flags on PATH`).
 */
export function parseLsattr(paths: readonly string[], stdout: string, stderr: string): FlagsResult {
  const flags = new Map<number, number>();
  const errors = new Map<number, string>();
  let at = 0;
  for (let i = 0; i < paths.length; i++) {
    const path = paths[i] as string;
    const space = stdout.indexOf(' ', at);
    const end = space < 0 ? -1 : space + 1 + path.length;
    if (space > at && /^[A-Za-z-]+$/.test(stdout.slice(at, space)) && stdout.startsWith(path, space + 1) && stdout[end] === '\n') {
      flags.set(i, keptFlags(stdout.slice(at, space)));
      at = end + 1;
      continue;
    }
    errors.set(i, reasonFor(stderr, path));
  }
  return { flags, errors };
}

function reasonFor(stderr: string, path: string): string {
  for (const tail of [` While reading flags on ${path}\n`, ` while trying to stat ${path}\n`]) {
    const end = stderr.indexOf(tail);
    if (end < 0) continue;
    const start = stderr.lastIndexOf('lsattr: ', end);
    if (start < 0) continue;
    const message = stderr.slice(start + 8, end);
    return REASONS[message] ?? message.slice(0, 200);
  }
  return 'not read by lsattr';
}

/** Run one lsattr over `paths`; resolves with its output, or rejects when it cannot be started. */
function runLsattr(paths: readonly string[]): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('lsattr', ['-d', '--', ...paths], { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' } });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let bytes = 0;
    const take = (into: Buffer[]) => (chunk: Buffer): void => {
      bytes += chunk.length;
      if (bytes > MAX_OUTPUT_BYTES) {
        child.kill('SIGKILL');
        return;
      }
      into.push(chunk);
    };
    child.stdout.on('data', take(out));
    child.stderr.on('data', take(err));
    child.on('error', reject);
    child.on('close', () => resolve({ stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') }));
  });
}

/** Why no flag could be read at all (lsattr missing), or null. */
export type FlagsFailure = string | null;

/**
 * Read the inode flags of `paths` (absolute paths on disk of regular files and
 * folders). Resolves with flags and errors by index into `paths`, and `missing`
 * set when lsattr could not be run at all (then every path is in errors).
 */
export async function readFlags(paths: readonly string[]): Promise<FlagsResult & { missing: FlagsFailure }> {
  const result: FlagsResult & { missing: FlagsFailure } = { flags: new Map(), errors: new Map(), missing: null };
  const batches: number[][] = [];
  let batch: number[] = [];
  let bytes = 0;
  for (let i = 0; i < paths.length; i++) {
    const path = paths[i] as string;
    if (path.includes('\n')) {
      batches.push([i]);
      continue;
    }
    if (batch.length === BATCH_PATHS || bytes + path.length + 1 > BATCH_BYTES) {
      batches.push(batch);
      batch = [];
      bytes = 0;
    }
    batch.push(i);
    bytes += Buffer.byteLength(path) + 1;
  }
  if (batch.length > 0) batches.push(batch);
  for (const indexes of batches) {
    const names = indexes.map((i) => paths[i] as string);
    let output: { stdout: string; stderr: string };
    try {
      output = await runLsattr(names);
    } catch (err) {
      const code = err && typeof err === 'object' && 'code' in err ? String((err as { code: unknown }).code) : 'EIO';
      result.missing = code === 'ENOENT' ? 'lsattr not found (install e2fsprogs to record inode flags)' : `lsattr could not be run (${code})`;
      for (let i = 0; i < paths.length; i++) if (!result.flags.has(i)) result.errors.set(i, result.missing);
      return result;
    }
    const parsed = parseLsattr(names, output.stdout, output.stderr);
    for (const [k, f] of parsed.flags) result.flags.set(indexes[k] as number, f);
    for (const [k, e] of parsed.errors) result.errors.set(indexes[k] as number, e);
  }
  return result;
}
