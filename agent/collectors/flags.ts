import { spawn } from 'node:child_process';

/**
 * Inode flags (chattr/lsattr: immutable, append-only, ...). They are read with the
 * FS_IOC_GETFLAGS ioctl, which Node cannot make, so drift runs `lsattr -d` from
 * e2fsprogs (priority "required" on Debian, in every RHEL and Alpine base image)
 * over the regular files and folders, through `xargs -0` (paths on its stdin,
 * NUL-separated: no argument list limit, and one process started from Node, whose
 * own spawns cost ~20 ms each with a large heap), while the files are hashed.
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

/** Output accepted per path: its flags field, the path and a newline, or an error line. */
const OUTPUT_BYTES_PER_PATH = 256;

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
  /** Mask of the kept letters (see flagsText) per path index, -1 where not read. */
  flags: Int32Array;
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
  const flags = new Int32Array(paths.length).fill(-1);
  const errors = new Map<number, string>();
  // Nearly every line has the same FLAGS field: it is checked and decoded once.
  let lastField = '';
  let lastMask = 0;
  let at = 0;
  for (let i = 0; i < paths.length; i++) {
    const path = paths[i] as string;
    const space = stdout.indexOf(' ', at);
    let mask: number | undefined;
    if (space > at) {
      if (space - at === lastField.length && stdout.startsWith(lastField, at)) mask = lastMask;
      else {
        const field = stdout.slice(at, space);
        if (FLAGS_FIELD.test(field)) {
          lastField = field;
          lastMask = mask = flagsMask(field);
        }
      }
    }
    const end = space + 1 + path.length;
    if (mask !== undefined && stdout.startsWith(path, space + 1) && stdout.charCodeAt(end) === 10) {
      flags[i] = mask;
      at = end + 1;
      continue;
    }
    errors.set(i, reasonFor(stderr, path));
  }
  return { flags, errors };
}

const FLAGS_FIELD = /^[A-Za-z-]+$/;

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

/** Run lsattr over `paths` through xargs; resolves with its output, or rejects when it cannot be started. */
function runLsattr(paths: readonly string[]): Promise<{ stdout: string; stderr: string; code: number | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn('xargs', ['-0', '-r', 'lsattr', '-d', '--'], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' },
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let bytes = 0;
    let input = 0;
    for (const p of paths) input += p.length;
    const cap = paths.length * OUTPUT_BYTES_PER_PATH + input * 3;
    const take = (into: Buffer[]) => (chunk: Buffer): void => {
      bytes += chunk.length;
      // More than every path could explain: something else writes there; stop reading it.
      if (bytes > cap) {
        child.kill('SIGKILL');
        return;
      }
      into.push(chunk);
    };
    child.stdout.on('data', take(out));
    child.stderr.on('data', take(err));
    child.stdin.on('error', () => {
      // xargs gone early (killed, or missing lsattr): its exit says why.
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), code }));
    child.stdin.end(paths.length === 0 ? '' : `${paths.join('\0')}\0`);
  });
}

/** Why no flag could be read at all (lsattr missing), or null. */
export type FlagsFailure = string | null;

/**
 * Read the inode flags of `paths` (absolute paths on disk of regular files and
 * folders). Resolves with flags and errors by index into `paths`, and `missing`
 * set when lsattr could not be run at all (then no path has flags).
 */
export async function readFlags(paths: readonly string[]): Promise<FlagsResult & { missing: FlagsFailure }> {
  const result: FlagsResult & { missing: FlagsFailure } = { flags: new Int32Array(paths.length).fill(-1), errors: new Map(), missing: null };
  // A path with a newline would make lsattr's output ambiguous: it gets a run of its own.
  const plain: number[] = [];
  const batches: number[][] = [plain];
  for (let i = 0; i < paths.length; i++) {
    if ((paths[i] as string).includes('\n')) batches.push([i]);
    else plain.push(i);
  }
  for (const indexes of batches) {
    if (indexes.length === 0) continue;
    const names = indexes.length === paths.length ? paths : indexes.map((i) => paths[i] as string);
    let output: { stdout: string; stderr: string; code: number | null };
    try {
      output = await runLsattr(names);
    } catch (err) {
      const code = err && typeof err === 'object' && 'code' in err ? String((err as { code: unknown }).code) : 'EIO';
      result.missing = code === 'ENOENT' ? 'xargs not found (install findutils to record inode flags)' : `xargs could not be run (${code})`;
      return result;
    }
    // xargs: 127 the command was not found, 126 it could not be run.
    if (output.code === 127 || output.code === 126) {
      result.missing = output.code === 127 ? 'lsattr not found (install e2fsprogs to record inode flags)' : 'lsattr could not be run';
      result.flags.fill(-1);
      result.errors.clear();
      return result;
    }
    const parsed = parseLsattr(names, output.stdout, output.stderr);
    if (names === paths) {
      result.flags = parsed.flags;
      result.errors = parsed.errors;
      continue;
    }
    indexes.forEach((i, k) => {
      result.flags[i] = parsed.flags[k] as number;
      const e = parsed.errors.get(k);
      if (e !== undefined) result.errors.set(i, e);
    });
  }
  return result;
}
