import { isUtf8 } from 'node:buffer';
import { posix } from 'node:path';
import { contentFor, deviceText } from '../collectors/files.js';
import { CONTENT_CAP_BYTES, FlagErrors, assignXattrs, enters, hashBudget, ignored, newEntry, readFailed, rootScope, ruleAt, unreadName, wantsContent, type Scope } from '../collectors/file-entry.js';
import { decodeXattrs } from '../collectors/attrs.js';
import { flagsText, parseLsattr } from '../collectors/flags.js';
import { addResolvedAliases, aliasCandidates } from '../collectors/packages/aliases.js';
import { collectApk } from '../collectors/packages/apk.js';
import { collectDpkg, PACKAGE_DB_MAX_BYTES, type DbReader } from '../collectors/packages/dpkg.js';
import { mergePackageParts } from '../collectors/packages/index.js';
import type { CollectContext, CollectResult, Collector } from '../collectors/contract.js';
import { compilePathRules, withBaseAt } from '../glob.js';
import { ByteBudget, REASONS, TYPE_NAMES, sha256Hex } from '../hash.js';
import { parseSocketLink, vanished, type FileId } from '../collectors/proc.js';
import { addHolder, type ImageHash, type ImageHashOptions, type ProcSource, type SocketHolders } from '../collectors/proc-source.js';
import { createProcessesCollector } from '../collectors/processes.js';
import { createPortsCollector } from '../collectors/ports.js';
import { readHostInfo, type IdentityReader } from '../identity.js';
import { collectManifest } from '../manifest.js';
import { DriftError } from '../protocol/errors.js';
import { compareUnread } from '../protocol/unread.js';
import { LIMITS, type FileEntry, type FileType, type Manifest, type PackageEntry, type SectionName, type Unread } from '../protocol/manifest.js';
import type { RuleSet, WatchRule } from '../protocol/rules.js';
import type { RemoteSession } from './session.js';

/**
 * Agentless collection: the manifest of a host without drift, read through an SSH
 * session with fixed read-only commands and SFTP reads, and run through the same
 * decision code as a local collection (the files section's decisions in
 * collectors/file-entry.ts, contentFor, secretKind, deviceText, the dpkg/apk parsers,
 * the identity parsers, collectManifest).
 *
 * Nothing host-controlled is ever put in a command line: every command is one of
 * AGENTLESS_COMMANDS, and the paths they work on go NUL-separated on stdin. Every
 * output is bounded and parsed as hostile: a record that does not parse refuses the
 * listing, a hash line that does not answer the path asked marks that path unread.
 * Nothing is written on the host: no temporary file, no state.
 *
 * Processes and ports are read by the local collectors through RemoteProcSource (the
 * host's /proc through SFTP, image identities and hashes and socket links through
 * fixed commands); a host that shows no process in /proc gets a note in `unread`.
 */

/**
 * The remote commands of an agentless collection, fixed strings (run through the
 * login shell of the user, under LC_ALL=C so that messages are parseable):
 * - `types`: the type and link target of given paths (the folders above each walk
 *   base, and the folders a package path runs through), no descent;
 * - `list`: every path under each walk base, with its lstat facts (never following a link);
 * - `hash`: the sha256 of the regular files whose hash the manifest records;
 * - `flags`: inode flags (lsattr, from e2fsprogs) of regular files and folders;
 * - `xattrs`: extended attributes (getfattr, from attr; absent on minimal images);
 * - `devices`: major and minor numbers of device nodes;
 * - `identify`: device, inode, mode, size and blocks of what given paths lead to
 *   (links followed): the images of running processes (`/proc/PID/exe`) and the
 *   files at their paths;
 * - `imageHash`: the sha256 of what given paths lead to (the images of running
 *   processes), between two `stat -L` runs of the same paths, so that a hash is only
 *   taken where the file it read is the one stat'ed before and after (same device,
 *   inode, size, mtime and ctime);
 * - `sockets`: every `socket:[INODE]` link in the fd folders of /proc, with the
 *   folder it is in (one listing instead of a readlink per descriptor);
 * - `texts`: the stat, status and cgroup files of every process, each line after
 *   its file's path (one run instead of four SFTP requests per file).
 */
/** What the `imageHash` command's stat prints of a path: the path, `dev:inode`, the raw mode in hex, the size, mtime and ctime (to the nanosecond). */
const IMAGE_STAT = '%n\\0%d:%i\\0%f\\0%s\\0%y\\0%z\\0';

export const AGENTLESS_COMMANDS = {
  types: "LC_ALL=C find -files0-from - -maxdepth 0 -printf '%p\\0%y\\0%l\\0'",
  list: "LC_ALL=C find -files0-from - -printf '%p\\0%y\\0%m\\0%U\\0%G\\0%s\\0%T@\\0%n\\0%D\\0%b\\0%l\\0'",
  hash: 'LC_ALL=C xargs -0 -r sha256sum -z --',
  flags: 'LC_ALL=C xargs -0 -r lsattr -d --',
  xattrs: 'LC_ALL=C xargs -0 -r getfattr -h -d -m - -e hex --absolute-names --',
  devices: "LC_ALL=C xargs -0 -r stat --printf '%t %T\\0' --",
  identify: "LC_ALL=C xargs -0 -r stat -L --printf '%n\\0%d:%i\\0%f\\0%s\\0%b\\0' --",
  imageHash: `LC_ALL=C xargs -0 -r sh -c 'printf "B\\0"; stat -L --printf "${IMAGE_STAT}" -- "$@"; printf "H\\0"; sha256sum -z -- "$@"; printf "A\\0"; stat -L --printf "${IMAGE_STAT}" -- "$@"' sh`,
  sockets: "LC_ALL=C find /proc/[0-9]*/fd -mindepth 1 -maxdepth 1 -lname 'socket:*' -printf '%h\\0%l\\0'",
  texts: "LC_ALL=C find /proc -mindepth 2 -maxdepth 2 -path '/proc/[0-9]*/*' \\( -name stat -o -name status -o -name cgroup \\) -exec grep -a -H --null '' {} +",
} as const;

/** Fields per record of the `list` command. */
const LIST_FIELDS = 11;
/** The most the listing may weigh (a host of a few million watched paths). */
export const MAX_LISTING_BYTES = 512 * 1024 * 1024;
/** Output allowed per path for the per-path commands (a hash line, a flags line, a device line), beyond the path itself. */
const BYTES_PER_PATH = 256;
/** The most the xattr dump may weigh per path (names and hex values of up to MAX_XATTRS attributes). */
const XATTR_BYTES_PER_PATH = 256 * 1024;
/** Names accepted from one SFTP folder listing (dpkg's updates/ journal holds a handful). */
const MAX_LIST_NAMES = 100_000;
/** Paths at least this long cannot be stat'ed on Linux (PATH_MAX): such a listed path is reported unread, as the local walk does. */
const PATH_MAX = 4096;
/** The most one SFTP read asks for (OpenSSH answers at most 256 KiB, most servers less). */
const SFTP_CHUNK_BYTES = 32 * 1024;
/** Files read over SFTP at once. */
const SFTP_PARALLEL = 16;

