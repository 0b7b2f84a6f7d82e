/**
 * Report workers under attack: an enrolled host's huge (but within the protocol's
 * bounds) report is decided in a worker thread, so the collector's event loop keeps
 * answering /healthz and other hosts meanwhile; a report that exceeds the per-report
 * heap or time bound costs its worker (replaced) and nothing else; a full queue
 * answers 503 with Retry-After. Real app listening on 127.0.0.1, real SQLite file.
 */
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { gzipSync } from 'node:zlib';
import { canonicalJson } from '../../../agent/protocol/canonical.js';
import type { Sections } from '../../../agent/protocol/manifest.js';
import { loadRuleSet } from '../../../agent/rules/load.js';
import { compare } from '../../../agent/engine/compare.js';
import { buildApp, type AppDeps } from '../../../server/http/app.js';
import { INLINE_BOUNDS } from '../../../server/http/decide.js';
import { Store } from '../../../server/store/store.js';
import { baselineOf, digestReport, fullReport, imageSections, manifestOf } from '../helpers/fleet.js';

const ENROLL = 'enroll-secret-0123456789';
const ADMIN = 'admin-token-0123456789abc';
const rules = await loadRuleSet([]);

type App = ReturnType<typeof buildApp>;
interface Ctx { app: App; store: Store; base: string }

async function setup(t: { teardown(fn: () => unknown): void }, over: Partial<AppDeps>): Promise<Ctx> {
  const dir = mkdtempSync(join(tmpdir(), 'drift-workers-'));
  const store = Store.open(join(dir, 'drift.db'));
  const app = buildApp({ store, enrollSecret: ENROLL, adminToken: ADMIN, baselineKeys: [], rules, compare, maxBody: 64 * 1024 * 1024, silentAfterMs: 15 * 60_000, ...over });
  const base = await app.listen({ host: '127.0.0.1', port: 0 });
  t.teardown(async () => { await app.close(); store.close(); rmSync(dir, { recursive: true, force: true }); });
  const { baseline } = baselineOf('ami-1');
  const put = await post(base, 'PUT', '/v1/baselines/ami-1', ADMIN, Buffer.from(JSON.stringify(baseline)));
  if (put.status !== 200) throw new Error(`baseline: ${put.status} ${JSON.stringify(put.json)}`);
  return { app, store, base };
}

interface Answer { status: number; json: unknown; headers: Headers; ms: number }

async function post(base: string, method: string, path: string, token: string | null, body?: Buffer, gzip = false): Promise<Answer> {
  const headers: Record<string, string> = {};
  if (token) headers['authorization'] = `Bearer ${token}`;
  if (body) { headers['content-type'] = 'application/json'; if (gzip) headers['content-encoding'] = 'gzip'; }
  const t0 = performance.now();
  const res = await fetch(`${base}${path}`, { method, headers, ...(body ? { body } : {}), signal: AbortSignal.timeout(300_000) });
  const text = await res.text();
  const ms = performance.now() - t0;
  let json: unknown = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, json, headers: res.headers, ms };
}

async function keyOf(ctx: Ctx, hostId: string): Promise<string> {
  const a = await post(ctx.base, 'POST', '/v1/enroll', ENROLL, Buffer.from(JSON.stringify({ hostId, hostname: hostId, imageId: 'ami-1' })));
  if (a.status !== 200) throw new Error(`enroll ${hostId}: ${a.status}`);
  return (a.json as { nodeKey: string }).nodeKey;
}

/** A clean host's full report, as JSON bytes. */
function cleanReport(hostId: string, seq: number): Buffer {
  return Buffer.from(JSON.stringify(fullReport(seq, manifestOf(imageSections(), { hostname: hostId, machineId: hostId, imageId: 'ami-1' }))));
}

/** The image plus `added` files, gzip: well-formed and within the protocol's bounds (files ≤ 1,000,000). */
function hugeReport(hostId: string, seq: number, added: number): Buffer {
  const s = imageSections();
  for (let n = 0; n < added; n++) s.files[`/etc/added/f${n}`] = { type: 'file', mode: '0644', uid: 0, gid: 0, size: n, sha256: 'b'.repeat(64) };
  return gzipSync(JSON.stringify(fullReport(seq, manifestOf(s, { hostname: hostId, machineId: hostId, imageId: 'ami-1' }))));
}

