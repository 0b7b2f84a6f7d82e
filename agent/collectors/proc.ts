import { DriftError } from '../protocol/errors.js';
import type { CollectContext } from './contract.js';

/**
 * Reading /proc, shared by the processes and ports collectors: pure parsers over
 * the kernel's text (stat, status, passwd, net/tcp…). Parsers take text and
 * return plain data; they never touch the disk, so they are tested against
 * recorded /proc output. The collectors read through a ProcSource (proc-source.ts).
 */

/** `PF_KTHREAD` in the flags field of /proc/PID/stat: the task is a kernel thread. */
export const PF_KTHREAD = 0x00200000;

/** The fields of /proc/PID/stat the collectors use. */
export interface ProcStat {
  pid: number;
  /** The command name (at most 15 bytes); may itself hold spaces and parentheses. */
  comm: string;
  /** One letter: R, S, D, Z (zombie), X (dead), I (idle kernel thread), … */
  state: string;
  ppid: number;
  /** The kernel's task flags (PF_*). */
  flags: number;
}

/**
 * Parses /proc/PID/stat. The command name sits between the first `(` and the
 * LAST `)`, since a name may itself contain `) (`; the fields after it are
 * space-separated. Returns null for text that is not a stat line.
 */
export function parseStat(text: string): ProcStat | null {
  const lparen = text.indexOf('(');
  const rparen = text.lastIndexOf(')');
  if (lparen < 1 || rparen < lparen) return null;
  const pid = Number(text.slice(0, lparen).trim());
  const rest = text.slice(rparen + 1).trim().split(/\s+/);
  // rest[0] is field 3 (state); ppid is field 4 and flags field 9.
  const state = rest[0];
  const ppid = Number(rest[1]);
  const flags = Number(rest[6]);
  if (!Number.isInteger(pid) || state === undefined || !/^[A-Za-z]$/.test(state)) return null;
  if (!Number.isInteger(ppid) || !Number.isInteger(flags)) return null;
  return { pid, comm: text.slice(lparen + 1, rparen), state, ppid, flags };
}

/** The fields of /proc/PID/status the collectors use. */
export interface ProcStatus {
  /** Real uid: the first number of the `Uid:` line. */
  realUid: number;
  /** The `Kthread:` line of kernels from 6.x on; null where the kernel has none. */
  kthread: boolean | null;
}

/** Parses /proc/PID/status; null when it has no readable `Uid:` line. */
export function parseStatus(text: string): ProcStatus | null {
  let realUid: number | null = null;
  let kthread: boolean | null = null;
  for (const line of text.split('\n')) {
    if (line.startsWith('Uid:')) {
      const first = line.slice(4).trim().split(/\s+/)[0];
      const uid = Number(first);
      if (first !== undefined && first !== '' && Number.isInteger(uid) && uid >= 0) realUid = uid;
    } else if (line.startsWith('Kthread:')) {
      kthread = line.slice(8).trim() === '1';
    }
  }
  return realUid === null ? null : { realUid, kthread };
}

/**
 * Whether a task is a kernel thread: the PF_KTHREAD flag, the `Kthread:` status
 * line, or, for kernels that set neither, a task without an executable that is
 * kthreadd itself or one of its children.
 */
export function isKernelThread(stat: ProcStat, status: ProcStatus | null, hasExe: boolean): boolean {
  if ((stat.flags & PF_KTHREAD) !== 0) return true;
  if (status?.kthread === true) return true;
  if (hasExe) return false;
  return stat.ppid === 2 || (stat.ppid === 0 && stat.comm === 'kthreadd');
}

/**
 * Parses an /etc/passwd text into uid → user name. The first line of a uid wins,
 * as getpwuid(3) does; comments and malformed lines are passed over.
 */
export function parsePasswd(text: string): Map<number, string> {
  const users = new Map<number, string>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const [name, , uidText] = line.split(':');
    const uid = Number(uidText);
    if (!name || uidText === undefined || uidText === '' || !Number.isInteger(uid)) continue;
    if (!users.has(uid)) users.set(uid, name);
  }
  return users;
}

/** An executable path as the manifest records it. */
export interface ExePath {
  /** Absolute path as seen from the collected root. */
  path: string;
  /** The kernel marked the link ` (deleted)`: the file was unlinked after exec. */
  deleted: boolean;
}

const DELETED_SUFFIX = ' (deleted)';

/**
 * Turns the target of /proc/PID/exe into a manifest path: strips and records the
 * kernel's ` (deleted)` suffix, and shows a target under `root` (a process started
 * from inside the collected root, or a fixture) as seen from that root.
 */
export function parseExeLink(target: string, root: string): ExePath {
  const deleted = target.endsWith(DELETED_SUFFIX);
  let path = deleted ? target.slice(0, -DELETED_SUFFIX.length) : target;
  const prefix = root.replace(/\/+$/, '');
  if (prefix !== '' && path.startsWith(`${prefix}/`)) path = path.slice(prefix.length);
  return { path, deleted };
}

/** The inode of a `socket:[INODE]` fd link target, else null. */
export function parseSocketLink(target: string): string | null {
  const m = /^socket:\[(\d+)\]$/.exec(target);
  return m?.[1] ?? null;
}