/** An SFTP error or a check of ours, as an Error with the errno-like `code` the collectors record. */
function codeError(code: string): Error {
  return Object.assign(new Error(code), { code });
}

/** The parts of ssh2's SFTP client used here. */
interface SftpStats { mode: number; size: number }
interface SftpClient {
  lstat(path: string, cb: (err: (Error & { code?: number }) | undefined, st: SftpStats) => void): void;
  open(path: string, flags: string, cb: (err: (Error & { code?: number }) | undefined, handle: Buffer) => void): void;
  fstat(handle: Buffer, cb: (err: (Error & { code?: number }) | undefined, st: SftpStats) => void): void;
  read(handle: Buffer, buf: Buffer, off: number, len: number, pos: number, cb: (err: (Error & { code?: number }) | undefined, n: number) => void): void;
  close(handle: Buffer, cb: (err: Error | undefined) => void): void;
  readdir(path: string, cb: (err: (Error & { code?: number }) | undefined, list: { filename: string }[]) => void): void;
  readlink(path: string, cb: (err: (Error & { code?: number }) | undefined, target: string) => void): void;
  end(): void;
}

/** SFTP status codes as errno codes. */
function sftpCode(err: (Error & { code?: number }) | undefined): string {
  switch (err?.code) {
    case 2: return 'ENOENT';
    case 3: return 'EACCES';
    default: return 'EIO';
  }
}

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;

/**
 * Small files of the remote host read through SFTP: lstat first (a symlink is
 * refused with ELOOP, anything but a regular file with REASONS.notRegular), then
 * read to EOF and at most `cap` bytes (more is refused, never kept). At most
 * SFTP_PARALLEL reads at once.
 */
export class RemoteFiles {
  private running = 0;
  private readonly queue: (() => void)[] = [];

  constructor(private readonly sftp: SftpClient) {}

  private async slot<T>(fn: () => Promise<T>): Promise<T> {
    if (this.running >= SFTP_PARALLEL) await new Promise<void>((r) => this.queue.push(r));
    this.running += 1;
    try {
      return await fn();
    } finally {
      this.running -= 1;
      this.queue.shift()?.();
    }
  }

  /** The bytes of a regular file (null when it does not exist); throws an Error with `code` otherwise. */
  read(path: string, cap: number): Promise<Buffer | null> {
    return this.slot(() => this.readNow(path, cap));
  }

  private async readNow(path: string, cap: number): Promise<Buffer | null> {
    const sftp = this.sftp;
    const st = await new Promise<SftpStats | null>((resolve, reject) => sftp.lstat(path, (err, s) => {
      if (err) (sftpCode(err) === 'ENOENT' ? resolve(null) : reject(codeError(sftpCode(err))));
      else resolve(s);
    }));
    if (st === null) return null;
    if ((st.mode & S_IFMT) === S_IFLNK) throw codeError('ELOOP');
    if ((st.mode & S_IFMT) !== S_IFREG) throw codeError(REASONS.notRegular('not a regular file'));
    if (st.size > cap) throw codeError(`over the per-file byte budget: ${st.size} bytes > ${cap}`);
    const handle = await new Promise<Buffer>((resolve, reject) => sftp.open(path, 'r', (err, h) => (err ? reject(codeError(sftpCode(err))) : resolve(h))));
    try {
      const buf = Buffer.alloc(Math.min(cap, Math.max(st.size, 0)) + 1);
      let n = 0;
      for (;;) {
        const got = await new Promise<number>((resolve, reject) => sftp.read(handle, buf, n, buf.length - n, n, (err, k) => {
          // ssh2 reports EOF as an error with code 1 (SSH_FX_EOF).
          if (err && err.code === 1) resolve(0);
          else if (err) reject(codeError(sftpCode(err)));
          else resolve(k);
        }));
        if (got <= 0) break;
        n += got;
        if (n >= buf.length) {
          // Grown since the lstat: refused rather than read on without bound.
          throw codeError(REASONS.resized(st.size, n));
        }
      }
      return buf.subarray(0, n);
    } finally {
      await new Promise<void>((resolve) => sftp.close(handle, () => resolve()));
    }
  }

  /**
   * The bytes of a file whose size is not known beforehand (a /proc file shows 0):
   * read to EOF, at most `cap` bytes (more is refused, never kept). Throws an Error with `code`.
   */
  readToEnd(path: string, cap: number): Promise<Buffer> {
    return this.slot(async () => {
      const sftp = this.sftp;
      const handle = await new Promise<Buffer>((resolve, reject) => sftp.open(path, 'r', (err, h) => (err ? reject(codeError(sftpCode(err))) : resolve(h))));
      try {
        const chunks: Buffer[] = [];
        let n = 0;
        for (;;) {
          const buf = Buffer.alloc(Math.min(SFTP_CHUNK_BYTES, cap + 1 - n));
          const got = await new Promise<number>((resolve, reject) => sftp.read(handle, buf, 0, buf.length, n, (err, k) => {
            if (err && err.code === 1) resolve(0);
            else if (err) reject(codeError(sftpCode(err)));
            else resolve(k);
          }));
          if (got <= 0) break;
          chunks.push(buf.subarray(0, got));
          n += got;
          if (n > cap) throw codeError(`over ${cap} bytes; not read`);
        }
        return Buffer.concat(chunks);
      } finally {
        await new Promise<void>((resolve) => sftp.close(handle, () => resolve()));
      }
    });
  }

  /** The target of a symbolic link (at most PATH_MAX bytes); throws an Error with `code`. */
  readlink(path: string): Promise<string> {
    return this.slot(() => new Promise((resolve, reject) => this.sftp.readlink(path, (err, target) => {
      if (err) reject(codeError(sftpCode(err)));
      else if (typeof target !== 'string' || Buffer.byteLength(target) >= PATH_MAX) reject(codeError('ENAMETOOLONG'));
      else resolve(target);
    })));
  }

  /** Whether something is at `path` (lstat answers); false when it does not exist. */
  exists(path: string): Promise<boolean> {
    return this.slot(() => new Promise((resolve, reject) => this.sftp.lstat(path, (err) => {
      if (!err) resolve(true);
      else if (sftpCode(err) === 'ENOENT') resolve(false);
      else reject(codeError(sftpCode(err)));
    })));
  }

  /** The names in a folder; throws an Error with `code` (ENOENT when absent). */
  list(path: string): Promise<string[]> {
    return this.slot(() => new Promise((resolve, reject) => this.sftp.readdir(path, (err, list) => {
      if (err) reject(codeError(sftpCode(err)));
      else if (list.length > MAX_LIST_NAMES) reject(codeError(`more than ${MAX_LIST_NAMES} names in the folder; not read`));
      else resolve(list.map((e) => e.filename).filter((n) => n !== '.' && n !== '..'));
    })));
  }

  end(): void {
    this.sftp.end();
  }
}

