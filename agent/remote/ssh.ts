import { mkdir } from 'node:fs/promises';
import { homedir, userInfo } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { NodeSSH } from 'node-ssh';
import { writeFileAtomic } from '../atomic.js';
import { scopeOf } from '../baseline.js';
import { HashError, readFileChecked } from '../hash.js';
import { canonicalJson } from '../protocol/canonical.js';
import { DriftError, errnoOf } from '../protocol/errors.js';
import { ManifestSchema, type Manifest, type SectionName } from '../protocol/manifest.js';
import type { RuleSet } from '../protocol/rules.js';
import { VERSION } from '../version.js';
import { checkHostKey, fingerprintOf, hostField, KNOWN_HOSTS_MAX_BYTES, knownHostsLine, type HostKeyVerdict } from './known-hosts.js';
import type { RemoteResult, RemoteSession } from './session.js';

/**
 * `drift scan --ssh`: collect a host's manifest over SSH, reading only.
 *
 * The connection checks the host's key against known_hosts before anything is sent
 * (an unknown or changed key is refused with its fingerprint; `acceptNew` trusts a
 * first-seen host and records it), authenticates with the ssh-agent or an identity
 * file and never prompts. With drift installed on the target, the target runs
 * `drift collect` (read-only: no stat cache, no pins) on the scope it is sent on
 * stdin and streams the manifest back gzip-compressed. Everything that comes back is
 * bounded: the remote host is not trusted.
 */

/** A host to scan over SSH. */
export interface SshTarget {
  user?: string;
  host: string;
  port?: number;
}

/** How to reach and trust a host. */
export interface SshOptions {
  /** The known_hosts file (default ~/.ssh/known_hosts). */
  knownHosts?: string;
  /** Trust a host that known_hosts does not list yet, and add it there (trust on first use). */
  acceptNew?: boolean;
  /** A private key file (unencrypted; keys with a passphrase belong in the ssh-agent). */
  identity?: string;
  /** TCP connect plus SSH handshake (default 10 s). */
  connectTimeoutMs?: number;
  /** The whole collection, connect included (default 10 min). */
  timeoutMs?: number;
  /** drift on the target (default `drift`, found on the remote PATH). */
  remoteDrift?: string;
  /**
   * Collect without drift on the target (fixed read-only commands and SFTP reads; see
   * agentless.ts). Without it, a target where `drift` is not found is scanned agentless
   * too (unless `remoteDrift` names where drift should be).
   */
  agentless?: boolean;
}

/**
 * What to collect: the baseline's scope (watch, ignore, expect) and the sections. The
 * rules may still be on their way (the baseline being read): the connection, and drift's
 * start on the target, go on meanwhile; a rejection ends the collection with its error.
 */
export interface SshScan {
  rules: RuleSet | Promise<RuleSet>;
  sections?: readonly SectionName[] | undefined;
}

export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
export const DEFAULT_SSH_TIMEOUT_MS = 10 * 60_000;
/** The most a compressed manifest may weigh on the wire, and uncompressed. */
export const MAX_MANIFEST_GZIP_BYTES = 256 * 1024 * 1024;
export const MAX_MANIFEST_BYTES = 1024 * 1024 * 1024;
/** stderr kept from a remote command (for the error message). */
const MAX_STDERR_BYTES = 64 * 1024;
/** Longest identity file read. */
const MAX_IDENTITY_BYTES = 64 * 1024;

const HOST_RE = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}))*\.?|\d{1,3}(?:\.\d{1,3}){3}|\[[0-9A-Fa-f:.]+\])$/;
const USER_RE = /^[A-Za-z0-9._][A-Za-z0-9._-]{0,31}$/;

function usage(text: string, why: string): DriftError {
  return new DriftError('DRIFT_ERR_USAGE', `--ssh ${JSON.stringify(text)}: ${why}; give [USER@]HOST[:PORT] or ssh://USER@HOST:PORT (an IPv6 address in brackets: [::1]:2222)`);
}

/**
 * Parse `[user@]host[:port]` or `ssh://[user@]host[:port]`. Host names are DNS names
 * or IP addresses (IPv6 in brackets); nothing that could be read as an ssh option or
 * a shell word gets through.
 */
