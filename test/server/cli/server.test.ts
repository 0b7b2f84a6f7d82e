import t from 'tap';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { get as httpsGet } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import Database from 'better-sqlite3';
import { parseDuration, parseListen, parseSize, readServerFile, resolveServerConfig } from '../../../server/config.js';
import { driftBin } from '../../helpers/paths.js';
import { Store } from '../../../server/store/store.js';
import { baselineOf, fullReport, imageSections, manifestOf } from '../helpers/fleet.js';

// The real CLI, as a user runs it: `node bin/drift.js server ...`.
const entry = driftBin;
const ENROLL = 'enroll-secret-0123456789';
const ADMIN = 'admin-token-0123456789abc';

function tmp(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'drift-server-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function secrets(dir: string): string[] {
  writeFileSync(join(dir, 'enroll'), `${ENROLL}\n`, { mode: 0o600 });
  writeFileSync(join(dir, 'admin'), `${ADMIN}\n`, { mode: 0o600 });
  return ['--enroll-secret-file', join(dir, 'enroll'), '--admin-token-file', join(dir, 'admin')];
}

interface Child { proc: ChildProcess; address: string; exited: Promise<{ code: number | null; signal: string | null; stderr: string }>; logs: Array<{ msg?: string; reason?: string }> }

/** Start the server and wait for its `listening` log line (no sleeps). */
function start(args: string[]): Promise<Child> {
  const proc = spawn(process.execPath, [entry, 'server', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr?.on('data', (c: Buffer) => { stderr += c.toString(); });
  const exited = new Promise<{ code: number | null; signal: string | null; stderr: string }>((resolve) => {
    proc.on('exit', (code, signal) => resolve({ code, signal, stderr }));
  });
  const logs: Child['logs'] = [];
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: proc.stdout! });
    lines.on('line', (line) => {
      let log: { msg?: string; address?: string };
      try { log = JSON.parse(line) as typeof log; } catch { reject(new Error(`stdout line is not JSON: ${line}`)); return; }
      logs.push(log);
      if (log.msg === 'listening' && log.address) resolve({ proc, address: log.address, exited, logs });
    });
    void exited.then((e) => reject(new Error(`server exited ${e.code ?? e.signal}: ${e.stderr}`)));
  });
}

t.test('config: flags win over the file; exact messages', async (t) => {
  const dir = tmp(t);
  const file = join(dir, 'server.yaml');
  writeFileSync(file, 'listen: 0.0.0.0:9000\nstate-dir: /srv/drift\nrules: /etc/drift/rules.d\nbaseline-pubkey: [/a.pub, /b.pub]\nmax-body: 1MiB\nretention: 7d\n');
  const fromFile = resolveServerConfig({}, await readServerFile(file));
  t.same(fromFile.listen, { host: '0.0.0.0', port: 9000 });
  t.equal(fromFile.db, '/srv/drift/drift.db', 'db defaults into the state dir');
  t.same(fromFile.rules, ['/etc/drift/rules.d']);
  t.same(fromFile.baselinePubkeys, ['/a.pub', '/b.pub']);
  t.equal(fromFile.maxBody, 1024 * 1024);
  t.equal(fromFile.retentionMs, 7 * 86_400_000);
  t.equal(fromFile.silentAfterMs, 15 * 60_000);
  t.ok(Object.isFrozen(fromFile));
  const both = resolveServerConfig({ listen: '127.0.0.1:0', db: '/tmp/x.db', rules: ['/r'] }, await readServerFile(file));
  t.same(both.listen, { host: '127.0.0.1', port: 0 });
  t.equal(both.db, '/tmp/x.db');
  t.same(both.rules, ['/r']);
  const defaults = resolveServerConfig({});
  t.same(defaults.listen, { host: '127.0.0.1', port: 8750 });
  t.equal(defaults.db, '/var/lib/drift-server/drift.db');
  t.equal(defaults.maxBody, 64 * 1024 * 1024, 'a manifest of ~80,000 files (over 16 MiB) fits');
  t.same(parseListen('[::1]:8750'), { host: '::1', port: 8750 });
  t.throws(() => parseListen('8750'), { code: 'DRIFT_ERR_USAGE', message: '--listen must be HOST:PORT, e.g. 127.0.0.1:8750 or [::1]:8750 (got "8750")' });
  t.throws(() => parseDuration('soon', '--retention'), { message: '--retention must be a duration like 90s, 15m, 12h or 30d (got "soon")' });
  t.throws(() => parseSize('lots', '--max-body'), { message: '--max-body must be a size in bytes like 16777216, 512KiB or 16MiB (got "lots")' });
  t.throws(() => resolveServerConfig({ tlsCert: '/c.pem' }), { message: /--tls-cert and --tls-key go together/ });
  writeFileSync(file, 'listn: 1.2.3.4:5\n');
  await t.rejects(readServerFile(file), { code: 'DRIFT_ERR_CONFIG', message: new RegExp(`^${file}: unknown key listn \\(keys are the long flag names`) });
  writeFileSync(file, 'listen: [unclosed\n');
  await t.rejects(readServerFile(file), { message: new RegExp(`^${file}: not valid YAML`) });
});