/** Split `buf` at NUL bytes (a trailing NUL ends the last field). */
export function splitNul(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  for (let nul = buf.indexOf(0, at); nul >= 0; nul = buf.indexOf(0, at)) {
    out.push(buf.subarray(at, nul));
    at = nul + 1;
  }
  if (at < buf.length) out.push(buf.subarray(at));
  return out;
}

/** NUL-terminated paths for a command's stdin. */
function nulList(paths: readonly string[]): Buffer {
  return Buffer.from(paths.map((p) => `${p}\0`).join(''), 'utf8');
}

/** One path of the listing, as find's -printf gave it. */
export interface Listed {
  /** The path (bytes: it may not be UTF-8). */
  path: Buffer;
  /** find's %y: f d l c b p s (or ? / U when it could not tell). */
  kind: string;
  perms: number;
  uid: number;
  gid: number;
  size: number;
  /** Whole seconds toward zero. */
  mtime: number;
  nlink: number;
  dev: string;
  blocks: number;
  target: Buffer;
}

const DIGITS = /^\d{1,20}$/;
const OCTAL = /^[0-7]{1,6}$/;
const TIME = /^(-?\d{1,15})(?:\.\d{0,12})?$/;

/**
 * Parse the `list` command's output. Pure. A record that does not parse refuses the
 * whole listing (a host whose output cannot be trusted yields no manifest rather than a wrong one).
 */
export function parseListing(out: Buffer, where: string): Listed[] {
  const fields = splitNul(out);
  if (fields.length % LIST_FIELDS !== 0) {
    throw new DriftError('DRIFT_ERR_MANIFEST', `${where}: the file listing (${AGENTLESS_COMMANDS.list}) has ${fields.length} fields, not a multiple of ${LIST_FIELDS}; refused`);
  }
  const listed: Listed[] = [];
  for (let i = 0; i < fields.length; i += LIST_FIELDS) {
    const f = (k: number): string => (fields[i + k] as Buffer).toString('latin1');
    const bad = (what: string): never => {
      throw new DriftError('DRIFT_ERR_MANIFEST', `${where}: record ${i / LIST_FIELDS + 1} of the file listing has ${what}; refused`);
    };
    const path = fields[i] as Buffer;
    if (path.length === 0 || path[0] !== 0x2f) bad('no absolute path');
    const kind = f(1);
    if (!/^[fdlcbps?UDnN]$/.test(kind)) bad(`an unknown type ${JSON.stringify(kind.slice(0, 8))}`);
    const num = (k: number, name: string): number => {
      const text = f(k);
      if (!DIGITS.test(text)) bad(`a ${name} that is not a number`);
      return Number(text);
    };
    const permsText = f(2);
    if (!OCTAL.test(permsText)) bad('a mode that is not octal');
    const time = TIME.exec(f(6));
    if (!time) bad('an mtime that is not a time');
    const dev = f(8);
    if (!DIGITS.test(dev)) bad('a device that is not a number');
    listed.push({
      path,
      kind,
      perms: parseInt(permsText, 8) & 0o7777,
      uid: num(3, 'uid'),
      gid: num(4, 'gid'),
      size: num(5, 'size'),
      mtime: Number((time as RegExpExecArray)[1]) || 0,
      nlink: num(7, 'link count'),
      dev,
      blocks: num(9, 'block count'),
      target: fields[i + 10] as Buffer,
    });
  }
  return listed;
}

function fileTypeOf(kind: string): FileType {
  return kind === 'f' ? 'file' : kind === 'd' ? 'dir' : kind === 'l' ? 'symlink' : 'other';
}

/** The (hex) message after `sha256sum: PATH: ` or `lsattr`-like prefixes, as an errno code where known. */
const MESSAGES: Record<string, string> = {
  'No such file or directory': 'ENOENT',
  'Permission denied': 'EACCES',
  'Too many levels of symbolic links': 'ELOOP',
  'Is a directory': 'EISDIR',
  'Input/output error': 'EIO',
};

function reasonIn(stderr: string, tool: string, path: string): string {
  const head = `${tool}: ${path}: `;
  const at = stderr.indexOf(head);
  if (at < 0) return 'EIO';
  const end = stderr.indexOf('\n', at);
  const message = stderr.slice(at + head.length, end < 0 ? undefined : end);
  return MESSAGES[message] ?? message.replace(/[^\x20-\x7e]/g, '?').slice(0, 200);
}

/**
 * Match `sha256sum -z` output to the paths asked, in order: a record is 64 hex
 * digits, a space, a space or `*`, then exactly the path asked. Pure. Paths no
 * record answers get their reason from stderr.
 */
export function parseSha256sums(paths: readonly string[], out: Buffer, stderr: string): (string | { reason: string })[] {
  const records = splitNul(out);
  const result: (string | { reason: string })[] = [];
  let r = 0;
  for (const path of paths) {
    const rec = records[r];
    const want = Buffer.from(path, 'utf8');
    if (rec !== undefined && rec.length === 66 + want.length && /^[0-9a-f]{64} [ *]$/.test(rec.subarray(0, 66).toString('latin1')) && rec.subarray(66).equals(want)) {
      result.push(rec.subarray(0, 64).toString('latin1'));
      r += 1;
    } else result.push({ reason: reasonIn(stderr, 'sha256sum', path) });
  }
  return result;
}

/** Undo getfattr's escaping of a name (`\NNN` octal, `\\`). */
function unescapeGetfattr(text: string): Buffer {
  const bytes: number[] = [];
  const raw = Buffer.from(text, 'latin1');
  for (let i = 0; i < raw.length; i++) {
    const b = raw[i] as number;
    if (b === 0x5c && i + 3 < raw.length + 0 && /^[0-7]{3}$/.test(raw.subarray(i + 1, i + 4).toString('latin1'))) {
      bytes.push(parseInt(raw.subarray(i + 1, i + 4).toString('latin1'), 8) & 0xff);
      i += 3;
    } else if (b === 0x5c && raw[i + 1] === 0x5c) {
      bytes.push(0x5c);
      i += 1;
    } else bytes.push(b);
  }
  return Buffer.from(bytes);
}

/** getfattr's dump (`# file: PATH`, then `name=0xHEX` lines) as names and values per path. Pure. */
export function parseGetfattr(text: string): Map<string, Map<string, Uint8Array>> {
  const out = new Map<string, Map<string, Uint8Array>>();
  let current: Map<string, Uint8Array> | null = null;
  for (const line of text.split('\n')) {
    if (line.startsWith('# file: ')) {
      current = new Map();
      out.set(unescapeGetfattr(line.slice(8)).toString('utf8'), current);
      continue;
    }
    if (current === null || line === '') continue;
    const eq = line.indexOf('=');
    const name = unescapeGetfattr(eq < 0 ? line : line.slice(0, eq)).toString('utf8');
    const value = eq < 0 ? '' : line.slice(eq + 1);
    current.set(name, /^0x[0-9a-fA-F]*$/.test(value) && value.length % 2 === 0 ? Buffer.from(value.slice(2), 'hex') : Buffer.from(value.replace(/^"|"$/g, ''), 'latin1'));
  }
  return out;
}