export function parseSshTarget(text: string): SshTarget {
  if (text.length === 0 || text.length > 300) throw usage(text.slice(0, 40), text.length === 0 ? 'empty target' : 'longer than 300 characters');
  let rest = text.startsWith('ssh://') ? text.slice('ssh://'.length) : text;
  if (text.startsWith('ssh://') && rest.endsWith('/')) rest = rest.slice(0, -1);
  let user: string | undefined;
  const at = rest.lastIndexOf('@');
  if (at >= 0) {
    user = rest.slice(0, at);
    rest = rest.slice(at + 1);
    if (!USER_RE.test(user)) throw usage(text, `"${user}" is not a user name`);
  }
  let host = rest;
  let port: number | undefined;
  const m = /^(\[[^\]]*\]|[^:[\]]*)(?::(\d{1,5}))?$/.exec(rest);
  if (!m) throw usage(text, 'not a host with an optional port');
  host = m[1] as string;
  if (m[2] !== undefined) {
    port = Number(m[2]);
    if (port < 1 || port > 65535) throw usage(text, `port ${m[2]} is outside 1-65535`);
  }
  if (!HOST_RE.test(host)) throw usage(text, `"${host}" is not a host name or address`);
  if (host.startsWith('[')) host = host.slice(1, -1);
  const target: SshTarget = { host };
  if (user !== undefined) target.user = user;
  if (port !== undefined) target.port = port;
  return target;
}

/** `user@host:port` for messages. */
export function describeTarget(t: SshTarget): string {
  const host = t.host.includes(':') ? `[${t.host}]` : t.host;
  return `${t.user ?? defaultUser()}@${host}:${t.port ?? 22}`;
}

function defaultUser(): string {
  return process.env['USER'] ?? userInfo().username;
}

