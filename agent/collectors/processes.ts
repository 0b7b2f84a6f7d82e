import { compareUnread } from '../protocol/unread.js';
import { mapLimit } from '../limit.js';
import type { ProcessEntry, Unread } from '../protocol/manifest.js';
import { errnoOf } from '../protocol/errors.js';
import type { CollectContext, Collector, CollectResult } from './contract.js';
import {
  type FileId,
  requireProc,
  isKernelThread,
  parseExeLink,
  parsePasswd,
  parseStat,
  parseStatus,
  vanished,
} from './proc.js';
import { ByteBudget, HashError } from '../hash.js';
import { LocalProcSource, cannotList, PROC_TEXT_CAP_BYTES, isFailure, type ProcSource } from './proc-source.js';

/** One user-space process as read from /proc, before grouping. */
interface RunningProcess {
  pid: number;
  exe: string;
  deleted: boolean;
  user: string;
  /** `dev:inode` of the image the process runs. */
  image: FileId;
}

type ProcessRead = { kind: 'process'; process: Omit<RunningProcess, 'image'> } | { kind: 'skip' } | { kind: 'unread'; unread: Unread };

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
export async function isServiceProcess(source: ProcSource, pid: number, ppid: number): Promise<boolean> {
  if (pid === 1 || ppid === 1) return true;
  let text: string;
  try { text = await source.readText(`${pid}/cgroup`, PROC_TEXT_CAP_BYTES); } catch { return false; }
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
  const sourceOf = options.source ?? ((ctx: CollectContext) => new LocalProcSource(ctx.root, requireProc(ctx, 'processes')));
  return {
    section: 'processes',
    async collect(ctx: CollectContext): Promise<CollectResult<ProcessEntry>> {
      const source = sourceOf(ctx);
      const unread: Unread[] = [];
      const users = await readUsers(source, unread);
      const pids = await listProc(source);

      const services = ctx.processScope !== 'all';
      const reads = await mapLimit(pids, 16, (pid) => readProcess(source, pid, users, services));
      const found: Omit<RunningProcess, 'image'>[] = [];
      for (const r of reads) {
        if (r.kind === 'process') found.push(r.process);
        else if (r.kind === 'unread') unread.push(r.unread);
      }
      // The image (`dev:inode`) each runs, asked for all of them at once.
      const images = await source.exeImages(found.map((p) => p.pid));
      const running: RunningProcess[] = [];
      for (const p of found) {
        const image = images.get(p.pid);
        if (isFailure(image) || image === undefined) {
          const code = image?.code ?? 'ENOENT';
          // Exited since its exe link was read: churn, left out.
          if (!vanished({ code })) unread.push({ path: `/proc/${p.pid}/exe`, reason: code });
          continue;
        }
        running.push({ ...p, image });
      }

      const byImage = new Map<FileId, number[]>();
      for (const p of running) {
        const list = byImage.get(p.image);
        if (list) list.push(p.pid);
        else byImage.set(p.image, [p.pid]);
      }
      const hashes = new Map<FileId, string>();
      const gone = new Set<FileId>();
      const results = await source.hashImages(byImage, {
        budget: ctx.budget ?? new ByteBudget(),
        stateDir: ctx.stateDir,
        forceRehash: ctx.forceRehash,
        startedAt: options.clock ? options.clock() : new Date(),
        onHash: options.onHash,
      });
      for (const [image, result] of results) {
        if (result.kind === 'hash') hashes.set(image, result.sha256);
        else if (result.kind === 'gone') gone.add(image);
        else unread.push(result.unread);
      }

      // One stat of <root>/<exe> per distinct path tells whether the path still holds the running image.
      const onDisk = new Map<string, FileId | null>();
      for (const p of running) onDisk.set(p.exe, null);
      for (const [exe, id] of await source.rootIds([...onDisk.keys()])) {
        if (!isFailure(id)) {
          onDisk.set(exe, id);
          continue;
        }
        // Nothing at the path (deleted, or a memfd image): that is `deleted`, not `replaced`.
        if (id.code !== 'ENOENT' && id.code !== 'ENOTDIR') unread.push({ path: exe, reason: id.code });
      }

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
  /** What to read (default: the local file system at ctx.root and ctx.proc). */
  source?: ((ctx: CollectContext) => ProcSource) | undefined;
}

/** The processes collector of the agent (image hashes cached in ctx.stateDir). */
export const processesCollector: Collector<'processes'> = createProcessesCollector();

async function listProc(source: ProcSource): Promise<number[]> {
  try {
    return await source.listPids();
  } catch (err) {
    throw cannotList(source, err);
  }
}

/** Largest etc/passwd read for user names. */
const PASSWD_CAP_BYTES = 16 * 1024 * 1024;

async function readUsers(source: ProcSource, unread: Unread[]): Promise<Map<number, string>> {
  try {
    return parsePasswd((await source.readRootFile('/etc/passwd', PASSWD_CAP_BYTES)).toString('utf8'));
  } catch (err) {
    // No passwd (a minimal image): users are shown by number, which is still a fact.
    if (!vanished(err)) unread.push({ path: '/etc/passwd', reason: err instanceof HashError ? err.code : errnoOf(err) });
    return new Map();
  }
}

async function readProcess(source: ProcSource, pid: number, users: Map<number, string>, servicesOnly: boolean): Promise<ProcessRead> {
  const exePath = `/proc/${pid}/exe`;
  let reading = `/proc/${pid}/stat`;
  try {
    const stat0 = parseStat(await source.readText(`${pid}/stat`, PROC_TEXT_CAP_BYTES));
    if (!stat0) return { kind: 'unread', unread: { path: `/proc/${pid}/stat`, reason: 'unparsable stat line' } };
    if (isKernelThread(stat0, null, true)) return SKIP;
    // A zombie (or a task being reaped) has no image left to describe.
    if (stat0.state === 'Z' || stat0.state === 'X') return SKIP;
    if (servicesOnly && !(await isServiceProcess(source, pid, stat0.ppid))) return SKIP;
    reading = `/proc/${pid}/status`;
    const status = parseStatus(await source.readText(`${pid}/status`, PROC_TEXT_CAP_BYTES));
    if (!status) return { kind: 'unread', unread: { path: `/proc/${pid}/status`, reason: 'no Uid: line' } };
    if (isKernelThread(stat0, status, true)) return SKIP;

    let target: string;
    try {
      target = await source.readlink(`${pid}/exe`);
    } catch (err) {
      // No exe: a kernel thread on a kernel without PF_KTHREAD/Kthread:, or a process
      // that exited (or is exiting) since the stat was read. Both are left out.
      if (vanished(err)) return SKIP;
      return { kind: 'unread', unread: { path: exePath, reason: errnoOf(err) } };
    }
    const exe = parseExeLink(target, source.root);
    return {
      kind: 'process',
      process: {
        pid,
        exe: exe.path,
        deleted: exe.deleted,
        user: users.get(status.realUid) ?? String(status.realUid),
      },
    };
  } catch (err) {
    if (vanished(err)) return SKIP;
    return { kind: 'unread', unread: { path: reading, reason: errnoOf(err) } };
  }
}