/** The remote side of a scan: the session, its SFTP reader, and where to say things. */
export interface RemoteHost {
  session: RemoteSession;
  files: RemoteFiles;
}

/** Run a fixed command with paths on stdin; 127/126 (the tool is missing) are returned, not thrown. */
async function run(host: RemoteHost, command: string, paths: readonly string[], maxStdout: number): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  return host.session.exec(command, { stdin: nulList(paths), maxStdout });
}

/** lstat types and link targets of `paths` (paths absent from the answer do not exist or could not be stat'ed). */
async function remoteTypes(host: RemoteHost, paths: readonly string[]): Promise<Map<string, { kind: string; target: string }>> {
  const out = new Map<string, { kind: string; target: string }>();
  if (paths.length === 0) return out;
  let bytes = 0;
  for (const p of paths) bytes += 2 * p.length + 8 + 4096;
  const r = await run(host, AGENTLESS_COMMANDS.types, paths, bytes);
  const fields = splitNul(r.stdout);
  const asked = new Set(paths);
  for (let i = 0; i + 2 < fields.length; i += 3) {
    const path = (fields[i] as Buffer).toString('utf8');
    if (!asked.has(path)) continue;
    out.set(path, { kind: (fields[i + 1] as Buffer).toString('latin1'), target: (fields[i + 2] as Buffer).toString('utf8') });
  }
  return out;
}

/** The packages collector of an agentless scan: dpkg and apk through SFTP, with the local parsers. */
export function remotePackagesCollector(host: RemoteHost): Collector<'packages'> {
  const reader: DbReader = {
    readText: async (path) => (await host.files.read(path, PACKAGE_DB_MAX_BYTES))?.toString('utf8') ?? null,
    list: (path) => host.files.list(path),
  };
  return {
    section: 'packages',
    async collect(): Promise<CollectResult<PackageEntry>> {
      // rpm's database needs rpm (or its SQLite) on the host: say so where there is one (asked while the others are read).
      const rpmAsked = remoteTypes(host, ['/var/lib/rpm', '/usr/lib/sysimage/rpm']);
      const parts = await Promise.all([collectDpkg('/', reader), collectApk('/', reader)]).catch(async (err: unknown) => {
        await rpmAsked.catch(() => undefined);
        throw err;
      });
      const { entries, unread, owners } = mergePackageParts(parts);
      for (const [path, t] of await rpmAsked) if (t.kind === 'd') unread.push({ path, reason: 'rpm: the rpm database is not read by an agentless scan; install drift on the host to record rpm packages' });
      // Symlinked folders (merged /usr), looked up in batches: a link found may lead to folders not asked yet.
      const links = new Map<string, string | null>();
      for (let round = 0; round < 4; round++) {
        const missing = new Set<string>(round === 0 ? aliasCandidates(owners) : []);
        const probe = new Map(owners);
        addResolvedAliases('/', probe, (p) => {
          if (!links.has(p)) missing.add(p);
          return links.get(p) ?? null;
        });
        for (const p of links.keys()) missing.delete(p);
        if (missing.size === 0) break;
        const types = await remoteTypes(host, [...missing].slice(0, 20_000));
        for (const p of missing) {
          const t = types.get(p);
          links.set(p, t && t.kind === 'l' ? t.target : null);
        }
      }
      addResolvedAliases('/', owners, (p) => links.get(p) ?? null);
      return { entries, unread, owners };
    },
  };
}

/** The facts kept per recorded path until the reads after the listing. */
interface Recorded { key: string; item: Listed; rule: WatchRule; entry: FileEntry }

/**
 * The files collector of an agentless scan: the walk of the local collector (the
 * scope at each walk root, rule matching, "enter this folder?", entries, byte budgets
 * and failed reads of collectors/file-entry.ts), over one `find` listing per collection; then hashes, contents, inode flags, extended
 * attributes and device numbers read in batches.
 */
export function remoteFilesCollector(host: RemoteHost): Collector<'files'> {
  return {
    section: 'files',
    async collect(ctx: CollectContext): Promise<CollectResult<FileEntry>> {
      const where = host.session.where;
      const rules = compilePathRules(ctx.rules);
      const budget = ctx.budget ?? new ByteBudget();
      const entries: Record<string, FileEntry> = {};
      const unread: Unread[] = [];

      // The walk bases reachable without a link: every folder above a base must be a folder.
      const above = new Set<string>();
      for (const root of rules.walkRoots) {
        const parts = root.split('/');
        for (let i = 2; i < parts.length; i++) above.add(parts.slice(0, i).join('/'));
      }
      const types = await remoteTypes(host, [...above].sort());
      const starts = new Map<string, Scope>();
      for (const root of rules.walkRoots) {
        const scope = rootScope(rules, root, (path) => types.get(path)?.kind === 'd');
        if (scope !== null) starts.set(root, scope);
      }

      const listing = starts.size === 0 ? { code: 0, stdout: Buffer.alloc(0), stderr: '' } : await run(host, AGENTLESS_COMMANDS.list, [...starts.keys()], MAX_LISTING_BYTES);
      if (listing.code === 127 || listing.code === 126) {
        throw new DriftError('DRIFT_ERR_CONFIG', `${where}: GNU find is not available there (exit ${listing.code}); an agentless scan needs findutils on the host`);
      }
      const listed = parseListing(listing.stdout, where);
      // Folders that could not be listed (find says why on stderr).
      for (const m of listing.stderr.matchAll(/^find: '(\/[^'\n]*)': (.*)$/gm)) {
        const reason = MESSAGES[m[2] as string] ?? (m[2] as string).slice(0, 200);
        if (reason !== 'ENOENT') unread.push({ path: m[1] as string, reason });
      }

      const entered = new Map<string, Scope>();
      const recorded: Recorded[] = [];
      const record = (key: string, item: Listed, rule: WatchRule): void => {
        const type = fileTypeOf(item.kind);
        const entry = newEntry(type, item.perms, item.uid, item.gid, item.mtime, item.nlink, item.size);
        if (type === 'symlink') entry.target = item.target.toString('utf8');
        entries[key] = entry;
        recorded.push({ key, item, rule, entry });
      };
      for (const item of listed) {
        const raw = item.path;
        let scope: Scope | undefined;
        let key: string;
        if (!isUtf8(raw)) {
          const slash = raw.lastIndexOf(0x2f);
          const parent = slash === 0 ? '/' : raw.subarray(0, slash);
          if (typeof parent !== 'string' && !isUtf8(parent)) continue;
          const parentKey = typeof parent === 'string' ? parent : parent.toString('utf8');
          const inside = entered.get(parentKey);
          if (inside === undefined) continue;
          const bad = unreadName(rules, inside.ignore, parentKey === '/' ? '/' : `${parentKey}/`, raw.subarray(slash + 1));
          if (bad !== null) unread.push(bad);
          continue;
        }
        key = raw.toString('utf8');
        if (raw.length >= PATH_MAX) {
          if (entered.has(posix.dirname(key))) unread.push({ path: key.slice(0, LIMITS.path), reason: 'ENAMETOOLONG' });
          continue;
        }
        const start = starts.get(key);
        if (start !== undefined) {
          scope = start;
          starts.delete(key);
          if (ignored(scope.ignore, key)) continue;
        } else {
          const parent = posix.dirname(key);
          const inside = entered.get(parent);
          if (inside === undefined) continue;
          scope = { watch: withBaseAt(inside.watch, rules.watchAt, key), ignore: withBaseAt(inside.ignore, rules.ignoreAt, key) };
          if (ignored(scope.ignore, key)) continue;
        }
        const rule = ruleAt(scope.watch, key);
        if (rule !== null) record(key, item, rule);
        if (item.kind === 'd' && enters(rules, scope.watch, key)) entered.set(key, scope);
      }

      // Contents (walk order, taking the scan budget first, as the local walk does), then hashes.
      const contentJobs: Recorded[] = [];
      const hashJobs: Recorded[] = [];
      const failed = (key: string, reason: string): void => readFailed(entries, unread, key, reason);
      for (const r of recorded) {
        if (r.entry.type !== 'file' || !wantsContent(r.rule, r.item.size)) continue;
        if (!budget.take(r.item.size)) failed(r.key, REASONS.overScan(budget.maxScanBytes));
        else contentJobs.push(r);
      }
      for (const r of recorded) {
        if (r.entry.type !== 'file' || wantsContent(r.rule, r.item.size)) continue;
        const verdict = hashBudget(budget, r.item.size);
        if (verdict === 'hash') hashJobs.push(r);
        else failed(r.key, verdict === 'over-file' ? REASONS.overFile(r.item.size, r.item.blocks * 512, budget.maxFileBytes) : REASONS.overScan(budget.maxScanBytes));
      }

      await Promise.all([
        readContents(host, contentJobs, failed),
        hashRemote(host, hashJobs, failed),
        readFlagsRemote(host, recorded.filter((r) => r.entry.type === 'file' || r.entry.type === 'dir'), entries, unread),
        readXattrsRemote(host, recorded, unread),
        readDevices(host, recorded.filter((r) => r.item.kind === 'c' || r.item.kind === 'b'), unread),
      ]);
      return { entries, unread };
    },
  };
}

