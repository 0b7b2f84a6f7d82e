import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { StringDecoder } from 'node:string_decoder';

/**
 * Inode flags (chattr/lsattr: immutable, append-only, ...). They are read with the
 * FS_IOC_GETFLAGS ioctl, which Node cannot make, so drift runs `lsattr -d` from
 * e2fsprogs (priority "required" on Debian, in every RHEL and Alpine base image)
 * over the regular files and folders, through `xargs -0` (paths on its stdin,
 * NUL-separated: no argument list limit, and one process started from Node, whose
 * own spawns cost ~20 ms each with a large heap). The files collector starts it
 * with the first path its walk records and feeds it paths as the walk goes on, so
 * that lsattr works beside the walk and the hashing rather than after them.
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

/** Why no flag could be read at all (lsattr missing), or null. */
export type FlagsFailure = string | null;

/**
 * lsattr's stdout for paths without a newline in their names, matched line by
 * line as it arrives, so that neither the whole output nor a per-path record is
 * held (a full scan of /etc and /usr gives ~10 MB of it). Pure: `push` chunks of
 * text, then `end`. The rules are those of parseLsattr: a line `FLAGS SP PATH`
 * answers the next path still expected when PATH is exactly that path; every
 * path passed over, and every path no line answered, failed (its reason is then
 * looked up in stderr).
 */
export class LsattrLines {
  private next = 0;
  private rest = '';
  private lastField = '';
  private lastMask = 0;
  /** Indexes (into the sequence given) of the paths no line answered. */
  readonly failed: number[] = [];

  /**
   * `count` paths; `pathAt(k)` is the k-th (it must hold no newline); `onFlags(k,
   * mask)` is called for each path answered, in order.
   */
  constructor(
    private count: number,
    private readonly pathAt: (k: number) => string,
    private readonly onFlags: (k: number, mask: number) => void,
  ) {}

  /** `count` paths are now expected (more were given to lsattr since; never fewer). */
  grow(count: number): void {
    if (count > this.count) this.count = count;
  }

  /** Take in the next piece of stdout (whole lines are matched now, a partial one is kept). */
  push(text: string): void {
    const data = this.rest.length === 0 ? text : this.rest + text;
    let at = 0;
    for (let nl = data.indexOf('\n'); nl >= 0; nl = data.indexOf('\n', at)) {
      this.line(data, at, nl);
      at = nl + 1;
    }
    this.rest = at === 0 ? data : data.slice(at);
  }

  /** The output ended: a partial last line answers nothing, and every path not answered failed. */
  end(): void {
    this.rest = '';
    while (this.next < this.count) this.failed.push(this.next++);
  }

  private line(data: string, at: number, nl: number): void {
    const space = data.indexOf(' ', at);
    let mask = -1;
    if (space > at && space < nl) {
      if (space - at === this.lastField.length && data.startsWith(this.lastField, at)) mask = this.lastMask;
      else {
        const field = data.slice(at, space);
        if (FLAGS_FIELD.test(field)) {
          this.lastField = field;
          this.lastMask = mask = flagsMask(field);
        }
      }
    }
    while (this.next < this.count) {
      const k = this.next++;
      const path = this.pathAt(k);
      if (mask >= 0 && nl - space - 1 === path.length && data.startsWith(path, space + 1)) {
        this.onFlags(k, mask);
        return;
      }
      this.failed.push(k);
    }
  }
}

/**
 * Bytes of arguments per lsattr process (xargs -s): ~8,000 paths of /usr a process
 * instead of xargs' default 128 KiB (~1,000), so a full scan starts a few lsattr
 * processes, not a hundred. xargs starts each once it holds that many bytes of
 * paths (or its input ends), so a scan's last ~1 MiB of paths are read after its
 * walk. Where the system allows less, xargs uses its own limit (and says so on
 * stderr, which names no path, so no path takes it as its reason).
 */
const ARGS_BYTES = 1024 * 1024;

