/**
 * Collector load benchmark (not a test): 10,000 simulated hosts of two images
 * (about 3,000 files each, 1% drifted) on loopback against a real `drift server`
 * in its own process. Enrolls every host, pushes both baselines, sends the first
 * full report of every host, then a round of digest-only reports. Prints JSON:
 * full reports/s, digest-only reports/s, each kind's request times (p50, p99, max:
 * clean and drifted full reports, digest-only), the server's peak RSS (VmHWM) and the
 * database size against 2 × (two baselines + the drifted hosts' deltas), and where the
 * collector decided the reports (`reportsDecided`: main thread or report worker).
 *
 * Usage: node dist/bench/load/run.js [--hosts 10000] [--files 3000] [--concurrency 32] [--first-boot]
 *
 * `--first-boot`: every host arrives as a cloud instance after cloud-init's first boot
 * (its own hostname, machine-id, /etc/hosts line and SSH host keys; the default user
 * `admin` with the image's launch key, passwd/group/shadow lines and sudoers file, and
 * the launch key in host.instanceKeys), so the collector pins each host's first boot;
 * the output then names the bytes the pins cost per host. Those hosts' full bodies are
 * three shared gzip members around a small per-host one holding the first-boot entries.
 * (DRIFT_BENCH_SERVER_NODE_ARGS='--cpu-prof' profiles the server process;
 * DRIFT_BENCH_SERVER_ARGS='--report-workers 1' passes flags to drift server.)
 * Bodies are built (and gzipped) before timing. A clean host's full body is two
 * gzip members (its own head + its image's shared sections): valid gzip that the
 * collector inflates in full, without holding 10,000 × 150 KB in the generator.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { gzipSync } from 'node:zlib';
import Database from 'better-sqlite3';
import { canonicalJson, digestOf } from '../../agent/protocol/canonical.js';
import { computeDigests } from '../../agent/manifest.js';
import { baselineDigest } from '../../agent/baseline.js';
import { MANIFEST_SCHEMA, type Baseline, type Digests, type Sections } from '../../agent/protocol/manifest.js';
import { sectionDelta } from '../../server/store/delta.js';
import { driftBin } from '../../test/helpers/paths.js';

const arg = (name: string, def: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const HOSTS = arg('hosts', 10_000);
const FILES = arg('files', 3_000);
const CONCURRENCY = arg('concurrency', 32);
const FIRST_BOOT = process.argv.includes('--first-boot');
const LAUNCH_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl deploy@ci';
const ENROLL = 'bench-enroll-secret-0123456789';
const ADMIN = 'bench-admin-token-0123456789';

const hex = (s: string): string => createHash('sha256').update(s).digest('hex');

/** Sections of an image: FILES files under a Debian-like tree, ~10% as many packages. */
function imageSections(image: string): Sections {
  const files: Sections['files'] = {};
  const dirs = ['/etc', '/usr/bin', '/usr/sbin', '/usr/lib/x86_64-linux-gnu', '/usr/lib/systemd/system', '/opt/app/lib'];
  for (let i = 0; i < FILES; i++) {
    const dir = dirs[i % dirs.length] as string;
    const pkg = `pkg${i % 300}`;
    files[`${dir}/f${String(i).padStart(5, '0')}`] = {
      type: 'file', mode: dir.includes('bin') ? '0755' : '0644', uid: 0, gid: 0, size: 1000 + ((i * 7919) % 90000),
      sha256: hex(`${image}:${i}`), owner: `dpkg:${pkg}`,
    };
  }
  if (FIRST_BOOT) Object.assign(files, imageIdentityFiles());
  const packages: Sections['packages'] = {};
  for (let i = 0; i < FILES / 10; i++) packages[`dpkg:pkg${i}:amd64`] = { version: `1.${i % 17}.${i % 5}-1+deb12u1`, source: `src${i}` };
  return {
    packages, files,
    processes: { '/usr/sbin/sshd|root': { count: 1, deleted: false }, '/usr/sbin/cron|root': { count: 1, deleted: false }, '/usr/lib/systemd/systemd-journald|root': { count: 1, deleted: false } },
    ports: { 'tcp:0.0.0.0:22': { process: '/usr/sbin/sshd' }, 'udp:127.0.0.1:323': { process: '/usr/sbin/chronyd' } },
  };
}