async function readContents(host: RemoteHost, jobs: readonly Recorded[], failed: (key: string, reason: string) => void): Promise<void> {
  await Promise.all(jobs.map(async (r) => {
    let bytes: Buffer | null;
    try {
      bytes = await host.files.read(r.key, CONTENT_CAP_BYTES);
    } catch (err) {
      failed(r.key, (err as { code?: string }).code ?? 'EIO');
      return;
    }
    if (bytes === null) return failed(r.key, 'ENOENT');
    if (bytes.length !== r.item.size) return failed(r.key, REASONS.resized(r.item.size, bytes.length));
    r.entry.sha256 = sha256Hex(bytes);
    const content = contentFor(r.rule.content, r.key, r.item.perms, bytes);
    if (content !== undefined) r.entry.content = content;
  }));
}

async function hashRemote(host: RemoteHost, jobs: readonly Recorded[], failed: (key: string, reason: string) => void): Promise<void> {
  if (jobs.length === 0) return;
  const paths = jobs.map((r) => r.key);
  let cap = 0;
  for (const p of paths) cap += Buffer.byteLength(p) + 70;
  const r = await run(host, AGENTLESS_COMMANDS.hash, paths, cap + 4096);
  if (r.code === 127 || r.code === 126) {
    for (const p of paths) failed(p, 'sha256sum not found on the host (install coreutils)');
    return;
  }
  const sums = parseSha256sums(paths, r.stdout, r.stderr);
  sums.forEach((sum, i) => {
    const job = jobs[i] as Recorded;
    if (typeof sum === 'string') job.entry.sha256 = sum;
    else failed(job.key, sum.reason);
  });
}

async function readFlagsRemote(host: RemoteHost, jobs: readonly Recorded[], entries: Record<string, FileEntry>, unread: Unread[]): Promise<void> {
  if (jobs.length === 0) return;
  const errors = new FlagErrors(unread);
  // A path with a newline would make lsattr's output ambiguous: each gets a run of its own.
  const plain = jobs.filter((r) => !r.key.includes('\n'));
  const runs: Recorded[][] = [plain, ...jobs.filter((r) => r.key.includes('\n')).map((r) => [r])];
  for (const batch of runs) {
    if (batch.length === 0) continue;
    const paths = batch.map((r) => r.key);
    let cap = 0;
    for (const p of paths) cap += Buffer.byteLength(p) + BYTES_PER_PATH;
    const r = await run(host, AGENTLESS_COMMANDS.flags, paths, cap);
    if (r.code === 127 || r.code === 126) {
      unread.push({ path: '/', reason: `flags: ${r.code === 127 ? 'lsattr not found (install e2fsprogs to record inode flags)' : 'lsattr could not be run'}` });
      return;
    }
    const parsed = parseLsattr(paths, r.stdout.toString('utf8'), r.stderr);
    batch.forEach((job, i) => {
      const mask = parsed.flags[i] as number;
      if (mask > 0 && entries[job.key] !== undefined) job.entry.flags = flagsText(mask);
    });
    for (const [i, reason] of parsed.errors) {
      const job = batch[i] as Recorded;
      errors.add(job.key, job.item.dev, reason);
    }
  }
  errors.finish();
}

async function readXattrsRemote(host: RemoteHost, jobs: readonly Recorded[], unread: Unread[]): Promise<void> {
  if (jobs.length === 0) return;
  const paths = jobs.map((r) => r.key);
  const r = await run(host, AGENTLESS_COMMANDS.xattrs, paths, Math.min(MAX_LISTING_BYTES, paths.length * XATTR_BYTES_PER_PATH));
  if (r.code === 127 || r.code === 126) {
    unread.push({ path: '/', reason: 'xattrs: getfattr not found on the host (install attr to record capabilities, ACLs and other extended attributes agentless)' });
    return;
  }
  const dump = parseGetfattr(r.stdout.toString('latin1'));
  for (const job of jobs) {
    const attrs = dump.get(job.key);
    if (attrs === undefined || attrs.size === 0) continue;
    const { facts, problems } = decodeXattrs([...attrs.keys()], (name) => attrs.get(name) ?? null);
    assignXattrs(job.entry, facts);
    for (const p of problems) unread.push({ path: job.key, reason: p.reason });
  }
}