/** Quote one word for a POSIX shell (the remote side runs commands through the user's shell). */
export function shellQuote(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** The parts of ssh2's client this module uses (node-ssh exposes it untyped). */
interface ExecStream {
  on(event: 'data', fn: (chunk: Buffer) => void): ExecStream;
  on(event: 'exit', fn: (code: number | null, signal?: string) => void): ExecStream;
  on(event: 'close', fn: () => void): ExecStream;
  on(event: 'error', fn: (err: Error) => void): ExecStream;
  stderr: { on(event: 'data', fn: (chunk: Buffer) => void): void };
  end(data?: Buffer): void;
  close(): void;
}
interface SshClient {
  exec(command: string, cb: (err: Error | undefined, stream: ExecStream) => void): boolean;
  end(): void;
}

/** An open SSH connection to one target, for fixed read-only commands. */
export class SshSession implements RemoteSession {
  constructor(private readonly client: SshClient, readonly where: string, private readonly ssh: NodeSSH) {}

  /**
   * Run one fixed command, with `stdin` sent and closed; stdout is bounded by
   * `maxStdout` (the channel is closed and DRIFT_ERR_TOO_LARGE thrown past it).
   */
  exec(command: string, opts: { stdin?: Buffer | Promise<Buffer>; maxStdout: number }): Promise<RemoteResult> {
    return new Promise((resolveResult, reject) => {
      this.client.exec(command, (err, stream) => {
        if (err) {
          reject(new DriftError('DRIFT_ERR_UNREACHABLE', `${this.where}: the SSH server refused to run a command (${err.message})`, { cause: err }));
          return;
        }
        const out: Buffer[] = [];
        let outBytes = 0;
        const errs: Buffer[] = [];
        let errBytes = 0;
        let code: number | null = null;
        let signal: string | null = null;
        let over = false;
        stream.on('data', (chunk) => {
          if (over) return;
          outBytes += chunk.length;
          if (outBytes > opts.maxStdout) {
            over = true;
            stream.close();
            return;
          }
          out.push(chunk);
        });
        stream.stderr.on('data', (chunk) => {
          if (errBytes >= MAX_STDERR_BYTES) return;
          errs.push(chunk.subarray(0, MAX_STDERR_BYTES - errBytes));
          errBytes += chunk.length;
        });
        stream.on('exit', (c, s) => {
          code = c;
          signal = s ?? null;
        });
        stream.on('error', (e) => reject(new DriftError('DRIFT_ERR_UNREACHABLE', `${this.where}: the SSH channel failed (${e.message})`, { cause: e })));
        stream.on('close', () => {
          if (over) {
            reject(new DriftError('DRIFT_ERR_TOO_LARGE', `${this.where}: ${command} sent more than the ${opts.maxStdout} bytes it may send; refused (the host is not trusted to bound its output)`));
            return;
          }
          resolveResult({ code, signal, stdout: Buffer.concat(out), stderr: Buffer.concat(errs).toString('utf8') });
        });
        if (opts.stdin instanceof Promise) {
          // The command starts now; what it reads follows once known (or the channel closes).
          opts.stdin.then((bytes) => stream.end(bytes), (e: unknown) => {
            reject(e);
            stream.close();
          });
        } else stream.end(opts.stdin);
      });
    });
  }

  /** An SFTP channel on this connection (for bounded reads of small files; see agentless.ts). */
  sftp(): Promise<unknown> {
    return this.ssh.requestSFTP().catch((err: unknown) => {
      throw new DriftError('DRIFT_ERR_UNREACHABLE', `${this.where}: the SSH server offers no SFTP subsystem, which an agentless scan reads small files through (${err instanceof Error ? err.message : String(err)}); enable Subsystem sftp in its sshd_config, or install drift on the host`, { cause: err });
    });
  }

  close(): void {
    this.ssh.dispose();
  }
}

/** Read the known_hosts text (empty when the file does not exist). */
function readKnownHosts(path: string): string {
  try {
    return readFileChecked(path, KNOWN_HOSTS_MAX_BYTES, { checkPath: false }).toString('utf8');
  } catch (err) {
    const code = err instanceof HashError ? err.code : errnoOf(err);
    if (code === 'ENOENT') return '';
    throw new DriftError('DRIFT_ERR_CONFIG', `cannot read the known hosts file ${path}: ${code}; pass --known-hosts FILE`);
  }
}

/** The appends to known_hosts under way in this process, one after the other. */
let appending: Promise<void> = Promise.resolve();

/**
 * Append a trusted host key to known_hosts, atomically (the file is replaced whole, never
 * half-written). Appends of one process (a sweep trusting several new hosts at once) run one
 * after the other, each reading what the previous one wrote, so none is lost.
 */
export function appendKnownHost(path: string, line: string): Promise<void> {
  const next = appending.then(async () => {
    const before = readKnownHosts(path);
    if (before.split('\n').includes(line.trimEnd())) return;
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    await writeFileAtomic(path, `${before}${before === '' || before.endsWith('\n') ? '' : '\n'}${line}`, 0o600);
  });
  appending = next.catch(() => undefined);
  return next;
}

/** The error of a refused host key: what, where, the fingerprint, and how to accept it. */
function hostKeyError(where: string, verdict: HostKeyVerdict, fingerprint: string, knownHosts: string, field: string, host: string, port: number): DriftError {
  switch (verdict.kind) {
    case 'unknown':
      return new DriftError('DRIFT_ERR_UNAUTHORIZED', `${where}: host key ${fingerprint} is not in ${knownHosts}; refused. `
        + `Check the fingerprint out of band (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub on the host), then add it with `
        + `ssh-keyscan -p ${port} ${shellQuote(host)} >> ${shellQuote(knownHosts)} (and compare), or scan once with --accept-new to trust it on first use`);
    case 'changed':
      return new DriftError('DRIFT_ERR_UNAUTHORIZED', `${where}: HOST KEY CHANGED: the host presented ${fingerprint}, but ${knownHosts} `
        + `lists another key for ${field} (line ${verdict.lines.join(', ')}); refused, someone may be in the middle. If the host was `
        + `rebuilt, remove the old key with ssh-keygen -R ${shellQuote(field)} -f ${shellQuote(knownHosts)} and check the new one`);
    case 'revoked':
      return new DriftError('DRIFT_ERR_UNAUTHORIZED', `${where}: host key ${fingerprint} is marked @revoked in ${knownHosts} (line ${verdict.line}); refused`);
    case 'known':
      throw new TypeError('a known key is not an error');
    default: {
      const never: never = verdict;
      throw new TypeError(`unknown verdict ${String(never)}`);
    }
  }
}

/** The user's message for an ssh2 connection error. */
function connectError(where: string, err: unknown, opts: { connectTimeoutMs: number; identity: string | undefined }): DriftError {
  const code = errnoOf(err);
  const message = err instanceof Error ? err.message : String(err);
  const level = err && typeof err === 'object' && 'level' in err ? String((err as { level: unknown }).level) : '';
  if (level === 'client-authentication') {
    return new DriftError('DRIFT_ERR_UNAUTHORIZED', `${where}: authentication failed (${opts.identity ? `identity ${opts.identity}` : 'keys of the ssh-agent'} refused); `
      + 'check the user name and that the key is in its authorized_keys (drift never asks for a password)', { cause: err });
  }
  if (level === 'client-timeout' || code === 'ETIMEDOUT') {
    return new DriftError('DRIFT_ERR_UNREACHABLE', `${where}: no SSH handshake within ${opts.connectTimeoutMs} ms (--connect-timeout); check the address, the port and firewalls`, { cause: err });
  }
  if (code === 'ECONNREFUSED' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'ECONNRESET') {
    return new DriftError('DRIFT_ERR_UNREACHABLE', `${where}: cannot connect (${code}); check the host name, the port and that sshd runs there`, { cause: err });
  }
  return new DriftError('DRIFT_ERR_UNREACHABLE', `${where}: SSH connection failed: ${message}`, { cause: err });
}

/**
 * Open an SSH connection with strict host-key checking and non-interactive auth.
 * Throws DriftError (exit 2) with what to do on every failure.
 */
export async function connectSsh(target: SshTarget, opts: SshOptions, signal?: AbortSignal): Promise<SshSession> {
  const port = target.port ?? 22;
  const username = target.user ?? defaultUser();
  const where = describeTarget(target);
  const knownHosts = resolve(opts.knownHosts ?? join(homedir(), '.ssh', 'known_hosts'));
  const connectTimeoutMs = opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const agent = process.env['SSH_AUTH_SOCK'];
  if (!opts.identity && !agent) {
    throw new DriftError('DRIFT_ERR_USAGE', `${where}: no SSH credentials: start an ssh-agent with the key (SSH_AUTH_SOCK) or pass --identity FILE`);
  }
  let privateKey: string | undefined;
  if (opts.identity) {
    try {
      privateKey = readFileChecked(resolve(opts.identity), MAX_IDENTITY_BYTES, { checkPath: false }).toString('utf8');
    } catch (err) {
      throw new DriftError('DRIFT_ERR_USAGE', `cannot read the identity file ${opts.identity}: ${err instanceof HashError ? err.code : errnoOf(err)}`);
    }
  }
  const knownText = readKnownHosts(knownHosts);
  const field = hostField(target.host, port);
  let refusal: DriftError | null = null;
  const hostVerifier = (key: Buffer, done: (ok: boolean) => void): void => {
    const fingerprint = fingerprintOf(key);
    const verdict = checkHostKey(knownText, target.host, port, key);
    if (verdict.kind === 'known') {
      done(true);
      return;
    }
    if (verdict.kind === 'unknown' && opts.acceptNew === true) {
      appendKnownHost(knownHosts, knownHostsLine(field, key)).then(() => {
        process.stderr.write(`drift: ${where}: trusted new host key ${fingerprint} (--accept-new), added to ${knownHosts}\n`);
        done(true);
      }, (err: unknown) => {
        refusal = new DriftError('DRIFT_ERR_IO', `${where}: cannot add the host key to ${knownHosts}: ${errnoOf(err)}`);
        done(false);
      });
      return;
    }
    refusal = hostKeyError(where, verdict, fingerprint, knownHosts, field, target.host, port);
    done(false);
  };
  const ssh = new NodeSSH();
  // Given up (the scan failed elsewhere meanwhile): the connection attempt ends now, not at its timeout.
  const giveUp = (): void => ssh.dispose();
  signal?.addEventListener('abort', giveUp, { once: true });
  try {
    await ssh.connect({
      host: target.host,
      port,
      username,
      ...(privateKey !== undefined ? { privateKey } : {}),
      ...(agent ? { agent } : {}),
      tryKeyboard: false,
      readyTimeout: connectTimeoutMs,
      hostVerifier,
      keepaliveInterval: 15_000,
    } as Parameters<NodeSSH['connect']>[0]);
  } catch (err) {
    ssh.dispose();
    if (refusal !== null) throw refusal;
    const message = err instanceof Error ? err.message : '';
    if (/passphrase/i.test(message)) {
      throw new DriftError('DRIFT_ERR_USAGE', `${where}: the identity ${opts.identity ?? ''} is encrypted; load it into the ssh-agent (ssh-add) instead: drift never prompts`, { cause: err });
    }
    if (/Cannot parse privateKey|Unsupported key format/i.test(message)) {
      throw new DriftError('DRIFT_ERR_USAGE', `${where}: the identity ${opts.identity ?? ''} is not a private key drift can read (${message})`, { cause: err });
    }
    throw connectError(where, err, { connectTimeoutMs, identity: opts.identity });
  } finally {
    signal?.removeEventListener('abort', giveUp);
  }
  const client = ssh.connection as unknown as SshClient | null;
  if (client === null) throw new DriftError('DRIFT_ERR_UNREACHABLE', `${where}: the SSH connection closed right after it opened`);
  return new SshSession(client, where, ssh);
}

/**
 * The remote commands of a collection with drift on the target. Each is fixed: the
 * only variable part is the drift path (`--remote-drift`), quoted for the shell.
 */
export function remoteCommands(remoteDrift: string | undefined, sections: readonly SectionName[] | undefined): { version: string; collect: string } {
  const drift = remoteDrift === undefined ? 'drift' : shellQuote(remoteDrift);
  const only = sections === undefined ? '' : ` --sections ${sections.join(',')}`;
  return { version: `${drift} --version`, collect: `${drift} collect --root / --scope - --gzip${only}` };
}

/** Parse and check a manifest a remote drift sent (gzip-compressed canonical JSON). */
export function parseRemoteManifest(gz: Buffer, where: string): Manifest {
  let text: string;
  try {
    text = gunzipSync(gz, { maxOutputLength: MAX_MANIFEST_BYTES }).toString('utf8');
  } catch (err) {
    const code = errnoOf(err);
    throw new DriftError(code === 'ERR_BUFFER_TOO_LARGE' ? 'DRIFT_ERR_TOO_LARGE' : 'DRIFT_ERR_MANIFEST',
      code === 'ERR_BUFFER_TOO_LARGE' ? `${where}: the remote manifest inflates past ${MAX_MANIFEST_BYTES} bytes; refused` : `${where}: the remote drift sent no gzip-compressed manifest (${code})`);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    throw new DriftError('DRIFT_ERR_MANIFEST', `${where}: the remote drift sent a manifest that is not JSON`);
  }
  const parsed = ManifestSchema.safeParse(data);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new DriftError('DRIFT_ERR_MANIFEST', `${where}: the remote drift sent a manifest this drift does not read (${issue ? `${issue.path.join('.')}: ${issue.message}` : 'invalid'}); install drift ${VERSION} on the host`);
  }
  return parsed.data as Manifest;
}