/** A canonical full report (as agents send) of `s` for host `hostId` of `imageId`. */
function reportOf(hostId: string, seq: number, s: Partial<Sections>, imageId = 'ami-1'): Buffer {
  return Buffer.from(canonicalJson(fullReport(seq, manifestOf(s, { hostname: hostId, machineId: hostId, imageId }))));
}

/** Wait (bounded: 60 s) until the pool holds `n` reports, being decided or queued, `deciding` of them in workers. */
async function inPool(app: App, n: number, deciding = 1): Promise<boolean> {
  for (let i = 0; i < 6000; i++) {
    if ((app.pool?.inFlight() ?? 0) >= n && (app.pool?.deciding() ?? 0) >= deciding) return true;
    await new Promise<void>((r) => setTimeout(r, 10));
  }
  return false;
}

const ADDED = 200_000;
const huge = hugeReport('big', 2, ADDED);

t.test('clean and slightly drifted reports are decided on the main thread; a worker starts when a report is past its bounds; /metrics counts both', async (t) => {
  const ctx = await setup(t, { reportWorkers: { size: 2 } });
  const clean = await keyOf(ctx, 'clean');
  const drifted = await keyOf(ctx, 'drifted');
  const many = await keyOf(ctx, 'many');
  const metrics = async (): Promise<string> => { const r = await fetch(`${ctx.base}/metrics`); return r.text(); };
  t.equal((await post(ctx.base, 'POST', '/v1/reports', clean, cleanReport('clean', 1))).status, 200);
  let m = await metrics();
  t.match(m, /drift_reports_decided_total\{where="main"\} 1\n/, 'the clean report was decided on the main thread');
  t.match(m, /drift_reports_decided_total\{where="worker"\} 0\n/);
  t.match(m, /drift_report_workers 0\n/, 'no worker started for it');
  t.equal((await post(ctx.base, 'POST', '/v1/reports', drifted, hugeReport('drifted', 1, 3), true)).status, 200);
  m = await metrics();
  t.match(m, /drift_reports_decided_total\{where="main"\} 2\n/, 'a report of 3 added files was decided, compare included, on the main thread');
  t.match(m, /drift_report_workers 0\n/, 'still no worker');
  const host = (await post(ctx.base, 'GET', '/v1/hosts/drifted', ADMIN)).json as { status: string; findings: Array<{ key: string; change: string }> };
  t.equal(host.status, 'drifted');
  t.same(host.findings.map((f) => `${f.change} ${f.key}`).sort(), ['added /etc/added/f0', 'added /etc/added/f1', 'added /etc/added/f2'], 'its findings are the compare\'s');
  t.equal((await post(ctx.base, 'POST', '/v1/reports', many, hugeReport('many', 1, INLINE_BOUNDS.changed + 1), true)).status, 200);
  m = await metrics();
  t.match(m, /drift_reports_decided_total\{where="worker"\} 1\n/, `a report of ${INLINE_BOUNDS.changed + 1} added files was decided in a worker`);
  t.match(m, /drift_report_workers 1\n/, 'one worker started, not two');
});