const text = (content: string, mode = '0644'): Sections['files'][string] => ({
  type: 'file', mode, uid: 0, gid: 0, size: Buffer.byteLength(content), sha256: hex(content), content,
});
const PASSWD = 'root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nsshd:x:100:65534::/run/sshd:/usr/sbin/nologin\n';
const GROUP = 'root:x:0:\nadm:x:4:\nsudo:x:27:\n';

/** What first boot changes, as the image has it (ahead of first boot). */
function imageIdentityFiles(): Sections['files'] {
  return {
    '/etc/hostname': text('localhost\n'), '/etc/machine-id': text('uninitialized\n', '0444'),
    '/etc/hosts': text('127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n'),
    '/etc/passwd': text(PASSWD), '/etc/group': text(GROUP),
    '/etc/shadow': { ...text('root\ndaemon\nsshd\n', '0640'), sha256: hex('shadow') }, '/etc/gshadow': { ...text('root\nadm\nsudo\n', '0640'), sha256: hex('gshadow') },
    '/etc/sudoers.d': { type: 'dir', mode: '0750', uid: 0, gid: 0 },
  };
}

/** The same paths after cloud-init's first boot of host `i` (plus host keys and the default user's keys). */
function firstBootFiles(i: number, machineId: string): Sections['files'] {
  const name = `web-${i}`;
  const files: Sections['files'] = {
    ...imageIdentityFiles(),
    '/etc/hostname': text(`${name}\n`), '/etc/machine-id': text(`${machineId}\n`, '0444'),
    '/etc/hosts': text(`127.0.0.1 localhost\n127.0.1.1 ${name}\n::1 localhost ip6-localhost ip6-loopback\n`),
    '/etc/passwd': text(`${PASSWD}admin:x:1000:1000:Debian:/home/admin:/bin/bash\n`),
    '/etc/group': text(GROUP.replace('sudo:x:27:', 'sudo:x:27:admin') + 'admin:x:1000:\n'),
    '/etc/shadow': { ...text('root\ndaemon\nsshd\nadmin\n', '0640'), sha256: hex('shadow+admin') },
    '/etc/gshadow': { ...text('root\nadm\nsudo\nadmin\n', '0640'), sha256: hex('gshadow+admin') },
    '/etc/sudoers.d/90-cloud-init-users': text('# Created by cloud-init v. 22.4.2 on Tue, 01 Dec 2026 00:00:00 +0000\n\n# User rules for admin\nadmin ALL=(ALL) NOPASSWD:ALL\n', '0440'),
    '/home/admin/.ssh': { type: 'dir', mode: '0700', uid: 1000, gid: 1000 },
    '/home/admin/.ssh/authorized_keys': { ...text(`${LAUNCH_KEY}\n`, '0600'), uid: 1000, gid: 1000 },
  };
  for (const type of ['ed25519', 'ecdsa', 'rsa']) {
    files[`/etc/ssh/ssh_host_${type}_key`] = { type: 'file', mode: '0600', uid: 0, gid: 0, size: 400, sha256: hex(`${name}:${type}:private`) };
    files[`/etc/ssh/ssh_host_${type}_key.pub`] = text(`ssh-${type} AAAA${hex(`${name}:${type}`)} root@${name}\n`);
  }
  return files;
}

/** Canonical `"key":value` members of a section, in key order. */
function members(section: Record<string, unknown>, from: string, to: string): string {
  return Object.keys(section).sort().filter((k) => k >= from && k < to).map((k) => `${JSON.stringify(k)}:${canonicalJson(section[k])}`).join(',');
}

