import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import type { Test as Tap } from 'tap';
import { drift, must } from './run.js';
import { copyRoot, debianMinbase } from './debian.js';
import { BaselineSchema, type Baseline } from '../../agent/protocol/manifest.js';
import { repoRoot } from './paths.js';

/**
 * A real OpenSSH sshd on 127.0.0.1 for the SSH scan tests: its own config, host key
 * and authorized key in a folder of its own, a port chosen at run time, and
 * `ChrootDirectory` so that the remote "/" is a root the test built. Root logs in
 * with the client key only; sftp is sshd's internal-sftp; commands run with the
 * chroot's own shell and coreutils.
 */
export interface Sshd {
  port: number;
  /** The folder of its config and keys (root-owned, 0700: ChrootDirectory's rules). */
  dir: string;
  /** The chroot the remote side sees as /. */
  root: string;
  /** The client's private key (authorized for root). */
  clientKey: string;
  /** A known_hosts file listing this sshd's host key for [127.0.0.1]:port. */
  knownHosts: string;
  /** The host key's public line (`ssh-ed25519 AAAA…`). */
  hostKeyPub: string;
  stop(): Promise<void>;
}

/** A folder for sshd's files: ChrootDirectory wants root-owned parents no one else may write (not /tmp). */
export function sshWorkDir(): string {
  const base = process.env['DRIFT_TEST_CACHE'] ?? '/var/cache/drift-tests';
  mkdirSync(base, { recursive: true, mode: 0o755 });
  chmodSync(base, 0o755);
  return mkdtempSync(join(base, 'ssh-'));
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Start sshd and resolve once it says it listens (its own log line, never a sleep). */
function launch(config: string): Promise<{ child: ChildProcess; ok: boolean; log: string }> {
  return new Promise((resolve) => {
    const child = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    let done = false;
    const finish = (ok: boolean): void => {
      if (done) return;
      done = true;
      resolve({ child, ok, log });
    };
    child.stderr?.on('data', (b: Buffer) => {
      log += b.toString('utf8');
      if (/Server listening on 127\.0\.0\.1 port \d+/.test(log)) finish(true);
    });
    child.on('exit', () => finish(false));
    child.on('error', () => finish(false));
  });
}

/** Start an sshd whose "/" is `root`. */
export async function startSshd(root: string, dir: string = sshWorkDir()): Promise<Sshd> {
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const hostKey = join(dir, 'host_ed25519');
  const clientKey = join(dir, 'client_ed25519');
  await must('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'drift-test-host', '-f', hostKey]);
  await must('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'drift-test-client', '-f', clientKey]);
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(`${clientKey}.pub`), { mode: 0o600 });
  const hostKeyPub = readFileSync(`${hostKey}.pub`, 'utf8').trim().split(' ').slice(0, 2).join(' ');
  // Up to three ports: another process may take the free port before sshd binds it.
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const config = join(dir, 'sshd_config');
    writeFileSync(config, [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${hostKey}`,
      `PidFile ${join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      'StrictModes no',
      'PermitRootLogin prohibit-password',
      'PubkeyAuthentication yes',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'AllowUsers root',
      `ChrootDirectory ${root}`,
      'Subsystem sftp internal-sftp',
      'PrintMotd no',
      'LogLevel INFO',
      '',
    ].join('\n'));
    const { child, ok, log } = await launch(config);
    if (!ok) {
      if (/Address already in use/.test(log)) continue;
      throw new Error(`sshd did not start: ${log.trim()}`);
    }
    const knownHosts = join(dir, 'known_hosts');
    writeFileSync(knownHosts, `[127.0.0.1]:${port} ${hostKeyPub}\n`, { mode: 0o600 });
    return {
      port, dir, root, clientKey, knownHosts, hostKeyPub,
      stop: () => new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) {
          resolve();
          return;
        }
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
    };
  }
  throw new Error('sshd did not find a free port in three attempts');
}

/**
 * Install this checkout's drift into a root as a target with drift would have it:
 * this node binary at /usr/local/bin/node, the compiled agent side and the packages
 * it imports under /usr/local/lib/drift, and /usr/local/bin/drift starting it.
 * (The single executable takes minutes to build; this is the same code, quickly.)
 */
export function installDrift(root: string): void {
  const lib = join(root, 'usr/local/lib/drift');
  mkdirSync(join(root, 'usr/local/bin'), { recursive: true });
  cpSync(process.execPath, join(root, 'usr/local/bin/node'), { dereference: true });
  chmodSync(join(root, 'usr/local/bin/node'), 0o755);
  cpSync(join(repoRoot, 'dist', 'agent'), join(lib, 'dist', 'agent'), { recursive: true, filter: (src) => !src.endsWith('.map') });
  writeFileSync(join(lib, 'package.json'), readFileSync(join(repoRoot, 'package.json')));
  for (const pkg of ['zod', 'commander', 'yaml', 'picomatch', 'diff', 'node-ssh', 'ssh2', 'asn1', 'bcrypt-pbkdf', 'safer-buffer', 'tweetnacl', 'is-stream', 'make-dir', 'sb-promise-queue', 'sb-scandir', 'shell-escape', 'semver', '@napi-rs/xattr', '@napi-rs/xattr-linux-x64-gnu']) {
    const src = join(repoRoot, 'node_modules', pkg);
    try {
      cpSync(src, join(lib, 'node_modules', pkg), { recursive: true, dereference: true });
    } catch {
      // An optional dependency this machine does not have.
    }
  }
  mkdirSync(dirname(join(lib, 'rules')), { recursive: true });
  cpSync(join(repoRoot, 'rules'), join(lib, 'rules'), { recursive: true });
  writeFileSync(join(root, 'usr/local/bin/drift'), '#!/bin/sh\nexec /usr/local/bin/node /usr/local/lib/drift/dist/agent/cli/executable.js "$@"\n', { mode: 0o755 });
}

/** Remove a folder made by sshWorkDir (after the sshd stopped). */
export function removeWorkDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** A baked root behind a real sshd, shared by the subtests of one SSH scan test file. */
export interface SshScene {
  work: string;
  root: string;
  baselinePath: string;
  state: string;
  baseline: Baseline;
  sshd: Sshd;
  /** `root@127.0.0.1:PORT` */
  target: string;
  /** No ssh-agent of the machine running the tests: the identity file is the only credential. */
  env: Record<string, string>;
  /** `drift scan --ssh` of the scene's target with its key, known_hosts and state folder, then `extra`. */
  sshArgs(extra?: string[]): string[];
}

/**
 * Copy the debootstrap root (with a machine-id; with this checkout's drift when `withDrift`),
 * bake its baseline with a stamp of `imageId`, and serve it through a real sshd; all removed
 * at the end of the test file.
 */
export async function sshScene(t: Tap, imageId: string, opts: { withDrift: boolean }): Promise<SshScene> {
  const work = sshWorkDir();
  t.teardown(() => removeWorkDir(work));
  const root = await copyRoot(debianMinbase, join(work, 'root'));
  writeFileSync(join(root, 'etc', 'machine-id'), '0123456789abcdef0123456789abcdef\n');
  if (opts.withDrift) installDrift(root);
  const baselinePath = join(work, 'baseline.json');
  const state = join(work, 'state');
  const bake = await drift(['baseline', '--root', root, '--image-id', imageId, '--out', baselinePath, '--state-dir', state, '--stamp']);
  if (bake.code !== 0) throw new Error(`drift baseline failed: ${bake.stderr}`);
  const baseline = BaselineSchema.parse(JSON.parse(readFileSync(baselinePath, 'utf8')));
  const sshd = await startSshd(root, join(work, 'sshd'));
  t.teardown(() => sshd.stop());
  const target = `root@127.0.0.1:${sshd.port}`;
  return {
    work, root, baselinePath, state, baseline, sshd, target,
    env: { SSH_AUTH_SOCK: '' },
    sshArgs: (extra: string[] = []) => ['scan', '--ssh', target, '--baseline', baselinePath, '--identity', sshd.clientKey,
      '--known-hosts', sshd.knownHosts, '--state-dir', state, '--connect-timeout', '5s', ...extra],
  };
}

/** Every path of a root with type, mode, owner, size, mtime and the sha256 of regular files. */
export async function rootListing(dir: string): Promise<string> {
  const meta = await must('find', [dir, '-xdev', '-printf', '%P\t%y\t%m\t%U:%G\t%s\t%T@\t%l\n']);
  const sums = await must('sh', ['-c', 'cd "$1" && find . -xdev -type f -print0 | sort -z | xargs -0 sha256sum', 'sh', dir]);
  return `${meta.split('\n').sort().join('\n')}\n${sums}`;
}

/** Mount a procfs at `<root>/proc` until the end of test `t` (unmounted then, whether it passed or not). */
export async function mountProc(t: Tap, root: string): Promise<string> {
  const dir = join(root, 'proc');
  await must('mount', ['-t', 'proc', 'proc', dir]);
  t.teardown(() => must('umount', [dir]));
  return dir;
}

/** A node program listening on 127.0.0.1 (a port the kernel picks), then printing its PID and port. */
const LISTENER = "const s = require('net').createServer().listen(0, '127.0.0.1', () => process.stdout.write(`${process.pid} ${s.address().port}\\n`));";

/**
 * Run `exe` (a node binary) as a TCP listener until the end of test `t`; resolves once it
 * listens (its own line on a pipe, never a sleep). `daemon`: double-forked into a session
 * of its own (setsid, a shell that exits at once), so that its parent is PID 1 as a
 * service's is; otherwise a plain child of this test.
 */
export function startListener(t: Tap, exe: string, opts: { daemon: boolean }): Promise<{ pid: number; port: number }> {
  const child = opts.daemon
    ? spawn('setsid', ['sh', '-c', '"$0" -e "$1" </dev/null 2>/dev/null &', exe, LISTENER], { stdio: ['ignore', 'pipe', 'ignore'] })
    : spawn(exe, ['-e', LISTENER], { stdio: ['ignore', 'pipe', 'ignore'] });
  const exited = opts.daemon ? new Promise<void>((resolve) => child.once('exit', () => resolve())) : Promise.resolve();
  const line = new Promise<{ pid: number; port: number }>((resolve, reject) => {
    let text = '';
    const stdout = child.stdout as NonNullable<typeof child.stdout>;
    stdout.on('data', (b: Buffer) => {
      text += b.toString('utf8');
      const m = /^(\d+) (\d+)\n/.exec(text);
      if (m) {
        stdout.destroy();
        resolve({ pid: Number(m[1]), port: Number(m[2]) });
      } else if (text.length > 100) reject(new Error(`the listener said ${JSON.stringify(text)}`));
    });
    stdout.on('close', () => reject(new Error(`the listener ended before it listened: ${JSON.stringify(text)}`)));
    child.on('error', reject);
  });
  return line.then(async (got) => {
    t.teardown(() => {
      try {
        process.kill(got.pid, 'SIGTERM');
      } catch {
        // Already gone.
      }
    });
    // The daemon's parent shell has exited: it is PID 1's child now.
    await exited;
    return got;
  });
}