t.test('the main thread\'s bounds: entries parsed, entries changed, lines of content diffed', async (t) => {
  const ctx = await setup(t, { reportWorkers: { size: 1 } });
  // An image of exactly INLINE_BOUNDS.entries files: a report of it parses that many entries.
  const big = imageSections();
  big.files = {};
  for (let n = 0; n < INLINE_BOUNDS.entries; n++) big.files[`/usr/lib/f${n}`] = { type: 'dir', mode: '0755', uid: 0, gid: 0 };
  const put = await post(ctx.base, 'PUT', '/v1/baselines/ami-big', ADMIN, Buffer.from(JSON.stringify(baselineOf('ami-big', big).baseline)));
  t.equal(put.status, 200);
  const decided = (): { main: number; worker: number } => ({ ...ctx.app.metrics.reportsDecided });
  const where = async (hostId: string, body: Buffer, image = 'ami-1'): Promise<string> => {
    const a = await post(ctx.base, 'POST', '/v1/enroll', ENROLL, Buffer.from(JSON.stringify({ hostId, hostname: hostId, imageId: image })));
    const before = decided();
    const r = await post(ctx.base, 'POST', '/v1/reports', (a.json as { nodeKey: string }).nodeKey, body);
    t.equal(r.status, 200, `${hostId} accepted`);
    return decided().main > before.main ? 'main' : 'worker';
  };
  const edited = structuredClone(big);
  edited.files['/usr/lib/f0'] = { type: 'dir', mode: '0700', uid: 0, gid: 0 };
  t.equal(await where('at-entries', reportOf('at-entries', 1, edited, 'ami-big'), 'ami-big'), 'main', `${INLINE_BOUNDS.entries} entries parsed, one changed: main thread`);
  edited.files['/usr/lib/extra'] = { type: 'dir', mode: '0755', uid: 0, gid: 0 };
  t.equal(await where('past-entries', reportOf('past-entries', 1, edited, 'ami-big'), 'ami-big'), 'worker', `${INLINE_BOUNDS.entries + 1} entries parsed: a worker`);

  const lines = (n: number): string => Array.from({ length: n }, (_, i) => `line ${i}\n`).join('');
  const withContent = (n: number): Sections => {
    const s = imageSections();
    s.files['/etc/motd'] = { type: 'file', mode: '0644', uid: 0, gid: 0, size: n, sha256: 'd'.repeat(64), content: lines(n) };
    return s;
  };
  t.equal(await where('at-lines', reportOf('at-lines', 1, withContent(INLINE_BOUNDS.contentLines))), 'main', `a file added with ${INLINE_BOUNDS.contentLines} lines of content: main thread`);
  t.equal(await where('past-lines', reportOf('past-lines', 1, withContent(INLINE_BOUNDS.contentLines + 1))), 'worker', `${INLINE_BOUNDS.contentLines + 1} lines: a worker`);
  const motd = (await post(ctx.base, 'GET', '/v1/hosts/at-lines', ADMIN)).json as { findings: Array<{ key: string; diff?: string }> };
  t.match(motd.findings.find((f) => f.key === '/etc/motd')?.diff ?? '', /\+line 0\n/, 'the content diff is in the finding');
});

t.test('only the entries that differ from the baseline are schema-checked, and every one of them is; `__proto__` is no key', async (t) => {
  for (const size of [0, 1]) {
    const ctx = await setup(t, { reportWorkers: { size } });
    const h1 = await keyOf(ctx, 'h1');
    const bad = imageSections();
    bad.files['/etc/hosts'] = { type: 'file', mode: 'zzzz', uid: 0, gid: 0, size: 1, sha256: 'e'.repeat(64) };
    const a = await post(ctx.base, 'POST', '/v1/reports', h1, reportOf('h1', 1, bad));
    t.equal(a.status, 422, `a changed entry that fails the schema is refused (report workers: ${size})`);
    t.match((a.json as { error: { message: string } }).error.message, /manifest\.files\.\/etc\/hosts\.mode: four octal digits/);
    // JSON.parse makes `__proto__` an own key; the schema's records pass over it, so it is refused outright.
    const text = reportOf('h1', 1, imageSections()).toString().replace('"files":{', '"files":{"__proto__":{"gid":0,"mode":"zzzz","type":"dir","uid":0},');
    const b = await post(ctx.base, 'POST', '/v1/reports', h1, Buffer.from(text));
    t.equal(b.status, 422, `an entry keyed __proto__ is refused (report workers: ${size})`);
    t.match((b.json as { error: { message: string } }).error.message, /manifest\.files\.__proto__: not a key drift uses/);
    t.equal(ctx.store.hostById('h1')?.lastSeq, 0, 'nothing stored');
  }
});