/** Canonical sections JSON in the order a manifest lists them (keys sorted, as agents send). */
function sectionsJson(s: Partial<Sections>): string {
  return ['packages', 'files', 'processes', 'ports'].filter((k) => s[k as keyof Sections] !== undefined)
    .map((k) => `"${k}":${canonicalJson(s[k as keyof Sections])}`).join(',');
}

function head(seq: number, hostInfo: unknown, digests: Digests, full: boolean): string {
  const h = JSON.stringify(hostInfo);
  const base = `{"schema":"drift.report-request/v1","seq":${seq},"collectedAt":"2026-01-01T00:00:00.000Z","host":${h},"digests":${JSON.stringify(digests)}`;
  return full ? `${base},"manifest":{"schema":"${MANIFEST_SCHEMA}","host":${h},"collectedAt":"2026-01-01T00:00:00.000Z","agent":{"version":"bench"},"digests":${JSON.stringify(digests)},` : `${base}}`;
}

interface Body { chunks: Buffer[]; length: number; key: string }

/** First-boot entries sort between these keys: after the image's /etc/fNNNNN, before /opt and /usr. */
const FB_FROM = '/etc/g';
const FB_TO = '/opt';
interface FirstBootSplit { a: string; c: string; gzA: Buffer; gzC: Buffer }

const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
let port = 0;

function post(path: string, token: string, chunks: Buffer[], length: number, gz: boolean, method = 'POST'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, agent, headers: {
      authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-length': length, ...(gz ? { 'content-encoding': 'gzip' } : {}),
    } }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts).toString() }));
    });
    req.on('error', reject);
    for (const c of chunks) req.write(c);
    req.end();
  });
}

async function pool<T>(items: T[], fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < items.length) await fn(items[next++] as T);
  }));
}

/** p50, p99 and max of request times, ms (nearest rank). */
function percentiles(ms: number[]): { p50: number; p99: number; max: number } {
  const s = [...ms].sort((a, b) => a - b);
  const at = (q: number): number => Math.round(s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)] ?? NaN);
  return { p50: at(0.5), p99: at(0.99), max: Math.round(s[s.length - 1] ?? NaN) };
}