/** The four socket tables of /proc/net that hold listening sockets. */
export const NET_TABLES = ['tcp', 'tcp6', 'udp', 'udp6'] as const;
export type NetTable = (typeof NET_TABLES)[number];

/** One row of a /proc/net/{tcp,tcp6,udp,udp6} table. */
export interface SocketRow {
  localAddress: string;
  localPort: number;
  remoteAddress: string;
  remotePort: number;
  /** The kernel's TCP state number (TCP_LISTEN = 0x0A, TCP_CLOSE = 0x07). */
  state: number;
  /** Socket inode, as in the `socket:[INODE]` fd links. */
  inode: string;
}

/** TCP_LISTEN in include/net/tcp_states.h. */
export const TCP_LISTEN = 0x0a;
/** TCP_CLOSE: an unconnected UDP socket is reported in this state. */
export const TCP_CLOSE = 0x07;

/**
 * Parses a /proc/net/{tcp,tcp6,udp,udp6} table. Addresses are the kernel's hex
 * dump of the address in host byte order, read here as little-endian (x86, arm64):
 * an IPv4 address is one 32-bit word, an IPv6 address four. Ports are plain hex.
 * The header and any line that is not a socket row are passed over.
 */
export function parseNetTable(text: string): SocketRow[] {
  const rows: SocketRow[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || !/^\d+:$/.test(f[0] ?? '')) continue;
    const local = splitEndpoint(f[1] ?? '');
    const remote = splitEndpoint(f[2] ?? '');
    const state = Number.parseInt(f[3] ?? '', 16);
    const inode = f[9] ?? '';
    if (!local || !remote || Number.isNaN(state) || !/^\d+$/.test(inode)) continue;
    rows.push({
      localAddress: local.address,
      localPort: local.port,
      remoteAddress: remote.address,
      remotePort: remote.port,
      state,
      inode,
    });
  }
  return rows;
}

function splitEndpoint(text: string): { address: string; port: number } | null {
  const m = /^([0-9A-Fa-f]{8}|[0-9A-Fa-f]{32}):([0-9A-Fa-f]{4})$/.exec(text);
  if (!m?.[1] || !m[2]) return null;
  return { address: decodeHexAddress(m[1]), port: Number.parseInt(m[2], 16) };
}

/**
 * Decodes a /proc/net hex address: 8 hex digits → dotted IPv4, 32 → IPv6 in the
 * compressed form Node's net module prints (inet_ntop: `::`, `::1`, `::ffff:127.0.0.1`).
 */
export function decodeHexAddress(hex: string): string {
  const bytes: number[] = [];
  for (let w = 0; w < hex.length; w += 8) {
    // Each 32-bit word is stored little-endian: its bytes come out reversed.
    for (let b = 3; b >= 0; b--) bytes.push(Number.parseInt(hex.slice(w + b * 2, w + b * 2 + 2), 16));
  }
  if (bytes.length === 4) return bytes.join('.');
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push(((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0));
  return formatIPv6(words);
}

/**
 * Prints eight 16-bit words as IPv6 text exactly as glibc's inet_ntop does (and
 * so Node): lowercase hex without leading zeros, the first longest run of two or
 * more zero words shown as `::`, and the last 32 bits dotted for IPv4-mapped
 * (`::ffff:a.b.c.d`) and IPv4-compatible (`::a.b.c.d`) addresses.
 */
export function formatIPv6(words: readonly number[]): string {
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  if (bestLen < 2) bestStart = -1;
  const embedsV4 = bestStart === 0 && (bestLen === 6 || (bestLen === 5 && words[5] === 0xffff));
  let out = '';
  for (let i = 0; i < 8; i++) {
    if (i === bestStart) {
      out += i === 0 ? '::' : ':';
      i += bestLen - 1;
      continue;
    }
    if (embedsV4 && i === 6) {
      const hi = words[6] ?? 0;
      const lo = words[7] ?? 0;
      out += `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
      break;
    }
    out += (words[i] ?? 0).toString(16);
    if (i < 7) out += ':';
  }
  return out;
}

/**
 * Whether a row is a listening socket: TCP in LISTEN; UDP bound and unconnected
 * (state CLOSE with an all-zero remote address and port).
 */
export function isListening(table: NetTable, row: SocketRow): boolean {
  if (table === 'tcp' || table === 'tcp6') return row.state === TCP_LISTEN;
  return row.state === TCP_CLOSE && row.remotePort === 0 && (row.remoteAddress === '0.0.0.0' || row.remoteAddress === '::');
}

/** The manifest key of a listening socket: `tcp:0.0.0.0:22`, `tcp6:[::]:22`. */
export function portKey(table: NetTable, address: string, port: number): string {
  return table.endsWith('6') ? `${table}:[${address}]:${port}` : `${table}:${address}:${port}`;
}

/** True for the errors of a process that exited while it was being read. */
export function vanished(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'ENOENT' || code === 'ESRCH';
}

/** A file's identity: `dev:inode`. */
export type FileId = string;

/** The /proc folder of the context; a collector of live state cannot run without one. */
export function requireProc(ctx: CollectContext, section: string): string {
  if (ctx.proc === null) {
    throw new DriftError('DRIFT_ERR_USAGE', `the ${section} collector needs a /proc to read: pass --proc DIR (an offline root has no running processes)`);
  }
  return ctx.proc;
}

