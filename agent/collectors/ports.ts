import { readdir, readFile, readlink } from 'node:fs/promises';
import { mapLimit } from '../limit.js';
import { join } from 'node:path';
import type { PortEntry, Unread } from '../protocol/manifest.js';
import { DriftError, errnoOf } from '../protocol/errors.js';
import type { CollectContext, Collector, CollectResult } from './contract.js';
import {
  NET_TABLES,
  isListening,
  listPids,
  parseNetTable,
  parseSocketLink,
  parseStat,
  portKey,
  readExe,
  requireProc,
  vanished,
} from './proc.js';
import { isServiceProcess } from './processes.js';

/**
 * Listening sockets from `<ctx.proc>/net/{tcp,tcp6,udp,udp6}`, keyed
 * `proto:address:port` (`tcp:0.0.0.0:22`, `tcp6:[::]:22`, `udp:127.0.0.1:323`):
 * TCP in LISTEN, UDP bound and unconnected. Each is tied to its process by socket
 * inode, through the `socket:[INODE]` links in /proc/PID/fd; `process` is that
 * process's executable path (left out when no process could be found).
 *
 * A table that does not exist (a kernel without IPv6) is not an error; one that
 * cannot be read goes to `unread`. The tables show the network namespace of the
 * process reading them.
 *
 * Unless `ctx.processScope` is `all`, only sockets a service's process holds (see
 * `isServiceProcess`) are recorded, and those whose holder is unknown.
 *
 * A socket held by several processes (a forking server, socket activation) is
 * given to the executable most of its holders run, PID 1 counted only when no
 * other process holds it (the init system hands sockets to the services); ties go
 * to the first path in sort order, so the entry is stable.
 */
export const portsCollector: Collector<'ports'> = {
  section: 'ports',
  async collect(ctx: CollectContext): Promise<CollectResult<PortEntry>> {
    const proc = requireProc(ctx, 'ports');
    const unread: Unread[] = [];
    const listening: { key: string; inode: string }[] = [];
    for (const table of NET_TABLES) {
      let text: string;
      try {
        text = await readFile(join(proc, 'net', table), 'utf8');
      } catch (err) {
        if (!vanished(err)) unread.push({ path: `/proc/net/${table}`, reason: errnoOf(err) });
        continue;
      }
      for (const row of parseNetTable(text)) {
        if (isListening(table, row)) listening.push({ key: portKey(table, row.localAddress, row.localPort), inode: row.inode });
      }
    }

    const entries: Record<string, PortEntry> = {};
    if (listening.length === 0) return { entries, unread };

    const wanted = new Set(listening.map((l) => l.inode));
    const { holders, unreadable } = await socketHolders(proc, wanted);
    const exes = new Map<number, string | null>();
    for (const pids of holders.values()) for (const pid of pids) exes.set(pid, null);
    const exeUnread: { pid: number; reason: string }[] = [];
    await mapLimit([...exes.keys()], 16, async (pid) => {
      try {
        exes.set(pid, (await readExe(proc, pid, ctx.root)).path);
      } catch (err) {
        // The holder exited or has no image: the socket is simply not tied to it.
        // Any other error (EACCES, EPERM) hides who holds the socket.
        if (!vanished(err)) exeUnread.push({ pid, reason: errnoOf(err) });
      }
    });
    exeUnread.sort((a, b) => a.pid - b.pid);
    for (const { pid, reason } of exeUnread) unread.push({ path: `/proc/${pid}/exe`, reason });

    // Unless every process is recorded, a socket held only by processes that are not
    // a service's (a build's test server on an ephemeral port, a login session's
    // tool) is left out; one whose holder is unknown is kept: it cannot be judged.
    const service = new Map<number, boolean>();
    if (ctx.processScope !== 'all') {
      await mapLimit([...exes.keys()], 16, async (pid) => {
        try {
          const st = parseStat(await readFile(join(proc, String(pid), 'stat'), 'utf8'));
          service.set(pid, st !== null && (await isServiceProcess(proc, pid, st.ppid)));
        } catch {
          service.set(pid, false);
        }
      });
    }
    let unowned = false;
    for (const { key, inode } of listening) {
      const held = holders.get(inode) ?? [];
      if (ctx.processScope !== 'all' && held.length > 0 && !held.some((pid) => service.get(pid) === true)) continue;
      const process = ownerOf(held, exes);
      if (process === null) unowned = true;
      const current = entries[key];
      // The same address and port more than once (SO_REUSEPORT): keep the first owner in sort order.
      if (current === undefined) entries[key] = process === null ? {} : { process };
      else if (process !== null && (current.process === undefined || process < current.process)) current.process = process;
    }
    // Unreadable fd folders matter only when they may hide the owner of a socket.
    if (unowned) for (const { pid, reason } of unreadable) unread.push({ path: `/proc/${pid}/fd`, reason });
    return { entries, unread };
  },
};

/**
 * Scans every /proc/PID/fd for `socket:[INODE]` links among `wanted`, giving
 * inode → the PIDs holding it, and the PIDs whose fd folder was not readable.
 */
async function socketHolders(proc: string, wanted: ReadonlySet<string>): Promise<{ holders: Map<string, number[]>; unreadable: { pid: number; reason: string }[] }> {
  let pids: number[];
  try {
    pids = await listPids(proc);
  } catch (err) {
    throw new DriftError('DRIFT_ERR_IO', `cannot list processes in ${proc}: ${errnoOf(err)}; check that --proc names a mounted /proc`, { cause: err });
  }
  const holders = new Map<string, number[]>();
  const unreadable: { pid: number; reason: string }[] = [];
  await mapLimit(pids, 16, async (pid) => {
    const fdDir = join(proc, String(pid), 'fd');
    let fds: string[];
    try {
      fds = await readdir(fdDir);
    } catch (err) {
      if (!vanished(err)) unreadable.push({ pid, reason: errnoOf(err) });
      return;
    }
    let denied: string | null = null;
    for (const fd of fds) {
      let target: string;
      try {
        target = await readlink(join(fdDir, fd));
      } catch (err) {
        // A vanished fd was closed since the folder was listed; any other error hides a holder.
        if (!vanished(err)) denied ??= errnoOf(err);
        continue;
      }
      const inode = parseSocketLink(target);
      if (inode === null || !wanted.has(inode)) continue;
      const list = holders.get(inode);
      if (list === undefined) holders.set(inode, [pid]);
      else if (!list.includes(pid)) list.push(pid);
    }
    if (denied !== null) unreadable.push({ pid, reason: denied });
  });
  unreadable.sort((a, b) => a.pid - b.pid);
  return { holders, unreadable };
}

/** Chooses the executable a socket belongs to among the processes holding it (see portsCollector). */
function ownerOf(pids: readonly number[], exes: ReadonlyMap<number, string | null>): string | null {
  return vote(pids.filter((p) => p !== 1), exes) ?? vote(pids, exes);
}

function vote(counted: readonly number[], exes: ReadonlyMap<number, string | null>): string | null {
  const votes = new Map<string, number>();
  for (const pid of counted) {
    const exe = exes.get(pid);
    if (exe) votes.set(exe, (votes.get(exe) ?? 0) + 1);
  }
  let best: string | null = null;
  let bestVotes = 0;
  for (const [exe, n] of votes) {
    if (n > bestVotes || (n === bestVotes && best !== null && exe < best)) {
      best = exe;
      bestVotes = n;
    }
  }
  return best;
}