/** Bytes of paths written to lsattr's input at a time. */
const INPUT_CHUNK = 64 * 1024;

const xargsEnv = (): NodeJS.ProcessEnv => ({ PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' });

/**
 * One run of lsattr through xargs, taking its paths while it runs: `add` queues a
 * path for its stdin (written 64 KiB at a time: node buffers what the pipe does not
 * take yet, so a caller that does not yield never waits on it), its stdout is
 * handed to `onStdout` as it arrives, and `end` closes its stdin and resolves with
 * its stderr (kept whole: one line per failed path) and exit code, or rejects when
 * xargs cannot be started. Output beyond what the paths added can explain stops
 * it (it is killed).
 */
class LsattrRun {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly done: Promise<{ stderr: string; code: number | null }>;
  private chunk = '';
  private count = 0;
  private input = 0;
  /** Its stdin is gone (killed, or xargs missing): its exit says why; writing stops. */
  private gone = false;

  constructor(onStdout: (text: string) => void) {
    const child = spawn('xargs', ['-0', '-r', '-s', String(ARGS_BYTES), 'lsattr', '-d', '--'], { stdio: ['pipe', 'pipe', 'pipe'], env: xargsEnv() });
    this.child = child;
    const stop = (): void => {
      this.gone = true;
    };
    child.stdin.on('error', stop);
    child.stdin.on('close', stop);
    this.done = new Promise((resolve, reject) => {
      const err: Buffer[] = [];
      let bytes = 0;
      const within = (chunk: Buffer): boolean => {
        bytes += chunk.length;
        // More than every path could explain: something else writes there; stop reading it.
        if (bytes > this.count * OUTPUT_BYTES_PER_PATH + this.input * 3) child.kill('SIGKILL');
        return !child.killed;
      };
      const decoder = new StringDecoder('utf8');
      child.stdout.on('data', (chunk: Buffer) => {
        if (within(chunk)) onStdout(decoder.write(chunk));
      });
      child.stderr.on('data', (chunk: Buffer) => {
        if (within(chunk)) err.push(chunk);
      });
      child.on('error', reject);
      child.on('close', (code) => {
        onStdout(decoder.end());
        resolve({ stderr: Buffer.concat(err).toString('utf8'), code });
      });
    });
    // Read by `end`; until then a failure to start must not count as unhandled.
    this.done.catch(() => undefined);
  }

  /** Queue one path (NUL-terminated on lsattr's stdin). */
  add(path: string): void {
    this.count += 1;
    this.input += path.length;
    this.chunk += `${path}\0`;
    if (this.chunk.length >= INPUT_CHUNK) this.flush();
  }

  private flush(): void {
    if (!this.gone && this.chunk.length > 0) this.child.stdin.write(this.chunk);
    this.chunk = '';
  }

  /** Stop it at once (the collection failed and wants no answers). */
  kill(): void {
    this.gone = true;
    this.child.kill('SIGKILL');
  }

  /** No more paths: close its stdin and wait for it to exit. */
  end(): Promise<{ stderr: string; code: number | null }> {
    this.flush();
    if (!this.gone) this.child.stdin.end();
    return this.done;
  }
}

/** Flags by index into the paths given, and why the others were not read. */
export interface FlagsRun {
  /** errno code (`ENOTTY`, `EOPNOTSUPP`, ...) or lsattr's message, per path index not read. */
  errors: Map<number, string>;
  /** Set when lsattr could not be run at all (then no path has flags). */
  missing: FlagsFailure;
}

/**
 * Read the inode flags of paths given one at a time (absolute paths on disk of
 * regular files and folders), while the caller goes on finding more: the first
 * `add` starts lsattr, which works through the paths as they come. `add(i)` gives
 * the path `pathAt(i)`, under the caller's index `i`; `onFlags(i, mask)` is called
 * for each path read, as lsattr's output arrives (only while the caller yields, and
 * during `finish`). `finish` resolves with the reasons of the others, and `missing`
 * set when lsattr could not be run at all (then no path has flags). A path with a
 * newline in its name would make lsattr's output ambiguous: such paths get a run
 * of their own each, in `finish`.
 */
export class FlagsStream {
  /** The caller's index of the k-th path without a newline. */
  private readonly plain: number[] = [];
  private readonly odd: number[] = [];
  private run: LsattrRun | null = null;
  private readonly lines: LsattrLines;

  constructor(
    private readonly pathAt: (i: number) => string,
    private readonly onFlags: (i: number, mask: number) => void,
  ) {
    this.lines = new LsattrLines(0, (k) => pathAt(this.plain[k] as number), (k, mask) => onFlags(this.plain[k] as number, mask));
  }

  /** Read the flags of path `i` (see the class comment). */
  add(i: number): void {
    const path = this.pathAt(i);
    if (path.includes('\n')) {
      this.odd.push(i);
      return;
    }
    this.plain.push(i);
    this.lines.grow(this.plain.length);
    this.run ??= new LsattrRun((text) => this.lines.push(text));
    this.run.add(path);
  }

  /** Stop lsattr without waiting for it (the caller failed and wants no answers). */
  abort(): void {
    this.run?.kill();
  }

  /** Every path is added: wait for lsattr, then read the paths with a newline, one run each. */
  async finish(): Promise<FlagsRun> {
    const result: FlagsRun = { errors: new Map(), missing: null };
    if (this.run !== null) {
      const output = await ended(this.run, result);
      if (output === null) return result;
      this.lines.end();
      for (const k of this.lines.failed) {
        const i = this.plain[k] as number;
        result.errors.set(i, reasonFor(output.stderr, this.pathAt(i)));
      }
    }
    for (const i of this.odd) {
      let stdout = '';
      const run = new LsattrRun((text) => (stdout += text));
      const path = this.pathAt(i);
      run.add(path);
      const output = await ended(run, result);
      if (output === null) return result;
      const parsed = parseLsattr([path], stdout, output.stderr);
      const mask = parsed.flags[0] as number;
      if (mask >= 0) this.onFlags(i, mask);
      else result.errors.set(i, parsed.errors.get(0) ?? 'not read by lsattr');
    }
    return result;
  }
}

/** Wait for `run` to exit; null, with `result.missing` set, when lsattr could not be run at all. */
async function ended(run: LsattrRun, result: FlagsRun): Promise<{ stderr: string; code: number | null } | null> {
  let output: { stderr: string; code: number | null };
  try {
    output = await run.end();
  } catch (err) {
    const code = err && typeof err === 'object' && 'code' in err ? String((err as { code: unknown }).code) : 'EIO';
    result.missing = code === 'ENOENT' ? 'xargs not found (install findutils to record inode flags)' : `xargs could not be run (${code})`;
    result.errors.clear();
    return null;
  }
  // xargs: 127 the command was not found, 126 it could not be run.
  if (output.code === 127 || output.code === 126) {
    result.missing = output.code === 127 ? 'lsattr not found (install e2fsprogs to record inode flags)' : 'lsattr could not be run';
    result.errors.clear();
    return null;
  }
  return output;
}

/**
 * Read the inode flags of `paths` (absolute paths on disk of regular files and
 * folders). Resolves with flags and errors by index into `paths`, and `missing`
 * set when lsattr could not be run at all (then no path has flags).
 */
export async function readFlags(paths: readonly string[]): Promise<FlagsResult & { missing: FlagsFailure }> {
  const flags = new Int32Array(paths.length).fill(-1);
  const stream = new FlagsStream((i) => paths[i] as string, (i, mask) => {
    flags[i] = mask;
  });
  for (let i = 0; i < paths.length; i++) stream.add(i);
  const run = await stream.finish();
  if (run.missing !== null) flags.fill(-1);
  return { flags, errors: run.errors, missing: run.missing };
}