function vmHwmKb(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0);
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'drift-load-'));
  // The collector refuses secret files others can read.
  writeFileSync(join(dir, 'enroll'), ENROLL, { mode: 0o600 });
  writeFileSync(join(dir, 'admin'), ADMIN, { mode: 0o600 });
  const db = join(dir, 'drift.db');
  const nodeArgs = (process.env['DRIFT_BENCH_SERVER_NODE_ARGS'] ?? '').split(' ').filter(Boolean); // e.g. --cpu-prof
  const server = spawn(process.execPath, [...nodeArgs, driftBin, 'server', '--listen', '127.0.0.1:0', '--db', db,
    '--enroll-secret-file', join(dir, 'enroll'), '--admin-token-file', join(dir, 'admin'),
    ...(process.env['DRIFT_BENCH_SERVER_ARGS'] ?? '').split(' ').filter(Boolean)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const address = await new Promise<string>((resolve, reject) => {
    const lines = createInterface({ input: server.stdout });
    lines.on('line', (line) => {
      const log = JSON.parse(line) as { msg?: string; address?: string };
      if (log.msg === 'listening' && log.address) {
        // From here on, drain the request log without parsing it.
        lines.close();
        server.stdout.on('data', () => undefined).resume();
        resolve(log.address);
      }
    });
    server.on('exit', (c) => reject(new Error(`server exited ${c}`)));
  });
  port = Number(new URL(address).port);

  // Build everything before timing.
  const images = ['ami-bench-a', 'ami-bench-b'];
  const imgSections = new Map<string, Sections>();
  const imgDigests = new Map<string, Digests>();
  const shared = new Map<string, Buffer>();
  const baselines: Baseline[] = [];
  let baselinesBytes = 0;
  for (const image of images) {
    const s = imageSections(image);
    const digests = computeDigests(s);
    imgSections.set(image, s);
    imgDigests.set(image, digests);
    const b: Baseline = { schema: MANIFEST_SCHEMA, host: { hostname: 'bake', machineId: 'bake', image: { id: image } }, collectedAt: '2026-01-01T00:00:00.000Z', agent: { version: 'bench' }, digests, ...s, unread: [] };
    baselines.push(b);
    baselinesBytes += canonicalJson(b).length;
    shared.set(image, gzipSync(`${sectionsJson(s)},"unread":[]}}`));
  }
  const firstBootSplit = new Map<string, FirstBootSplit>();
  for (const image of images) {
    const s = imgSections.get(image) as Sections;
    const a = members(s.files, '', FB_FROM);
    const c = members(s.files, FB_TO, '\uffff');
    const rest = `,"processes":${canonicalJson(s.processes)},"ports":${canonicalJson(s.ports)},"unread":[]}}`;
    firstBootSplit.set(image, { a, c, gzA: gzipSync(`"packages":${canonicalJson(s.packages)},"files":{${a}`), gzC: gzipSync(`,${c}}${rest}`) });
  }
  const hosts: { id: string; image: string; drifted: boolean; key: string; full: Body; digest: Body }[] = [];
  let deltaBytes = 0;
  let fullBytes = 0;
  for (let i = 0; i < HOSTS; i++) {
    const id = hex(`host-${i}`).slice(0, 32);
    const image = images[i % 2] as string;
    const drifted = i % 100 === 7;
    let s = imgSections.get(image) as Sections;
    let digests = imgDigests.get(image) as Digests;
    if (drifted) {
      s = { ...s, files: { ...s.files }, packages: { ...s.packages } };
      s.files[`/etc/f${String(i % FILES).padStart(5, '0')}`] = { type: 'file', mode: '0600', uid: 0, gid: 0, size: 42, sha256: hex(`drift-${i}`) };
      s.files['/etc/f00000'] = { type: 'file', mode: '0644', uid: 0, gid: 0, size: 7, sha256: hex(`edit-${i}`) };
      s.packages[`dpkg:netcat-${i}:amd64`] = { version: '1.219-1' };
      digests = computeDigests(s);
      const base = imgSections.get(image) as Sections;
      deltaBytes += canonicalJson(sectionDelta(base.files, s.files)).length + canonicalJson(sectionDelta(base.packages, s.packages)).length;
    }
    const hostInfo = FIRST_BOOT
      ? { hostname: `web-${i}`, machineId: id, image: { id: image }, instanceKeys: { source: '/run/cloud-init/instance-data.json', keys: [LAUNCH_KEY] } }
      : { hostname: `web-${i}`, machineId: id, image: { id: image } };
    let fullChunks: Buffer[];
    if (FIRST_BOOT && drifted) {
      s = { ...s, files: { ...s.files, ...firstBootFiles(i, id) } };
      digests = computeDigests(s);
      fullChunks = [gzipSync(`${head(1, hostInfo, digests, true)}${sectionsJson(s)},"unread":[]}}`)];
    } else if (FIRST_BOOT) {
      // Image sections around this host's first-boot entries: [A: packages, files < /etc/g] [B: this host] [C: the rest].
      const split = firstBootSplit.get(image) as FirstBootSplit;
      const mine = members(firstBootFiles(i, id), FB_FROM, FB_TO);
      const filesDigest = `sha256:${createHash('sha256').update(`{${split.a},${mine},${split.c}}`).digest('hex')}`;
      const d = { ...digests, files: filesDigest };
      const parts: Record<string, string> = {};
      for (const k of ['packages', 'files', 'processes', 'ports'] as const) if (d[k]) parts[k] = d[k] as string;
      digests = { ...d, root: digestOf(parts) } as Digests;
      fullChunks = [gzipSync(head(1, hostInfo, digests, true)), split.gzA, gzipSync(`,${mine}`), split.gzC];
    } else {
      fullChunks = drifted
        ? [gzipSync(`${head(1, hostInfo, digests, true)}${sectionsJson(s)},"unread":[]}}`)]
        : [gzipSync(head(1, hostInfo, digests, true)), shared.get(image) as Buffer];
    }
    const full = { chunks: fullChunks, length: fullChunks.reduce((n, c) => n + c.length, 0), key: '' };
    fullBytes += full.length;
    const d = gzipSync(head(2, hostInfo, digests, false));
    hosts.push({ id, image, drifted, key: '', full, digest: { chunks: [d], length: d.length, key: '' } });
  }

  let t0 = performance.now();
  await pool(hosts, async (h) => {
    const body = Buffer.from(JSON.stringify({ hostId: h.id, hostname: h.id, imageId: h.image }));
    const r = await post('/v1/enroll', ENROLL, [body], body.length, false);
    if (r.status !== 200) throw new Error(`enroll: ${r.status} ${r.body}`);
    h.key = (JSON.parse(r.body) as { nodeKey: string }).nodeKey;
  });
  const enrollSeconds = (performance.now() - t0) / 1000;
  for (const b of baselines) {
    const body = Buffer.from(JSON.stringify(b));
    const r = await post(`/v1/baselines/${b.host.image?.id ?? ''}`, ADMIN, [body], body.length, false, 'PUT');
    if (r.status !== 200) throw new Error(`baseline: ${r.status} ${r.body}`);
    const digest = (JSON.parse(r.body) as { digest: string }).digest;
    if (digest !== baselineDigest(b)) throw new Error('baseline digest differs');
  }

  // Each request's time from send to answer, ms: clean and drifted full reports, digest-only reports.
  const latency = { clean: [] as number[], drifted: [] as number[], digest: [] as number[] };
  t0 = performance.now();
  await pool(hosts, async (h) => {
    const sent = performance.now();
    const r = await post('/v1/reports', h.key, h.full.chunks, h.full.length, true);
    (h.drifted ? latency.drifted : latency.clean).push(performance.now() - sent);
    if (r.status !== 200 || !r.body.includes('"accepted":true')) throw new Error(`full report ${h.id}: ${r.status} ${r.body}`);
  });
  const fullSeconds = (performance.now() - t0) / 1000;

  t0 = performance.now();
  await pool(hosts, async (h) => {
    const sent = performance.now();
    const r = await post('/v1/reports', h.key, h.digest.chunks, h.digest.length, true);
    latency.digest.push(performance.now() - sent);
    if (r.status !== 200 || !r.body.includes('"accepted":true')) throw new Error(`digest report ${h.id}: ${r.status} ${r.body}`);
  });
  const digestSeconds = (performance.now() - t0) / 1000;

  const get = (path: string): Promise<string> => new Promise<string>((resolve, reject) => {
    request({ host: '127.0.0.1', port, path, agent, headers: { authorization: `Bearer ${ADMIN}` } }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve(Buffer.concat(parts).toString()));
    }).on('error', reject).end();
  });
  const fleetT0 = performance.now();
  const fleet = await get('/v1/fleet');
  const fleetMs = performance.now() - fleetT0;
  // Where the collector decided the reports (full and digest-only): on its main thread or in a report worker.
  const metrics = await get('/metrics');
  const decided = Object.fromEntries([...metrics.matchAll(/^drift_reports_decided_total\{where="(\w+)"\} (\d+)$/gm)].map((m) => [m[1], Number(m[2])]));
  const reportWorkers = Number(/^drift_report_workers (\d+)$/m.exec(metrics)?.[1] ?? NaN);
  const snowflakes = (JSON.parse(fleet) as { cohorts: { snowflakes: unknown[] }[] }).cohorts.reduce((n, c) => n + c.snowflakes.length, 0);

  const peakRssMb = vmHwmKb(server.pid as number) / 1024;
  server.kill('SIGTERM');
  await new Promise((r) => server.on('exit', r));
  agent.destroy();
  const dbBytes = statSync(db).size;
  const raw = new Database(db, { readonly: true });
  const blobBytes = Number(raw.prepare('SELECT sum(length(data)) FROM blobs').pluck().get());
  const counts = Object.fromEntries(['blobs', 'strings', 'states', 'hosts', 'host_deltas', 'findings', 'history'].map((t) => [t, raw.prepare(`SELECT count(*) FROM ${t}`).pluck().get()]));
  let bytesByTable: Record<string, string> = {};
  try {
    bytesByTable = Object.fromEntries((raw.prepare('SELECT name, sum(pgsize) AS bytes, sum(unused) AS unused FROM dbstat GROUP BY name ORDER BY bytes DESC').all() as { name: string; bytes: number; unused: number }[])
      .map((r) => [r.name, `${r.bytes} (${r.unused} unused)`]));
  } catch { /* SQLite built without dbstat */ }
  let pinBytes: Record<string, number> | null = null;
  try {
    const pages = (name: string): number => Number(raw.prepare('SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name = ?').pluck().get(name));
    const pinBlobs = Number(raw.prepare('SELECT coalesce(sum(length(b.data) + 32), 0) FROM blobs b WHERE b.digest IN (SELECT DISTINCT value FROM pins WHERE value IS NOT NULL)').pluck().get());
    const pinStrings = Number(raw.prepare('SELECT coalesce(sum(length(text) + 8), 0) FROM strings WHERE id IN (SELECT DISTINCT path FROM pins)').pluck().get());
    const tables = pages('pins') + pages('pin_books') + pages('pin_journal') + pages('pin_journal_host');
    // hosts.pinned_at: an integer of 6 bytes plus its 1-byte serial type, in each pinned host's row.
    const column = 7 * Number(raw.prepare('SELECT count(*) FROM hosts WHERE pinned_at IS NOT NULL').pluck().get());
    pinBytes = {
      hostsPinnedAtBytes: column,
      pinRows: Number(raw.prepare('SELECT count(*) FROM pins').pluck().get()), pinBlobs: Number(raw.prepare('SELECT count(DISTINCT value) FROM pins').pluck().get()),
      tablePages: tables, blobBytes: pinBlobs, pathStringBytes: pinStrings, perHost: Math.round((tables + column + pinBlobs + pinStrings) / HOSTS),
    };
  } catch { /* no pins tables or no dbstat */ }
  raw.close();
  rmSync(dir, { recursive: true, force: true });
  const target = 2 * (baselinesBytes + deltaBytes);
  process.stdout.write(`${JSON.stringify({
    hosts: HOSTS, filesPerImage: FILES, concurrency: CONCURRENCY, drifted: hosts.filter((h) => h.drifted).length,
    enrollPerSecond: Math.round(HOSTS / enrollSeconds),
    fullReportsPerSecond: Math.round(HOSTS / fullSeconds), fullReportGzipBytesAvg: Math.round(fullBytes / HOSTS),
    digestReportsPerSecond: Math.round(HOSTS / digestSeconds), reportsDecided: decided, reportWorkers,
    latencyMs: Object.fromEntries(Object.entries(latency).map(([k, v]) => [k, percentiles(v)])),
    serverPeakRssMb: Math.round(peakRssMb),
    dbBytes, blobBytes, baselinesJsonBytes: baselinesBytes, driftedDeltaJsonBytes: deltaBytes, dbTargetBytes: target, dbWithinTarget: dbBytes <= target,
    fleetQueryMs: Math.round(fleetMs), snowflakes, rows: counts, bytesByTable, firstBoot: FIRST_BOOT, pinBytes,
  }, null, 2)}\n`);
}

await main();
