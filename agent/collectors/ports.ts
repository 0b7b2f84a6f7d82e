import { mapLimit } from '../limit.js';
import type { PortEntry, Unread } from '../protocol/manifest.js';
import { DriftError, errnoOf } from '../protocol/errors.js';
import type { CollectContext, Collector, CollectResult } from './contract.js';
import {
  NET_TABLES,
  isListening,
  parseExeLink,
  parseNetTable,
  parseStat,
  portKey,
  requireProc,
  vanished,
} from './proc.js';
import { LocalProcSource, cannotList, NET_TABLE_CAP_BYTES, PROC_TEXT_CAP_BYTES, type ProcSource } from './proc-source.js';
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
export function createPortsCollector(sourceOf: (ctx: CollectContext) => ProcSource = (ctx) => new LocalProcSource(ctx.root, requireProc(ctx, 'ports'))): Collector<'ports'> {
  return {
    section: 'ports',
    async collect(ctx: CollectContext): Promise<CollectResult<PortEntry>> {
      const source = sourceOf(ctx);
      const unread: Unread[] = [];
      const listening: { key: string; inode: string }[] = [];
      for (const table of NET_TABLES) {
        let text: string;
        try {
          text = await source.readText(`net/${table}`, NET_TABLE_CAP_BYTES);
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
      const { holders, unreadable } = await socketHolders(source, wanted);
      const exes = new Map<number, string | null>();
      for (const pids of holders.values()) for (const pid of pids) exes.set(pid, null);
      const exeUnread: { pid: number; reason: string }[] = [];
      await mapLimit([...exes.keys()], 16, async (pid) => {
        try {
          exes.set(pid, parseExeLink(await source.readlink(`${pid}/exe`), source.root).path);
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
            const st = parseStat(await source.readText(`${pid}/stat`, PROC_TEXT_CAP_BYTES));
            service.set(pid, st !== null && (await isServiceProcess(source, pid, st.ppid)));
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
}

/** The ports collector of the agent (the local /proc). */
export const portsCollector: Collector<'ports'> = createPortsCollector();

/** The holders of the sockets in `wanted` (see ProcSource.socketHolders); throws DriftError when the /proc cannot be listed. */
async function socketHolders(source: ProcSource, wanted: ReadonlySet<string>): ReturnType<ProcSource['socketHolders']> {
  try {
    return await source.socketHolders(wanted);
  } catch (err) {
    // A source's own refusal (a remote listing past its bound) says what it is.
    throw err instanceof DriftError ? err : cannotList(source, err);
  }
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