t.test('a huge report is decided off the event loop: /healthz and another host answer within 100 ms meanwhile', async (t) => {
  const ctx = await setup(t, { reportWorkers: { size: 2, timeoutMs: 600_000 } });
  const big = await keyOf(ctx, 'big');
  const small = await keyOf(ctx, 'small');
  t.equal((await post(ctx.base, 'POST', '/v1/reports', big, cleanReport('big', 1))).status, 200, 'the big host reported clean first');

  let bigDone = false;
  const t0 = performance.now();
  const bigAnswer = post(ctx.base, 'POST', '/v1/reports', big, huge, true).finally(() => { bigDone = true; });
  // Wait for the report to reach a worker (the pool's own count), then probe over HTTP.
  t.ok(await inPool(ctx.app, 1), 'the huge report is with a worker');

  const healthz: number[] = [];
  for (let i = 0; i < 20 && !bigDone; i++) {
    const a = await post(ctx.base, 'GET', '/healthz', null);
    t.equal(a.status, 200);
    if (!bigDone) healthz.push(a.ms);
  }
  const smalls: number[] = [];
  for (let seq = 1; seq <= 3 && !bigDone; seq++) {
    const a = await post(ctx.base, 'POST', '/v1/reports', small, cleanReport('small', seq));
    t.equal(a.status, 200, `small host's report ${seq} accepted`);
    if (!bigDone) smalls.push(a.ms);
  }
  const stillRunning = !bigDone;
  const answer = await bigAnswer;
  const bigMs = performance.now() - t0;
  t.ok(stillRunning, `the huge report had not finished when the probes were done (it took ${Math.round(bigMs)} ms)`);
  t.ok(healthz.length >= 5, `${healthz.length} /healthz probes while the huge report was decided`);
  const sorted = [...healthz].sort((a, b) => a - b);
  const p90 = sorted[Math.floor(sorted.length * 0.9)] ?? Infinity;
  t.ok(p90 < 100, `/healthz answered within 100 ms meanwhile (p90 ${p90.toFixed(1)} ms, all: ${healthz.map((x) => x.toFixed(1)).join(' ')})`);
  t.ok(smalls.length >= 1 && Math.min(...smalls) < 100, `another host's report answered within 100 ms meanwhile (${smalls.map((x) => x.toFixed(1)).join(' ')} ms)`);
  t.equal(answer.status, 200, 'the huge report is accepted');
  const host = (await post(ctx.base, 'GET', '/v1/hosts/big', ADMIN)).json as { status: string; findings: unknown[]; findingsOmitted: { count: number } | null };
  t.equal(host.status, 'drifted');
  t.equal(host.findings.length + (host.findingsOmitted?.count ?? 0), ADDED, 'every added file is a finding, stored or summarised');
  // The host's stored state is the huge one: a digest-only report of it is accepted without sections.
  const s = imageSections();
  for (let n = 0; n < ADDED; n++) s.files[`/etc/added/f${n}`] = { type: 'file', mode: '0644', uid: 0, gid: 0, size: n, sha256: 'b'.repeat(64) };
  const again = await post(ctx.base, 'POST', '/v1/reports', big, Buffer.from(JSON.stringify(digestReport(3, manifestOf(s, { hostname: 'big', machineId: 'big', imageId: 'ami-1' })))));
  t.same(again.json, { accepted: true, seq: 3, need: [] }, 'the stored state (packed in the worker) is what the host reported');
});

t.test('a report beyond the per-report heap bound is refused before it is parsed; nothing of the host is lost', async (t) => {
  const ctx = await setup(t, { reportWorkers: { size: 1, heapMb: 64 } });
  const big = await keyOf(ctx, 'big');
  const small = await keyOf(ctx, 'small');
  t.equal((await post(ctx.base, 'POST', '/v1/reports', big, cleanReport('big', 1))).status, 200);
  const a = await post(ctx.base, 'POST', '/v1/reports', big, huge, true);
  t.equal(a.status, 413, 'refused');
  const err = (a.json as { error: { code: string; message: string } }).error;
  t.equal(err.code, 'DRIFT_ERR_TOO_LARGE');
  t.match(err.message, /report of host big is \d+ MiB of JSON: deciding it takes about 20× that \(\d+ MiB\) of heap, more than the \d+ MiB a report worker has free .*raise --report-heap/, 'says what, which host and what to do');
  t.equal(ctx.app.pool?.replaced, 0, 'the worker was not lost');
  t.equal((await post(ctx.base, 'GET', '/healthz', null)).status, 200, 'the collector is up');
  t.same((await post(ctx.base, 'POST', '/v1/reports', small, cleanReport('small', 1))).json, { accepted: true, seq: 1, need: [] }, 'the next report is decided by the new worker');
  const host = (await post(ctx.base, 'GET', '/v1/hosts/big', ADMIN)).json as { status: string; findings: unknown[] };
  t.equal(host.status, 'clean', 'the big host keeps its last accepted state');
  t.same((await post(ctx.base, 'POST', '/v1/reports', big, cleanReport('big', 2))).json, { accepted: true, seq: 2, need: [] }, 'and may report again at the refused seq');
});