async function readDevices(host: RemoteHost, jobs: readonly Recorded[], unread: Unread[]): Promise<void> {
  if (jobs.length === 0) return;
  const paths = jobs.map((r) => r.key);
  const r = await run(host, AGENTLESS_COMMANDS.devices, paths, paths.length * 64);
  const fields = splitNul(r.stdout).map((b) => b.toString('latin1'));
  if (fields.length !== jobs.length) {
    for (const job of jobs) unread.push({ path: job.key, reason: 'device numbers not read (stat did not answer every device node)' });
    return;
  }
  jobs.forEach((job, i) => {
    const m = /^([0-9a-f]{1,8}) ([0-9a-f]{1,8})$/.exec(fields[i] as string);
    if (!m) {
      unread.push({ path: job.key, reason: 'device numbers not read' });
      return;
    }
    const major = BigInt(`0x${m[1] as string}`);
    const minor = BigInt(`0x${m[2] as string}`);
    const rdev = ((major & 0xfffn) << 8n) | ((major & ~0xfffn) << 32n) | (minor & 0xffn) | ((minor & ~0xffn) << 12n);
    const mode = (job.item.kind === 'c' ? 0o020000 : 0o060000) | job.item.perms;
    const text = deviceText(mode, rdev);
    if (text !== undefined) job.entry.device = text;
  });
}

/** What the `identify` command says of one path. */
export interface RemoteStat {
  id: FileId;
  mode: number;
  size: number;
  blocks: number;
}

/** Fields per record of the `identify` command. */
const IDENTIFY_FIELDS = 5;

/**
 * Match the `identify` command's output to the paths asked, in order: a record is the
 * path asked, `dev:inode`, the raw mode in hex, the size and the block count. Pure.
 * A path no record answers gets its reason from stderr (`stat: cannot statx 'PATH': …`).
 */
export function parseIdentify(paths: readonly string[], out: Buffer, stderr: string): (RemoteStat | { code: string })[] {
  const fields = splitNul(out);
  const result: (RemoteStat | { code: string })[] = [];
  let r = 0;
  for (const path of paths) {
    const rec = fields.slice(r, r + IDENTIFY_FIELDS).map((b) => b.toString('latin1'));
    const [id, mode, size, blocks] = rec.slice(1);
    if (rec.length === IDENTIFY_FIELDS && (fields[r] as Buffer).equals(Buffer.from(path, 'utf8'))
      && /^\d{1,20}:\d{1,20}$/.test(id ?? '') && /^[0-9a-f]{1,8}$/.test(mode ?? '') && DIGITS.test(size ?? '') && DIGITS.test(blocks ?? '')) {
      result.push({ id: id as string, mode: parseInt(mode as string, 16), size: Number(size), blocks: Number(blocks) });
      r += IDENTIFY_FIELDS;
    } else result.push({ code: statReason(stderr, path) });
  }
  return result;
}

/** What the `imageHash` command's stat says of one path. */
export interface ImageStat {
  id: FileId;
  size: number;
  mtime: string;
  ctime: string;
}

/** One path of the `imageHash` command: its hash between two stats, or why there is none (an errno code or a reason). */
export type ImageRead = { sha256: string; before: ImageStat; after: ImageStat } | { reason: string };

/** Fields per stat record of the `imageHash` command. */
const IMAGE_STAT_FIELDS = 6;
/** A stat time as `%y`/`%z` print it. */
const STAT_TIME = /^\d{4,}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d{1,9})? [+-]\d{4}$/;

/** Whether two stats of a path describe one unchanged file. */
export function sameStat(a: ImageStat, b: ImageStat): boolean {
  return a.id === b.id && a.size === b.size && a.mtime === b.mtime && a.ctime === b.ctime;
}

/**
 * Match the `imageHash` command's output to the paths asked (each asked once): its
 * three parts (`B`: stats before, `H`: the hashes, `A`: stats after; again for each
 * batch xargs runs), each record naming its path. Pure. A path with a hash and both
 * stats is read; one without gets the reason stat or sha256sum gave on stderr; a
 * record that does not parse, or names a path twice in a part, leaves that path
 * without (EIO). 'no sha256sum' when the host has no sha256sum.
 */
export function parseImageHashes(paths: readonly string[], out: Buffer, stderr: string): ImageRead[] | 'no sha256sum' {
  const asked = new Map<string, number>(paths.map((p, i) => [p, i]));
  const parts = { B: new Map<number, ImageStat | null>(), H: new Map<number, string | null>(), A: new Map<number, ImageStat | null>() };
  const fields = splitNul(out);
  let part: 'B' | 'H' | 'A' | null = null;
  for (let i = 0; i < fields.length;) {
    const head = (fields[i] as Buffer).toString('latin1');
    if (head === 'B' || head === 'H' || head === 'A') {
      part = head;
      i += 1;
      continue;
    }
    if (part === 'H') {
      const rec = fields[i] as Buffer;
      i += 1;
      const at = asked.get(rec.subarray(66).toString('utf8'));
      if (at === undefined) continue;
      const ok = rec.length > 66 && /^[0-9a-f]{64} [ *]$/.test(rec.subarray(0, 66).toString('latin1'));
      parts.H.set(at, ok && !parts.H.has(at) ? rec.subarray(0, 64).toString('latin1') : null);
      continue;
    }
    if (part === null) return paths.map(() => ({ reason: 'EIO' }));
    const rec = fields.slice(i, i + IMAGE_STAT_FIELDS).map((b) => b.toString('latin1'));
    const at = asked.get((fields[i] as Buffer).toString('utf8'));
    i += IMAGE_STAT_FIELDS;
    if (at === undefined) continue;
    const [id, mode, size, mtime, ctime] = rec.slice(1);
    const ok = rec.length === IMAGE_STAT_FIELDS && /^\d{1,20}:\d{1,20}$/.test(id ?? '') && /^[0-9a-f]{1,8}$/.test(mode ?? '') && DIGITS.test(size ?? '')
      && STAT_TIME.test(mtime ?? '') && STAT_TIME.test(ctime ?? '');
    const seen = parts[part];
    seen.set(at, ok && !seen.has(at) ? { id: id as string, size: Number(size), mtime: mtime as string, ctime: ctime as string } : null);
  }
  if (parts.H.size === 0 && /^sh: .*sha256sum: (?:command )?not found$/m.test(stderr)) return 'no sha256sum';
  return paths.map((path, i): ImageRead => {
    const before = parts.B.get(i);
    const sha256 = parts.H.get(i);
    const after = parts.A.get(i);
    if (before === undefined) return { reason: statReason(stderr, path) };
    if (sha256 === undefined) return { reason: reasonIn(stderr, 'sha256sum', path) };
    if (after === undefined) return { reason: statReason(stderr, path) };
    if (before === null || sha256 === null || after === null) return { reason: 'EIO' };
    return { sha256, before, after };
  });
}

/** The errno code in stat's message about `path` (`stat: cannot statx 'PATH': MESSAGE`), else EIO. */
function statReason(stderr: string, path: string): string {
  for (const head of [`stat: cannot statx '${path}': `, `stat: cannot stat '${path}': `]) {
    const at = stderr.indexOf(head);
    if (at < 0) continue;
    const end = stderr.indexOf('\n', at);
    const message = stderr.slice(at + head.length, end < 0 ? undefined : end);
    return MESSAGES[message] ?? message.replace(/[^\x20-\x7e]/g, '?').slice(0, 200);
  }
  return 'EIO';
}

