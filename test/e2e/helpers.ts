import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { buildApp } from '../../server/http/app.js';
import { Store } from '../../server/store/store.js';
import { compare } from '../../agent/engine/compare.js';
import { loadRuleSet } from '../../agent/rules/load.js';
import { driftBin, repoRoot } from '../helpers/paths.js';

/**
 * Helpers of the agent and fleet tests: small real roots, a real collector in-process
 * (the collector's app and store over a real SQLite file), the agent as a process.
 */

/** A small Debian-like root: identity files, config, two binaries, a dpkg database of two packages. */
export async function makeRoot(dir: string, host: { machineId: string; hostname: string }): Promise<string> {
  const files: Record<string, string> = {
    'etc/machine-id': `${host.machineId}\n`,
    'etc/hostname': `${host.hostname}\n`,
    'etc/ssh/sshd_config': 'Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin no\nPasswordAuthentication no\n',
    'etc/motd': 'Welcome.\n',
    'usr/bin/hello': '#!/bin/sh\necho hello\n',
    'usr/bin/true-ish': '#!/bin/sh\nexit 0\n',
    'var/lib/dpkg/status': [
      'Package: hello', 'Status: install ok installed', 'Architecture: amd64', 'Version: 2.10-3', 'Description: hello', '',
      'Package: openssh-server', 'Status: install ok installed', 'Architecture: amd64', 'Source: openssh', 'Version: 1:9.2p1-2+deb12u3',
      'Conffiles:', ' /etc/ssh/sshd_config 0123456789abcdef0123456789abcdef', 'Description: ssh server', '',
    ].join('\n'),
  };
  for (const [path, content] of Object.entries(files)) {
    const full = join(dir, path);
    await mkdir(join(full, '..'), { recursive: true });
    await writeFile(full, content);
    if (path.startsWith('usr/bin/')) await chmod(full, 0o755);
  }
  return dir;
}

/** Every request body the collector received on POST /v1/reports, in arrival order. */
export interface Received { seq: number; hostId: string | undefined; machineId: string; manifest: boolean; sections: string[] | null; spoolDropped: number | undefined; bytes: number }

/** A real collector listening on 127.0.0.1 (port 0), over a real database file. */
export async function startCollector(dbFile: string, opts: { enrollSecret?: string; adminToken?: string; silentAfterMs?: number } = {}): Promise<{
  url: string; store: Store; received: Received[]; close(): Promise<void>;
}> {
  const store = Store.open(dbFile);
  const app = buildApp({
    store, enrollSecret: opts.enrollSecret ?? 'enroll-s3cret', adminToken: opts.adminToken ?? 'admin-t0ken', baselineKeys: [],
    rules: await loadRuleSet([]), compare, maxBody: 16 * 1024 * 1024, silentAfterMs: opts.silentAfterMs ?? 15 * 60_000,
  });
  const received: Received[] = [];
  app.addHook('preHandler', async (req) => {
    if (req.method !== 'POST' || req.url !== '/v1/reports') return;
    const b = req.body as { seq: number; hostId?: string; host: { machineId: string }; manifest?: unknown; sections?: Record<string, unknown>; spoolDropped?: number };
    received.push({
      seq: b.seq, hostId: b.hostId, machineId: b.host.machineId, manifest: b.manifest !== undefined,
      sections: b.sections ? Object.keys(b.sections).sort() : null, spoolDropped: b.spoolDropped,
      bytes: Number(req.headers['content-length'] ?? 0),
    });
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const port = (app.server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`, store, received,
    async close() { await app.close(); store.close(); },
  };
}

/** A port on 127.0.0.1 that nothing listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/** Run `drift agent ARGS` as a process, through the real launcher and its exit codes. */
export function spawnAgent(args: string[]): ChildProcess {
  return spawn(process.execPath, [join(repoRoot, 'bin', 'drift.js'), 'agent', ...args], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Resolve with the first stderr JSON log line whose msg matches; reject if the process exits first. */
export function waitForLog(child: ChildProcess, msg: RegExp): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const onData = (b: Buffer): void => {
      buf += b.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          const j = JSON.parse(line) as Record<string, unknown>;
          if (typeof j['msg'] === 'string' && msg.test(j['msg'])) { child.stderr?.off('data', onData); child.off('exit', onExit); resolve(j); return; }
        } catch { /* not a log line */ }
      }
    };
    const onExit = (code: number | null): void => reject(new Error(`process exited (${code}) before logging ${msg}; stderr so far: ${buf}`));
    child.stderr?.on('data', onData);
    child.once('exit', onExit);
  });
}

/** Resolve with the exit code and signal when the process ends. */
export function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) { resolve({ code: child.exitCode, signal: child.signalCode }); return; }
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
}

/** Start `drift server` and resolve with its URL once it logs "listening" (never a sleep). */
export function startServer(args: string[]): Promise<{ child: ChildProcess; url: string; logs: string[] }> {
  const child = spawn(process.execPath, [driftBin, 'server', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: string[] = [];
  return new Promise((resolve, reject) => {
    let buf = '';
    child.stderr?.on('data', (b: Buffer) => logs.push(b.toString()));
    child.stdout?.on('data', (b: Buffer) => {
      buf += b.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        logs.push(line);
        try {
          const j = JSON.parse(line) as { msg?: string; address?: string };
          if (j.msg === 'listening' && j.address) resolve({ child, url: j.address, logs });
        } catch { /* not JSON */ }
      }
    });
    child.once('exit', (code) => reject(new Error(`drift server exited ${code} before listening:\n${logs.join('')}`)));
  });
}