t.test('a report beyond the per-report time bound is refused and its worker replaced', async (t) => {
  const ctx = await setup(t, { reportWorkers: { size: 1, timeoutMs: 1000 } });
  const big = await keyOf(ctx, 'big');
  const a = await post(ctx.base, 'POST', '/v1/reports', big, huge, true);
  t.equal(a.status, 413);
  t.match((a.json as { error: { message: string } }).error.message, /report of host big took more than 1 s to decide .*raise --report-timeout/);
  t.equal(ctx.app.pool?.replaced, 1);
  t.equal((await post(ctx.base, 'POST', '/v1/reports', big, cleanReport('big', 1))).status, 200, 'the host reports again');
});

t.test('a full queue answers 503 with Retry-After; the queued reports are decided', async (t) => {
  const ctx = await setup(t, { reportWorkers: { size: 1, queue: 1, timeoutMs: 600_000 } });
  const keys = await Promise.all(['big', 'q1', 'q2'].map((h) => keyOf(ctx, h)));
  const [big, q1, q2] = keys as [string, string, string];
  const bigAnswer = post(ctx.base, 'POST', '/v1/reports', big, huge, true);
  t.ok(await inPool(ctx.app, 1), 'the huge report is with the worker');
  // Reports past the main thread's bounds go to the workers (clean and slightly drifted ones are decided at once).
  const past = INLINE_BOUNDS.changed + 1;
  const queued = post(ctx.base, 'POST', '/v1/reports', q1, hugeReport('q1', 1, past), true);
  t.ok(await inPool(ctx.app, 2), 'a second report waits in the queue');
  const full = await post(ctx.base, 'POST', '/v1/reports', q2, hugeReport('q2', 1, past), true);
  t.equal(full.status, 503, 'refused while the worker and its queue are busy');
  t.equal(full.headers.get('retry-after'), '5');
  t.match((full.json as { error: { message: string } }).error.message, /--report-workers 1 and queue of 1 are full\); send the report again after 5 s/);
  t.equal((await queued).status, 200, 'the queued report is decided');
  t.equal((await bigAnswer).status, 200, 'the huge report is decided');
  t.equal((await post(ctx.base, 'POST', '/v1/reports', q2, cleanReport('q2', 1))).status, 200, 'the refused report is accepted when sent again');
});

t.test('report worker settings: defaults, flags, the YAML file, and clear errors', async (t) => {
  const { resolveServerConfig } = await import('../../../server/config.js');
  const { defaultWorkers, POOL_DEFAULTS } = await import('../../../server/http/pool.js');
  const d = resolveServerConfig({}).reportWorkers;
  t.same(d, { size: defaultWorkers(), queue: defaultWorkers() * POOL_DEFAULTS.queuePerWorker, timeoutMs: 120_000, heapMb: 1024 });
  t.ok(d.size >= 1 && d.size <= 2, 'min(2, cores)');
  t.same(resolveServerConfig({ reportWorkers: '0', reportQueue: '5', reportTimeout: '30s', reportHeap: '512MiB' }).reportWorkers, { size: 0, queue: 5, timeoutMs: 30_000, heapMb: 512 });
  t.same(resolveServerConfig({}, { 'report-workers': '3', 'report-heap': '256MiB' }).reportWorkers.heapMb, 256);
  t.throws(() => resolveServerConfig({ reportWorkers: 'many' }), { code: 'DRIFT_ERR_USAGE', message: /--report-workers must be a whole number from 0 to 64 \(got "many"\)/ });
  t.throws(() => resolveServerConfig({ reportQueue: '0' }), { message: /--report-queue must be a whole number from 1 to 100000/ });
  t.throws(() => resolveServerConfig({ reportHeap: '1MiB' }), { message: /--report-heap must be at least 64MiB/ });
});