/** The most the `sockets` listing may weigh: some 40 bytes a socket descriptor, for a million of them. */
const MAX_SOCKET_LINKS_BYTES = 64 * 1024 * 1024;

/**
 * The `sockets` command's output as inode → holding PIDs (only the inodes in `wanted`),
 * and the fd folders (or descriptors) find could not read, from its stderr. Pure. A
 * record that is not `/proc/PID/fd` and `socket:[INODE]` is passed over; a listing
 * cut in the middle of a record is refused whole.
 */
export function parseSocketLinks(out: Buffer, stderr: string, wanted: ReadonlySet<string>, where: string): SocketHolders {
  const fields = splitNul(out);
  if (fields.length % 2 !== 0) throw new DriftError('DRIFT_ERR_MANIFEST', `${where}: the socket listing (${AGENTLESS_COMMANDS.sockets}) has ${fields.length} fields, not pairs; refused`);
  const holders = new Map<string, number[]>();
  for (let i = 0; i < fields.length; i += 2) {
    const dir = /^\/proc\/(\d{1,10})\/fd$/.exec((fields[i] as Buffer).toString('latin1'));
    const inode = parseSocketLink((fields[i + 1] as Buffer).toString('latin1'));
    if (dir === null || inode === null || !wanted.has(inode)) continue;
    addHolder(holders, inode, Number(dir[1]));
  }
  const denied = new Map<number, string>();
  for (const m of stderr.matchAll(/^find: '\/proc\/(\d{1,10})\/fd(\/\d{1,10})?': (.*)$/gm)) {
    const reason = MESSAGES[m[3] as string] ?? (m[3] as string).replace(/[^\x20-\x7e]/g, '?').slice(0, 200);
    // A process (or a descriptor) that went away while listed: churn, not a hidden holder.
    if (reason === 'ENOENT') continue;
    const pid = Number(m[1]);
    if (!denied.has(pid)) denied.set(pid, reason);
  }
  const unreadable = [...denied].map(([pid, reason]) => ({ pid, reason })).sort((a, b) => a.pid - b.pid);
  return { holders, unreadable };
}

/** The most the `texts` run may weigh (some 3 KiB a process); past it, the files are read one by one through SFTP. */
const MAX_PROC_TEXTS_BYTES = 64 * 1024 * 1024;
/** The per-process files the `texts` run reads. */
const BATCHED_TEXT = /^\d{1,10}\/(?:stat|status|cgroup)$/;

/**
 * The `texts` run's output (`/proc/PID/FILE`, NUL, one line, newline; again for every
 * line) as `PID/FILE` → the file's text. Pure. A record naming any other path refuses
 * the whole output (an empty map: every file is then read through SFTP).
 */
export function parseProcTexts(out: Buffer): Map<string, string> {
  const parts = new Map<string, Buffer[]>();
  let at = 0;
  while (at < out.length) {
    const nul = out.indexOf(0, at);
    if (nul < 0) return new Map();
    const m = /^\/proc\/(\d{1,10}\/(?:stat|status|cgroup))$/.exec(out.subarray(at, nul).toString('latin1'));
    if (m === null) return new Map();
    const nl = out.indexOf(0x0a, nul + 1);
    const end = nl < 0 ? out.length : nl + 1;
    const rel = m[1] as string;
    const list = parts.get(rel);
    if (list === undefined) parts.set(rel, [out.subarray(nul + 1, end)]);
    else list.push(out.subarray(nul + 1, end));
    at = end;
  }
  const texts = new Map<string, string>();
  for (const [rel, list] of parts) texts.set(rel, Buffer.concat(list).toString('utf8'));
  return texts;
}

/** Rounds of image hashing: a process that exits before its image is read leaves it to the next of that image. */
const HASH_ROUNDS = 3;

/**
 * The /proc of a remote host, read through the SSH session: the folder listing,
 * the texts and the exe links through SFTP; image identities through `identify`;
 * image hashes through `hash` (sha256sum of `/proc/PID/exe`, in one batch); the
 * socket links through `sockets`. The processes and ports collectors read it as
 * they read a local /proc.
 */
export class RemoteProcSource implements ProcSource {
  readonly proc = '/proc';
  readonly root = '/';
  /** What `identify` said of `/proc/PID/exe`, for the checks before an image is hashed. */
  private readonly images = new Map<number, RemoteStat>();
  /** The `texts` run's answer, once asked for. */
  private texts: Promise<Map<string, string>> | null = null;

  constructor(private readonly host: RemoteHost) {}

  async listPids(): Promise<number[]> {
    const names = await this.host.files.list('/proc');
    return names.filter((n) => /^\d{1,10}$/.test(n)).map(Number).sort((a, b) => a - b);
  }

  /** Whether the host shows processes in /proc at all (a procfs is mounted there). */
  async mounted(): Promise<boolean> {
    try {
      return (await this.listPids()).length > 0;
    } catch {
      return false;
    }
  }

  async readText(rel: string, cap: number): Promise<string> {
    if (BATCHED_TEXT.test(rel)) {
      const text = (await this.batched()).get(rel);
      if (text !== undefined && Buffer.byteLength(text) <= cap) return text;
    }
    try {
      return (await this.host.files.readToEnd(`/proc/${rel}`, cap)).toString('utf8');
    } catch (err) {
      throw await this.exited(rel, err);
    }
  }

  async readlink(rel: string): Promise<string> {
    try {
      return await this.host.files.readlink(`/proc/${rel}`);
    } catch (err) {
      throw await this.exited(rel, err);
    }
  }

  /**
   * Every process's stat, status and cgroup in one `texts` run, the first time one is
   * asked for; a file it did not answer (a process started since, an empty file, a run
   * that failed or went past its bound) is read through SFTP.
   */
  private batched(): Promise<Map<string, string>> {
    this.texts ??= run(this.host, AGENTLESS_COMMANDS.texts, [], MAX_PROC_TEXTS_BYTES).then((r) => parseProcTexts(r.stdout), () => new Map<string, string>());
    return this.texts;
  }

  /**
   * SFTP has no ESRCH: a process that exits while one of its files is read fails as a
   * generic error (EIO). When its /proc folder is gone, that is churn, told as ESRCH,
   * as the local read would; otherwise the error stands.
   */
  private async exited(rel: string, err: unknown): Promise<unknown> {
    const pid = /^(\d{1,10})\//.exec(rel)?.[1];
    if (pid === undefined || (err as { code?: unknown }).code !== 'EIO') return err;
    return (await this.host.files.exists(`/proc/${pid}`).catch(() => true)) ? err : codeError('ESRCH');
  }

  async exeImages(pids: readonly number[]): Promise<Map<number, FileId | { code: string }>> {
    const stats = await identify(this.host, pids.map((pid) => `/proc/${pid}/exe`));
    const out = new Map<number, FileId | { code: string }>();
    pids.forEach((pid, i) => {
      const st = stats[i] as RemoteStat | { code: string };
      if ('code' in st) out.set(pid, st);
      else {
        this.images.set(pid, st);
        out.set(pid, st.id);
      }
    });
    return out;
  }