t.test('a missing secret file is a clear error and exit 2', async (t) => {
  const dir = tmp(t);
  const proc = spawn(process.execPath, [entry, 'server', '--listen', '127.0.0.1:0', '--db', join(dir, 'd.db'), '--enroll-secret-file', join(dir, 'nope'), '--admin-token-file', join(dir, 'nope2')], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
  const code = await new Promise<number | null>((resolve) => proc.on('exit', resolve));
  t.equal(code, 2);
  t.match(stderr, `drift: cannot read --enroll-secret-file ${join(dir, 'nope')}: ENOENT`);
});

t.test('SIGTERM finishes in-flight work and closes the database', async (t) => {
  const dir = tmp(t);
  const db = join(dir, 'drift.db');
  const child = await start(['--listen', '127.0.0.1:0', '--db', db, ...secrets(dir)]);
  t.match(child.address, /^http:\/\/127\.0\.0\.1:\d+$/);
  const health = await fetch(`${child.address}/healthz`);
  t.same(await health.json(), { ok: true });
  const enrolled = await fetch(`${child.address}/v1/enroll`, { method: 'POST', headers: { authorization: `Bearer ${ENROLL}`, 'content-type': 'application/json' }, body: JSON.stringify({ hostId: 'h1', hostname: 'a', imageId: null }) });
  const { nodeKey } = (await enrolled.json()) as { nodeKey: string };
  child.proc.kill('SIGTERM');
  const exit = await child.exited;
  t.equal(exit.code, 0, exit.stderr);
  t.equal(exit.stderr, '', 'nothing on stderr: no deprecation warning (FSTDEP023) or other');
  const said = child.logs.map((l) => `${l.msg ?? ''}${l.reason ? ` (${l.reason})` : ''}`);
  t.same(said.slice(-2), ['stopping: finishing requests in flight (SIGTERM)', 'stopped'], 'the collector says it stops, and why');
  const raw = new Database(db, { readonly: true });
  t.equal(raw.pragma('integrity_check', { simple: true }), 'ok');
  t.equal(raw.prepare('SELECT count(*) FROM hosts').pluck().get(), 1);
  raw.close();
  t.notMatch(exit.stderr, nodeKey, 'the node key is never logged');
});

t.test('kill -9 during a stream of reports loses no acknowledged report', async (t) => {
  const dir = tmp(t);
  const db = join(dir, 'drift.db');
  const child = await start(['--listen', '127.0.0.1:0', '--db', db, ...secrets(dir)]);
  const { baseline } = baselineOf('ami-1');
  const put = await fetch(`${child.address}/v1/baselines/ami-1`, { method: 'PUT', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: JSON.stringify(baseline) });
  t.equal(put.status, 200);
  const hosts = ['h1', 'h2', 'h3', 'h4'];
  const keys = new Map<string, string>();
  for (const id of hosts) {
    const r = await fetch(`${child.address}/v1/enroll`, { method: 'POST', headers: { authorization: `Bearer ${ENROLL}`, 'content-type': 'application/json' }, body: JSON.stringify({ hostId: id, hostname: id, imageId: 'ami-1' }) });
    keys.set(id, ((await r.json()) as { nodeKey: string }).nodeKey);
  }
  const acked = new Map<string, number[]>(hosts.map((h) => [h, []]));
  let total = 0;
  let killed = false;
  const killAt = 60;
  const stream = async (id: string): Promise<void> => {
    for (let seq = 1; seq < 10_000; seq++) {
      // Every report drifts differently, so each one writes sections, deltas and findings.
      const s = imageSections();
      s.files['/etc/hosts'] = { ...s.files['/etc/hosts']!, sha256: seq.toString(16).padStart(64, '0') };
      const m = manifestOf(s, { hostname: id, machineId: id, imageId: 'ami-1' });
      let status: number;
      try {
        const r = await fetch(`${child.address}/v1/reports`, { method: 'POST', headers: { authorization: `Bearer ${keys.get(id)}`, 'content-type': 'application/json' }, body: JSON.stringify(fullReport(seq, m)) });
        status = r.status;
        await r.arrayBuffer();
      } catch {
        return; // the collector is gone: this report was never acknowledged
      }
      if (status !== 200) throw new Error(`report ${id}#${seq}: ${status}`);
      acked.get(id)!.push(seq);
      if (++total >= killAt && !killed) {
        killed = true;
        child.proc.kill('SIGKILL');
      }
    }
  };
  await Promise.all(hosts.map(stream));
  const exit = await child.exited;
  t.equal(exit.signal, 'SIGKILL');
  t.ok(total >= killAt, `${total} reports acknowledged before the kill`);

  const raw = new Database(db);
  t.equal(raw.pragma('integrity_check', { simple: true }), 'ok', 'the database opens cleanly');
  raw.close();
  const store = Store.open(db);
  for (const id of hosts) {
    const stored = new Set(store.reportSeqs(id));
    const lost = acked.get(id)!.filter((s) => !stored.has(s));
    t.same(lost, [], `${id}: every acknowledged seq is stored (${acked.get(id)!.length} acknowledged)`);
    t.ok((store.hostById(id)?.lastSeq ?? 0) >= Math.max(0, ...acked.get(id)!), `${id}: last_seq covers the acknowledged reports`);
  }
  store.close();
});

t.test('a secret file others can read, or one value for both secrets, exits 2 before listening', async (t) => {
  const dir = tmp(t);
  const run = (enroll: string, admin: string): Promise<{ code: number | null; stderr: string }> => {
    const proc = spawn(process.execPath, [entry, 'server', '--listen', '127.0.0.1:0', '--db', join(dir, 'd.db'), '--enroll-secret-file', enroll, '--admin-token-file', admin], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    proc.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
    return new Promise((resolve) => proc.on('exit', (code) => resolve({ code, stderr })));
  };
  const args = secrets(dir);
  const open = join(dir, 'open');
  writeFileSync(open, `${ENROLL}\n`, { mode: 0o644 });
  const r1 = await run(open, args[3] as string);
  t.equal(r1.code, 2);
  t.match(r1.stderr, `--enroll-secret-file ${open} is accessible to others (mode 0644)`);
  const r2 = await run(args[1] as string, args[1] as string);
  t.equal(r2.code, 2);
  t.match(r2.stderr, 'hold the same value');
});

t.test('--help names every setting and the 64 MiB body limit', async (t) => {
  const r = spawnSync(process.execPath, [entry, 'server', '--help'], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  // commander wraps the text to the terminal width: compare with the whitespace folded.
  t.match(r.stdout.replace(/\s+/g, ' '), '--max-body <bytes> largest request body after gzip inflation, e.g. 128MiB (default 64 MiB');
  for (const flag of ['--listen', '--db', '--enroll-secret-file', '--admin-token-file', '--baseline-pubkey', '--tls-cert', '--tls-key', '--retention', '--roles']) {
    t.match(r.stdout, flag);
  }
});

/** GET a URL; resolves with the status and body, rejects on a transport error. */
function get(url: string, opts: { ca?: Buffer } = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const cb = (res: import('node:http').IncomingMessage): void => {
      let body = '';
      res.on('data', (c: Buffer) => { body += c.toString(); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    };
    const req = url.startsWith('https:') ? httpsGet(url, { ...opts, agent: false }, cb) : httpGet(url, { agent: false }, cb);
    req.on('error', reject);
  });
}

t.test('TLS: --tls-cert/--tls-key serve HTTPS; plain HTTP to the port gets no answer', async (t) => {
  const dir = tmp(t);
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ed25519', '-keyout', key, '-out', cert, '-days', '2', '-nodes',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  const child = await start(['--listen', '127.0.0.1:0', '--db', join(dir, 'd.db'), ...secrets(dir), '--tls-cert', cert, '--tls-key', key]);
  t.teardown(() => { child.proc.kill('SIGKILL'); });
  t.match(child.address, /^https:\/\/127\.0\.0\.1:\d+$/, 'the listening line says https');
  const ok = await get(`${child.address}/healthz`, { ca: readFileSync(cert) });
  t.same([ok.status, JSON.parse(ok.body)], [200, { ok: true }], 'HTTPS with the certificate as CA');
  await t.rejects(get(`${child.address}/healthz`), { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' }, 'an untrusted certificate is refused by the client');
  const plain = child.address.replace(/^https:/, 'http:');
  const answer = await get(`${plain}/healthz`).then((r) => `HTTP ${r.status}`, (err: NodeJS.ErrnoException) => `error ${err.code ?? err.message}`);
  t.match(answer, /^error /, `plain HTTP is not served (${answer})`);
  child.proc.kill('SIGTERM');
  const exit = await child.exited;
  t.equal(exit.code, 0, exit.stderr);
});

t.test('a private key given as --baseline-pubkey is refused: exit 2, the file named', async (t) => {
  const dir = tmp(t);
  execFileSync(process.execPath, [entry, 'keygen', '--out', join(dir, 'bake')]);
  const r = spawnSync(process.execPath, [entry, 'server', '--listen', '127.0.0.1:0', '--db', join(dir, 'drift.db'), ...secrets(dir), '--baseline-pubkey', join(dir, 'bake.key')], { encoding: 'utf8' });
  t.equal(r.status, 2);
  t.match(r.stderr, new RegExp(`^drift: ${join(dir, 'bake.key').replace(/[.]/g, '\\.')} is a private key, not a public key: give the \\.pub file`));
});
