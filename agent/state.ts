import { mkdir, open, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { DigestsSchema, type Digests } from './protocol/manifest.js';
import { DriftError, errnoOf } from './protocol/errors.js';
import { assertPrivateDir, writeFileAtomic } from './atomic.js';

/**
 * The agent's state folder (`/var/lib/drift` under systemd's StateDirectory=drift):
 *
 * - `node-key.json` (mode 0600): the node key the collector issued at enrollment, with
 *   the host id and collector URL it was issued for (a different host id or collector
 *   means a new enrollment);
 * - `state.json`: the last seq used, the digests the collector last accepted, and the
 *   number of spooled reports dropped and not yet reported;
 * - `spool/`: reports waiting for the collector (agent/transport/spool.ts).
 *
 * Every write is atomic (agent/atomic.ts) so a crash or power loss leaves either the
 * old or the new state, never a torn file. The folder must be owned by the agent's
 * user and writable by no one else: the agent refuses to start otherwise.
 */

/** The credentials of one enrollment. */
export const NodeKeySchema = z.object({
  hostId: z.string().min(1),
  collector: z.string().min(1),
  nodeKey: z.string().min(1),
  enrolledAt: z.string(),
});
export type NodeKey = z.infer<typeof NodeKeySchema>;

/** The counters the agent must not lose across restarts. */
export const AgentStateSchema = z.object({
  /** The last seq written into a report; the next one is strictly greater. */
  seq: z.number().int().nonnegative(),
  /** The digests of the last report the collector accepted, with the host they were for. */
  lastAccepted: z.object({ hostId: z.string(), collector: z.string(), digests: DigestsSchema }).nullable(),
  /** Spooled reports dropped (spool full) and not yet announced to the collector. */
  spoolDropped: z.number().int().nonnegative(),
});
export type AgentState = z.infer<typeof AgentStateSchema>;

const NODE_KEY_FILE = 'node-key.json';
const STATE_FILE = 'state.json';

async function readJson(path: string): Promise<unknown | undefined> {
  let text: string;
  try { text = await readFile(path, 'utf8'); } catch (err) {
    if (errnoOf(err) === 'ENOENT') return undefined;
    throw new DriftError('DRIFT_ERR_IO', `cannot read agent state ${path}: ${errnoOf(err)}; check the permissions of the state folder`, { cause: err });
  }
  try { return JSON.parse(text) as unknown; } catch {
    // A corrupt state file must not stop the agent for ever: it is treated as absent
    // (a new enrollment, a new seq above the old ones since seq follows the clock).
    return null;
  }
}

/** The state folder, opened. Not safe for two agents at once: `lock()` guards that. */
export class StateDir {
  readonly dir: string;
  private state: AgentState = { seq: 0, lastAccepted: null, spoolDropped: 0 };

  private constructor(dir: string) { this.dir = dir; }

  /** Create the folder if needed (mode 0700) and load the state. */
  static async open(dir: string): Promise<StateDir> {
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw new DriftError('DRIFT_ERR_IO', `cannot use state folder ${dir}: ${errnoOf(err)}; pass --state-dir with a writable folder`, { cause: err });
    }
    assertPrivateDir(dir);
    const s = new StateDir(dir);
    const raw = await readJson(join(dir, STATE_FILE));
    const parsed = AgentStateSchema.safeParse(raw);
    if (parsed.success) s.state = parsed.data;
    return s;
  }

  /** Where the spool lives. */
  get spoolDir(): string { return join(this.dir, 'spool'); }

  private async save(): Promise<void> {
    await writeFileAtomic(join(this.dir, STATE_FILE), `${JSON.stringify(this.state)}\n`, 0o600);
  }

  /**
   * Take the next seq and persist it before returning, so a seq is never used twice.
   * The seq follows the clock in milliseconds (and is always above the last one), so an
   * agent that lost its state folder still sends seqs above those the collector saw.
   */
  async nextSeq(now: number = Date.now()): Promise<number> {
    this.state.seq = Math.max(this.state.seq + 1, Math.floor(now));
    await this.save();
    return this.state.seq;
  }

  /** The digests the collector last accepted from this host at this collector, if any. */
  lastAcceptedDigests(hostId: string, collector: string): Digests | null {
    const last = this.state.lastAccepted;
    return last && last.hostId === hostId && last.collector === collector ? last.digests : null;
  }

  /** Remember the digests of an accepted report. */
  async recordAccepted(hostId: string, collector: string, digests: Digests): Promise<void> {
    this.state.lastAccepted = { hostId, collector, digests };
    await this.save();
  }

  /** Count `n` more dropped reports (persisted). */
  async addDropped(n: number): Promise<void> {
    if (n <= 0) return;
    this.state.spoolDropped += n;
    await this.save();
  }

  /** Dropped reports not yet announced. */
  get spoolDropped(): number { return this.state.spoolDropped; }

  /** `n` dropped reports were announced in an accepted report: take them off the count. */
  async ackDropped(n: number): Promise<void> {
    if (n <= 0) return;
    this.state.spoolDropped = Math.max(0, this.state.spoolDropped - n);
    await this.save();
  }

  /** The node key for this host and collector, or null when the agent must enroll. */
  async readNodeKey(hostId: string, collector: string): Promise<string | null> {
    const raw = await readJson(join(this.dir, NODE_KEY_FILE));
    const parsed = NodeKeySchema.safeParse(raw);
    if (!parsed.success) return null;
    const k = parsed.data;
    return k.hostId === hostId && k.collector === collector ? k.nodeKey : null;
  }

  /** Store a node key, mode 0600 from the first byte. */
  async writeNodeKey(key: NodeKey): Promise<void> {
    await writeFileAtomic(join(this.dir, NODE_KEY_FILE), `${JSON.stringify(key)}\n`, 0o600);
  }

  /** Forget the node key (the collector refused it). */
  async dropNodeKey(): Promise<void> {
    await rm(join(this.dir, NODE_KEY_FILE), { force: true });
  }

  /**
   * Take the folder's lock (`agent.pid`, created exclusively). The lock is held only
   * while its pid runs a drift agent (its /proc/PID/cmdline names "drift" and "agent"):
   * a lock left by a process that no longer runs, or whose pid now belongs to another
   * program (after a reboot, pid reuse), is taken over; a live one is an error naming
   * its pid.
   * Returns the release function.
   */
  async lock(): Promise<() => Promise<void>> {
    const path = join(this.dir, 'agent.pid');
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fh = await open(path, 'wx', 0o644);
        await fh.writeFile(`${process.pid}\n`);
        await fh.close();
        heldLocks.add(path);
        return async () => { heldLocks.delete(path); await rm(path, { force: true }); };
      } catch (err) {
        if (errnoOf(err) !== 'EEXIST') throw new DriftError('DRIFT_ERR_IO', `cannot lock state folder ${this.dir}: ${errnoOf(err)}`, { cause: err });
        const pid = Number.parseInt((await readFile(path, 'utf8').catch(() => '')).trim(), 10);
        // Our own pid in the file is a live lock only if this process took it (a pid file
        // left before a reboot may name any pid, ours included).
        const held = pid === process.pid ? heldLocks.has(path) : Number.isInteger(pid) && pid > 0 && (await isDriftAgent(pid));
        if (held) {
          throw new DriftError('DRIFT_ERR_USAGE', `another drift agent (pid ${pid}) uses state folder ${this.dir}; stop it or pass another --state-dir`);
        }
        await rm(path, { force: true });
      }
    }
    throw new DriftError('DRIFT_ERR_IO', `cannot lock state folder ${this.dir}: the lock file keeps coming back`);
  }
}

/** Lock files this process holds. */
const heldLocks = new Set<string>();

function isAlive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch (err) { return errnoOf(err) === 'EPERM'; }
}

/** Whether `pid` runs a drift agent, judged by its command line. */
async function isDriftAgent(pid: number): Promise<boolean> {
  if (!isAlive(pid)) return false;
  let cmdline: string;
  try { cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8'); } catch (err) {
    if (errnoOf(err) === 'ENOENT') return false;
    // No readable /proc: cannot tell, so a live pid keeps the lock (the safe side).
    return true;
  }
  const words = cmdline.split('\0').join(' ');
  return words.includes('drift') && words.includes('agent');
}