/** The first line of a remote output, printable and short, for messages. */
function firstLine(text: string): string {
  return (text.split('\n').find((l) => l.trim() !== '') ?? '').replace(/[^\x20-\x7e]/g, '?').slice(0, 300);
}

/** The version a remote drift gave, checked against this drift's: null when it is the same. */
function versionMismatch(where: string, answer: string, command: string): DriftError | null {
  if (!VERSION_RE.test(answer)) {
    return new DriftError('DRIFT_ERR_CONFIG', `${where}: ${command} did not answer with a version (${firstLine(answer) || 'nothing'})`);
  }
  if (answer === VERSION) return null;
  return new DriftError('DRIFT_ERR_CONFIG', `${where}: drift ${answer} is installed there, this is drift ${VERSION}; `
    + `their collectors may differ, so a comparison would not be trustworthy: scan with drift ${answer}, or install drift ${VERSION} on the host`);
}

/** A drift version as `drift --version` prints it and a manifest names it. */
const VERSION_RE = /^\d{1,9}\.\d{1,9}\.\d{1,9}[\w.+-]{0,64}$/;

/**
 * Collect with the drift installed on the target (`drift collect`, read-only); null when
 * drift is not on its PATH. One remote command, so one start of drift there and one
 * exec round trip: the manifest names the drift that collected it (`agent.version`),
 * which must be this drift's version. Only when the collect fails is `drift --version`
 * run, to say why: drift missing, something else answering, or another version.
 */