  async rootIds(paths: readonly string[]): Promise<Map<string, FileId | { code: string }>> {
    const stats = await identify(this.host, paths);
    const out = new Map<string, FileId | { code: string }>();
    paths.forEach((path, i) => {
      const st = stats[i] as RemoteStat | { code: string };
      out.set(path, 'code' in st ? st : st.id);
    });
    return out;
  }

  async readRootFile(path: string, cap: number): Promise<Buffer> {
    const bytes = await this.host.files.read(path, cap);
    if (bytes === null) throw codeError('ENOENT');
    return bytes;
  }

  /**
   * Checks each image as the local source does (a regular file, within the byte
   * budgets), then hashes them all in one `sha256sum` of `/proc/PID/exe`; an image
   * whose process exited, or now runs another program (its `dev:inode` asked again
   * after the hash), is read through its next process in another round.
   */
  async hashImages(images: ReadonlyMap<FileId, readonly number[]>, opts: ImageHashOptions): Promise<Map<FileId, ImageHash>> {
    const out = new Map<FileId, ImageHash>();
    let pending: { image: FileId; pids: readonly number[]; at: number }[] = [];
    for (const [image, pids] of images) {
      const first = pids[0];
      const st = first === undefined ? undefined : this.images.get(first);
      const exe = `/proc/${first ?? 0}/exe`;
      const fail = (reason: string): void => void out.set(image, { kind: 'unread', unread: { path: exe, reason } });
      if (st === undefined) out.set(image, { kind: 'gone' });
      else if ((st.mode & S_IFMT) !== S_IFREG) fail(REASONS.notRegular(TYPE_NAMES[String(st.mode & S_IFMT)] ?? 'another type'));
      else if (st.size > opts.budget.maxFileBytes) fail(REASONS.overFile(st.size, st.blocks * 512, opts.budget.maxFileBytes));
      else if (!opts.budget.take(st.size)) fail(REASONS.overScan(opts.budget.maxScanBytes));
      else pending.push({ image, pids, at: 0 });
    }
    for (let round = 0; round < HASH_ROUNDS && pending.length > 0; round++) {
      const paths = pending.map((job) => `/proc/${job.pids[job.at] as number}/exe`);
      let cap = 0;
      // Two stat records (the path and some 120 bytes each) and a hash line (the path and 67) per path.
      for (const p of paths) cap += 3 * Buffer.byteLength(p) + 400;
      const r = await run(this.host, AGENTLESS_COMMANDS.imageHash, paths, cap + 4096);
      const read = parseImageHashes(paths, r.stdout, r.stderr);
      if (read === 'no sha256sum' || r.code === 127 || r.code === 126) {
        pending.forEach((job, i) => out.set(job.image, { kind: 'unread', unread: { path: paths[i] as string, reason: 'sha256sum or stat not found on the host (install coreutils)' } }));
        return out;
      }
      const next: typeof pending = [];
      pending.forEach((job, i) => {
        const got = read[i] as ImageRead;
        const path = paths[i] as string;
        const sized = this.images.get(job.pids[job.at] as number)?.size;
        if ('sha256' in got && got.before.id === job.image && got.after.id === job.image) {
          if (!sameStat(got.before, got.after) || got.before.size !== sized) {
            // The image was written to while it was read: its hash may mix two contents.
            out.set(job.image, { kind: 'unread', unread: { path, reason: REASONS.changed } });
            return;
          }
          opts.onHash?.(path);
          out.set(job.image, { kind: 'hash', sha256: got.sha256 });
        } else if ('reason' in got && !vanished({ code: got.reason })) {
          out.set(job.image, { kind: 'unread', unread: { path, reason: got.reason } });
        } else if (job.at + 1 < job.pids.length) {
          // Exited, or runs another program now: the next process of this image.
          next.push({ ...job, at: job.at + 1 });
        } else out.set(job.image, { kind: 'gone' });
      });
      pending = next;
    }
    for (const job of pending) out.set(job.image, { kind: 'gone' });
    return out;
  }

  async socketHolders(wanted: ReadonlySet<string>): Promise<SocketHolders> {
    const r = await run(this.host, AGENTLESS_COMMANDS.sockets, [], MAX_SOCKET_LINKS_BYTES);
    if (r.code === 127 || r.code === 126) throw codeError(`find could not be run on the host (exit ${r.code})`);
    return parseSocketLinks(r.stdout, r.stderr, wanted, this.host.session.where);
  }
}

/** The `identify` facts of `paths`, in their order. */
async function identify(host: RemoteHost, paths: readonly string[]): Promise<(RemoteStat | { code: string })[]> {
  if (paths.length === 0) return [];
  let cap = 0;
  for (const p of paths) cap += Buffer.byteLength(p) + 80;
  const r = await run(host, AGENTLESS_COMMANDS.identify, paths, cap);
  if (r.code === 127 || r.code === 126) return paths.map(() => ({ code: 'stat not found on the host (install coreutils)' }));
  return parseIdentify(paths, r.stdout, r.stderr);
}

/** The `unread` note of an agentless scan of a host that shows no processes in /proc. */
export const AGENTLESS_NO_PROC = 'processes and ports not read: the host shows no process in /proc (no procfs mounted there, or not readable through SFTP)';

/**
 * Collect a host's manifest agentless through an open session, scoped by `rules`
 * and `sections`: the same manifest as `drift collect` there would give for the
 * packages, files, processes and ports sections and the host fields.
 */
export async function collectAgentless(session: RemoteSession, scan: { rules: RuleSet; sections?: readonly SectionName[] | undefined }): Promise<Manifest> {
  const sftp = await session.sftp();
  const files = new RemoteFiles(sftp as unknown as SftpClient);
  const host: RemoteHost = { session, files };
  try {
    const read: IdentityReader = (rel, cap) => files.read(`/${rel}`, cap);
    const wanted = (s: SectionName): boolean => scan.sections === undefined || scan.sections.includes(s);
    const proc = new RemoteProcSource(host);
    // The host fields and the /proc probe at once: each is SFTP requests in sequence.
    const [info, live] = await Promise.all([
      readHostInfo('/', { read }),
      (wanted('processes') || wanted('ports')) ? proc.mounted() : Promise.resolve(false),
    ]);
    const ctx: CollectContext = { root: '/', proc: live ? proc.proc : null, rules: scan.rules, stateDir: null, forceRehash: true, sections: scan.sections };
    const manifest = await collectManifest(ctx, info, new Date(), {
      packages: remotePackagesCollector(host),
      files: remoteFilesCollector(host),
      processes: createProcessesCollector({ source: () => proc }),
      ports: createPortsCollector(() => proc),
    });
    if (!live && (wanted('processes') || wanted('ports'))) manifest.unread = [{ path: '/proc', reason: AGENTLESS_NO_PROC }, ...manifest.unread].sort(compareUnread);
    return manifest;
  } finally {
    files.end();
  }
}
