import { closeSync, fstatSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { compareUnread } from '../protocol/unread.js';
import { mapLimit } from '../limit.js';
import { join } from 'node:path';
import type { ProcessEntry, Unread } from '../protocol/manifest.js';
import { DriftError, errnoOf } from '../protocol/errors.js';
import type { CollectContext, Collector, CollectResult } from './contract.js';
import {
  type FileId,
  requireProc,
  isKernelThread,
  listPids,
  parsePasswd,
  parseStat,
  parseStatus,
  readExe,
  vanished,
} from './proc.js';
import { ByteBudget, CHUNK_BYTES, HashError, REASONS, hashOpened, openChecked, readFileChecked, type OpenedFile } from '../hash.js';
import { EXE_CACHE_FILE, StatCache } from '../statcache.js';

/** One user-space process as read from /proc, before grouping. */
interface RunningProcess {
  pid: number;
  exe: string;
  deleted: boolean;
  user: string;
  /** `dev:inode` of the image the process runs. */
  image: FileId;
}

type ProcessRead = { kind: 'process'; process: RunningProcess } | { kind: 'skip' } | { kind: 'unread'; unread: Unread };

/**
 * Where systemd placed a process, from the text of /proc/PID/cgroup: true in the
 * system slice (`/system.slice/...`) or init's own scope, false in a user slice
 * or a machine slice (login sessions, user managers, containers), null where the
 * file names no systemd cgroup (no systemd, a container, the root cgroup): then
 * only the parent tells. Reads the v1 `name=systemd` line, else the unified
 * (`0::`) line.
 */
export function systemSliceOf(cgroupText: string): boolean | null {
  let unified: string | null = null;
  let named: string | null = null;
  for (const line of cgroupText.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    if (m[1] === '0' && m[2] === '') unified = m[3] ?? null;
    else if (m[2] === 'name=systemd') named = m[3] ?? null;
  }
  // systemd's own hierarchy where it has one (v1 and hybrid layouts; a hybrid
  // unified line may be left at "/"), else the unified one (v2).
  const path = named ?? unified;
  if (path === null) return null;
  if (path.startsWith('/system.slice/') || path === '/init.scope') return true;
  if (path.startsWith('/user.slice/') || path === '/user.slice' || path.startsWith('/machine.slice/')) return false;
  return null;
}

/**
 * Whether a process is a service's (rules/README.md, "Processes"): PID 1, a
 * process in systemd's system slice, or any process whose parent is PID 1 (a
 * daemon, or a backdoor that detached from its session and was re-parented to
 * init). Login sessions, user slices and what a build pipeline starts are not.
 * A cgroup file that cannot be read leaves the parent to decide.
 */
export async function isServiceProcess(proc: string, pid: number, ppid: number): Promise<boolean> {
  if (pid === 1 || ppid === 1) return true;
  let text: string;
  try { text = await readFile(join(proc, String(pid), 'cgroup'), 'utf8'); } catch { return false; }
  return systemSliceOf(text) === true;
}

const SKIP = { kind: 'skip' } as const;

/**
 * Running processes from `ctx.proc`, grouped by identity `executable|user`
 * (`/usr/sbin/sshd|root`) with their count. Kernel threads and zombies are left
 * out, and so, unless `ctx.processScope` is `all`, is every process that is not
 * a service's (see `isServiceProcess`): a baseline taken while a build pipeline
 * runs must not record the pipeline. Each entry has the sha256 of the running image (read through
 * /proc/PID/exe, once per distinct `dev:inode`), `deleted` when the kernel marks
 * the image ` (deleted)`, and `replaced: true` when `<root>/<exe>` now holds
 * another file than the one running. The user is the real uid named through
 * `<root>/etc/passwd` (the number when it has no name).
 *
 * Processes that exit while being read are skipped: that is churn, not an
 * unread file. An executable that cannot be read for another reason goes to
 * `unread` as `/proc/PID/exe` with its errno. Throws DriftError only when
 * `ctx.proc` is null or cannot be listed.
 *
 * Where processes of one identity run different images (some started before an
 * upgrade), `deleted` and `replaced` hold if they hold for any of them, and
 * `exeSha256` is the smallest of their hashes, so the entry is stable.
 */
export function createProcessesCollector(options: ProcessesCollectorOptions = {}): Collector<'processes'> {
  return {
    section: 'processes',
    async collect(ctx: CollectContext): Promise<CollectResult<ProcessEntry>> {
      const proc = requireProc(ctx, 'processes');
      const unread: Unread[] = [];
      const users = await readUsers(ctx.root, unread);
      const pids = await listProc(proc);

      const services = ctx.processScope !== 'all';
      const reads = await mapLimit(pids, 16, (pid) => readProcess(proc, pid, ctx.root, users, services));
      const running: RunningProcess[] = [];
      for (const r of reads) {
        if (r.kind === 'process') running.push(r.process);
        else if (r.kind === 'unread') unread.push(r.unread);
      }

      const byImage = new Map<FileId, RunningProcess[]>();
      for (const p of running) {
        const list = byImage.get(p.image);
        if (list) list.push(p);
        else byImage.set(p.image, [p]);
      }
      const hashes = new Map<FileId, string>();
      const gone = new Set<FileId>();
      const budget = ctx.budget ?? new ByteBudget();
      const startedAt = options.clock ? options.clock() : new Date();
      // Images are cached like files, by their own device, inode, size, mtime and ctime.
      const cacheRoot = `proc:${proc}`;
      const cache = ctx.stateDir === null ? null : ctx.forceRehash ? StatCache.empty(cacheRoot, startedAt, EXE_CACHE_FILE) : StatCache.load(ctx.stateDir, cacheRoot, startedAt, EXE_CACHE_FILE);
      const buffer = Buffer.allocUnsafe(CHUNK_BYTES);
      for (const [image, procs] of byImage) {
        const result = hashImage(proc, image, procs, { cache, budget, buffer, onHash: options.onHash });
        if (result.kind === 'hash') hashes.set(image, result.sha256);
        else if (result.kind === 'gone') gone.add(image);
        else unread.push(result.unread);
      }
      if (cache && ctx.stateDir !== null) {
        try {
          cache.save(ctx.stateDir);
        } catch (err) {
          process.emitWarning(`drift: could not write the process image cache in ${ctx.stateDir} (${err instanceof DriftError ? err.message : errnoOf(err)}); running images will be hashed again next time`);
        }
      }

      // One stat of <root>/<exe> per distinct path tells whether the path still holds the running image.
      const onDisk = new Map<string, FileId | null>();
      for (const p of running) onDisk.set(p.exe, null);
      await mapLimit([...onDisk.keys()], 16, async (exe) => {
        try {
          const st = await stat(join(ctx.root, exe), { bigint: true });
          onDisk.set(exe, `${st.dev}:${st.ino}`);
        } catch (err) {
          // Nothing at the path (deleted, or a memfd image): that is `deleted`, not `replaced`.
          const code = errnoOf(err);
          if (code !== 'ENOENT' && code !== 'ENOTDIR') unread.push({ path: exe, reason: code });
        }
      });

      const entries: Record<string, ProcessEntry> = {};
      const shas = new Map<string, string[]>();
      for (const p of running) {
        if (gone.has(p.image)) continue;
        const key = `${p.exe}|${p.user}`;
        const now = onDisk.get(p.exe);
        const replaced = now !== null && now !== undefined && now !== p.image;
        const entry = entries[key] ?? (entries[key] = { count: 0, deleted: false });
        entry.count += 1;
        if (p.deleted) entry.deleted = true;
        if (replaced) entry.replaced = true;
        const sha = hashes.get(p.image);
        if (sha === undefined) continue;
        const list = shas.get(key);
        if (list) list.push(sha);
        else shas.set(key, [sha]);
      }
      for (const [key, list] of shas) {
        const entry = entries[key];
        if (entry) entry.exeSha256 = list.sort()[0] as string;
      }
      unread.sort(compareUnread);
      return { entries, unread };
    },
  };
}

/** Options of a processes collector; the defaults suit the agent. */
export interface ProcessesCollectorOptions {
  /** Called with the /proc/PID/exe path of each image actually read (not for cache hits). */
  onHash?: ((path: string) => void) | undefined;
  /** When the scan starts (default: the system clock); see the files collector's `clock`. */
  clock?: () => Date;
}

/** The processes collector of the agent (image hashes cached in ctx.stateDir). */
export const processesCollector: Collector<'processes'> = createProcessesCollector();

async function listProc(proc: string): Promise<number[]> {
  try {
    return await listPids(proc);
  } catch (err) {
    throw new DriftError('DRIFT_ERR_IO', `cannot list processes in ${proc}: ${errnoOf(err)}; check that --proc names a mounted /proc`, { cause: err });
  }
}

/** Largest etc/passwd read for user names. */
const PASSWD_CAP_BYTES = 16 * 1024 * 1024;

async function readUsers(root: string, unread: Unread[]): Promise<Map<number, string>> {
  try {
    // An image's passwd may be a symlink, a FIFO or a device: read like any untrusted file.
    return parsePasswd(readFileChecked(join(root, 'etc', 'passwd'), PASSWD_CAP_BYTES, { checkPath: false }).toString('utf8'));
  } catch (err) {
    // No passwd (a minimal image): users are shown by number, which is still a fact.
    if (!vanished(err)) unread.push({ path: '/etc/passwd', reason: err instanceof HashError ? err.code : errnoOf(err) });
    return new Map();
  }
}

async function readProcess(proc: string, pid: number, root: string, users: Map<number, string>, servicesOnly: boolean): Promise<ProcessRead> {
  const dir = join(proc, String(pid));
  const exePath = `/proc/${pid}/exe`;
  let reading = `/proc/${pid}/stat`;
  try {
    const stat0 = parseStat(await readFile(join(dir, 'stat'), 'utf8'));
    if (!stat0) return { kind: 'unread', unread: { path: `/proc/${pid}/stat`, reason: 'unparsable stat line' } };
    if (isKernelThread(stat0, null, true)) return SKIP;
    // A zombie (or a task being reaped) has no image left to describe.
    if (stat0.state === 'Z' || stat0.state === 'X') return SKIP;
    if (servicesOnly && !(await isServiceProcess(proc, pid, stat0.ppid))) return SKIP;
    reading = `/proc/${pid}/status`;
    const status = parseStatus(await readFile(join(dir, 'status'), 'utf8'));
    if (!status) return { kind: 'unread', unread: { path: `/proc/${pid}/status`, reason: 'no Uid: line' } };
    if (isKernelThread(stat0, status, true)) return SKIP;

    let exe;
    try {
      exe = await readExe(proc, pid, root);
    } catch (err) {
      // No exe: a kernel thread on a kernel without PF_KTHREAD/Kthread:, or a process
      // that exited (or is exiting) since the stat was read. Both are left out.
      if (vanished(err)) return SKIP;
      return { kind: 'unread', unread: { path: exePath, reason: errnoOf(err) } };
    }
    reading = exePath;
    const img = await stat(join(dir, 'exe'), { bigint: true });
    return {
      kind: 'process',
      process: {
        pid,
        exe: exe.path,
        deleted: exe.deleted,
        user: users.get(status.realUid) ?? String(status.realUid),
        image: `${img.dev}:${img.ino}`,
      },
    };
  } catch (err) {
    if (vanished(err)) return SKIP;
    return { kind: 'unread', unread: { path: reading, reason: errnoOf(err) } };
  }
}

type HashResult = { kind: 'hash'; sha256: string } | { kind: 'gone' } | { kind: 'unread'; unread: Unread };

interface HashTools {
  cache: StatCache | null;
  budget: ByteBudget;
  buffer: Buffer;
  onHash: ((path: string) => void) | undefined;
}

/**
 * Hashes one running image through the first of its processes that is still alive
 * and still runs it, opened through /proc/PID/exe and checked like any file (a
 * regular file, that image's device and inode, within the byte budgets).
 */
function hashImage(proc: string, image: FileId, procs: readonly RunningProcess[], tools: HashTools): HashResult {
  for (const p of procs) {
    const exe = `/proc/${p.pid}/exe`;
    const path = join(proc, String(p.pid), 'exe');
    let file: OpenedFile;
    try {
      file = openChecked(path, { follow: true, maxBytes: tools.budget.maxFileBytes });
    } catch (err) {
      // Exited: try the next process of this image.
      if (vanished(err)) continue;
      return { kind: 'unread', unread: { path: exe, reason: err instanceof HashError ? err.code : errnoOf(err) } };
    }
    try {
      const st = fstatSync(file.fd, { bigint: true });
      // The PID now runs another program: try the next process of this image.
      if (`${st.dev}:${st.ino}` !== image) continue;
      const cached = tools.cache?.lookup(st);
      if (cached !== undefined) return { kind: 'hash', sha256: cached };
      if (!tools.budget.take(file.size)) return { kind: 'unread', unread: { path: exe, reason: REASONS.overScan(tools.budget.maxScanBytes) } };
      const stage = tools.cache ? tools.cache.stage(st) : -1;
      const sha256 = hashOpened(file, tools.buffer);
      tools.onHash?.(exe);
      tools.cache?.record(stage, sha256);
      return { kind: 'hash', sha256 };
    } catch (err) {
      if (vanished(err)) continue;
      return { kind: 'unread', unread: { path: exe, reason: err instanceof HashError ? err.code : errnoOf(err) } };
    } finally {
      closeSync(file.fd);
    }
  }
  return { kind: 'gone' };
}