async function collectWithRemoteDrift(session: SshSession, opts: SshOptions, scan: SshScan): Promise<Manifest | null> {
  const where = session.where;
  const commands = remoteCommands(opts.remoteDrift, scan.sections);
  // The remote drift starts at once and reads the scope on stdin once the baseline gave it.
  const scope = Promise.resolve(scan.rules).then((rules) => Buffer.from(canonicalJson(scopeOf(rules))));
  // Its failure is collectOverSsh's to report (noRules), whether or not the command got to read it.
  scope.catch(() => undefined);
  const result = await session.exec(commands.collect, { stdin: scope, maxStdout: MAX_MANIFEST_GZIP_BYTES });
  let failure: DriftError;
  if (result.code === 0) {
    let manifest: Manifest | null = null;
    try {
      manifest = parseRemoteManifest(result.stdout, where);
    } catch (err) {
      if (!(err instanceof DriftError)) throw err;
      failure = err;
    }
    if (manifest !== null) {
      const mismatch = versionMismatch(where, manifest.agent.version, `the manifest's agent.version`);
      if (mismatch !== null) throw mismatch;
      return manifest;
    }
  } else if (result.code === 127 && opts.remoteDrift === undefined) {
    // The shell's "command not found": no drift on the PATH.
    return null;
  }
  failure ??= new DriftError('DRIFT_ERR_MANIFEST', `${where}: ${commands.collect} failed (exit ${result.code ?? result.signal ?? '?'}): ${firstLine(result.stderr) || 'no message'}`);
  // The collect failed: say whether drift is there at all, and which.
  const version = await session.exec(commands.version, { maxStdout: 4096 });
  if (version.code === 127 || (version.code !== 0 && /not found|No such file/i.test(version.stderr))) {
    if (opts.remoteDrift === undefined) return null;
    throw new DriftError('DRIFT_ERR_NOT_FOUND', `${where}: drift is not installed there (${commands.version}: ${firstLine(version.stderr) || `exit ${version.code}`}); `
      + 'install the drift-agent package on the host');
  }
  if (version.code !== 0) {
    throw new DriftError('DRIFT_ERR_CONFIG', `${where}: ${commands.version} did not answer with a version (exit ${version.code}: ${firstLine(version.stderr || version.stdout.toString('utf8'))})`);
  }
  throw versionMismatch(where, version.stdout.toString('utf8').trim(), commands.version) ?? failure;
}

/**
 * Collect the target's manifest over SSH, scoped by the baseline's recorded scope
 * (`scan.rules`: its watch, ignore and expect rules) and `scan.sections`: with the
 * drift installed on the target (`drift` on its PATH, or `opts.remoteDrift`), or
 * agentless where there is none (or `opts.agentless`).
 * The whole of it, connect included, is bounded by `opts.timeoutMs`.
 */
export async function collectOverSsh(target: SshTarget, opts: SshOptions, scan: SshScan): Promise<Manifest> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_SSH_TIMEOUT_MS;
  let session: SshSession | null = null;
  let timer: NodeJS.Timeout | undefined;
  let timedOut = false;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      timedOut = true;
      session?.close();
      reject(new DriftError('DRIFT_ERR_UNREACHABLE', `${describeTarget(target)}: the scan took longer than ${timeoutMs} ms (--timeout); nothing was collected`));
    }, timeoutMs);
  });
  let ended = false;
  const connecting = new AbortController();
  const work = (async () => {
    session = await connectSsh(target, opts, connecting.signal);
    if (timedOut || ended) session.close();
    if (opts.agentless !== true) {
      const manifest = await collectWithRemoteDrift(session, opts, scan);
      if (manifest !== null) return manifest;
      process.stderr.write(`drift: ${session.where}: drift is not installed there; collecting agentless (read-only commands and SFTP reads, nothing written)\n`);
    }
    const { collectAgentless } = await import('./agentless.js');
    return collectAgentless(session, { rules: await scan.rules, sections: scan.sections });
  })();
  // Rules that fail to come (a baseline that does not read) end the collection at once, connected or not.
  const noRules = Promise.resolve(scan.rules).then(() => new Promise<never>(() => undefined));
  try {
    return await Promise.race([work, deadline, noRules]);
  } finally {
    ended = true;
    connecting.abort();
    clearTimeout(timer);
    (session as SshSession | null)?.close();
    work.catch(() => undefined);
    noRules.catch(() => undefined);
  }
}
