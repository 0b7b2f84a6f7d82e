/**
 * The collector under attack: each test replays one attack on a real collector
 * (the app listening on 127.0.0.1, a real SQLite file) and checks that it is refused
 * cheaply, with the documented error, and that nothing of the fleet is lost.
 */
import t from 'tap';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { gzipSync } from 'node:zlib';
import type { FastifyInstance } from 'fastify';
import { generateKeyPairSync } from 'node:crypto';
import { loadRuleSet } from '../../../agent/rules/load.js';
import { compare } from '../../../agent/engine/compare.js';
import { signBaseline } from '../../../agent/sign.js';
import { canonicalJson } from '../../../agent/protocol/canonical.js';
import { buildApp, type AppDeps } from '../../../server/http/app.js';
import { boundFindings, MAX_STORED_FINDINGS } from '../../../server/http/ingest.js';
import type { Finding } from '../../../agent/protocol/finding.js';
import { readSecrets } from '../../../server/config.js';
import { Store } from '../../../server/store/store.js';
import { baselineOf, digestReport, fullReport, imageSections, manifestOf } from '../helpers/fleet.js';
import type { Sections } from '../../../agent/protocol/manifest.js';

const ENROLL = 'enroll-secret-0123456789';
const ADMIN = 'admin-token-0123456789abc';
const rules = await loadRuleSet([]);

interface Ctx { app: FastifyInstance; store: Store; base: string; dir: string }

async function setup(t: { teardown(fn: () => unknown): void }, over: Partial<AppDeps> = {}): Promise<Ctx> {
  const dir = mkdtempSync(join(tmpdir(), 'drift-hostile-'));
  const store = Store.open(join(dir, 'drift.db'));
  const app = buildApp({ store, enrollSecret: ENROLL, adminToken: ADMIN, baselineKeys: [], rules, compare, maxBody: 16 * 1024 * 1024, silentAfterMs: 15 * 60_000, ...over });
  const base = await app.listen({ host: '127.0.0.1', port: 0 });
  t.teardown(async () => { await app.close(); store.close(); rmSync(dir, { recursive: true, force: true }); });
  return { app, store, base, dir };
}

interface Answer { status: number; json: unknown; text: string; headers: Headers }

async function call(ctx: Ctx, method: string, path: string, opts: { token?: string; body?: unknown; gzip?: boolean; raw?: Buffer } = {}): Promise<Answer> {
  const headers: Record<string, string> = {};
  if (opts.token) headers['authorization'] = `Bearer ${opts.token}`;
  let body: Buffer | undefined = opts.raw;
  if (body === undefined && opts.body !== undefined) body = Buffer.from(JSON.stringify(opts.body));
  if (body !== undefined) {
    headers['content-type'] = 'application/json';
    if (opts.gzip) { body = gzipSync(body); headers['content-encoding'] = 'gzip'; }
  }
  const res = await fetch(`${ctx.base}${path}`, { method, headers, ...(body ? { body } : {}), signal: AbortSignal.timeout(60_000) });
  const text = await res.text();
  let json: unknown = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, json, text, headers: res.headers };
}

const errorOf = (a: Answer): { code: string; message: string } => (a.json as { error: { code: string; message: string } }).error;

async function enroll(ctx: Ctx, hostId: string, extra: Record<string, unknown> = {}): Promise<Answer> {
  return call(ctx, 'POST', '/v1/enroll', { token: ENROLL, body: { hostId, hostname: `host-${hostId}`, imageId: 'ami-1', ...extra } });
}
async function keyOf(ctx: Ctx, hostId: string): Promise<string> {
  const a = await enroll(ctx, hostId);
  if (a.status !== 200) throw new Error(`enroll ${hostId}: ${a.status} ${a.text}`);
  return (a.json as { nodeKey: string }).nodeKey;
}
async function putBaseline(ctx: Ctx, imageId = 'ami-1', sections: Partial<Sections> = imageSections()): Promise<string> {
  const { baseline, digest } = baselineOf(imageId, sections);
  const a = await call(ctx, 'PUT', `/v1/baselines/${imageId}`, { token: ADMIN, body: baseline });
  if (a.status !== 200) throw new Error(`baseline: ${a.status} ${a.text}`);
  return digest;
}

/** Sections of an image big enough that hashing it many times is costly: `n` files. */
function bigSections(n: number): Sections {
  const s = imageSections();
  for (let i = 0; i < n; i++) s.files[`/usr/lib/big/f${i}`] = { type: 'file', mode: '0644', uid: 0, gid: 0, size: i, sha256: 'a'.repeat(64) };
  return s;
}

/**
 * A body that repeats `"manifest":{"files":0}` so that, at every repeat, the bytes a
 * known section's length further on close an object: a locator that tries the known
 * section at every manifest key hashes (repeats × section length) bytes.
 */
function repeatedManifests(sectionLength: number, bytes: number): Buffer {
  const core = ',"manifest":{"files":0}';
  // Unit length m with (sectionLength - 2) % m === 0, padded with spaces after the colon.
  let m = core.length;
  while ((sectionLength - 2) % m !== 0) m++;
  const unit = `,"manifest":{"files":${' '.repeat(m - core.length)}0}`;
  return Buffer.from(`{"schema":"x"${unit.repeat(Math.floor(bytes / m))}}`);
}

/** Latency (ms) of each /healthz while `attack` runs; at least `min` probes. */
async function healthzDuring(ctx: Ctx, attack: Promise<unknown>, min = 10): Promise<number[]> {
  let done = false;
  const attackDone = attack.finally(() => { done = true; });
  const latencies: number[] = [];
  for (let i = 0; i < 200 && (!done || latencies.length < min); i++) {
    const t0 = performance.now();
    const a = await call(ctx, 'GET', '/healthz');
    latencies.push(performance.now() - t0);
    if (a.status !== 200) throw new Error(`healthz ${a.status}`);
  }
  await attackDone;
  return latencies;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

t.test('attack 1: bodies without credentials are refused from the headers; /healthz answers meanwhile', async (t) => {
  const ctx = await setup(t);
  const sections = bigSections(3000);
  await putBaseline(ctx, 'ami-1', sections);
  const hostile = gzipSync(repeatedManifests(Buffer.byteLength(canonicalJson(sections.files)), 8 * 1024 * 1024));
  t.ok(hostile.length < 200_000, `the hostile body is small on the wire (${hostile.length} bytes gzip)`);
  const send = (token?: string) => fetch(`${ctx.base}/v1/reports`, {
    method: 'POST', body: hostile, headers: { 'content-type': 'application/json', 'content-encoding': 'gzip', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    signal: AbortSignal.timeout(60_000),
  }).then(async (r) => ({ status: r.status, json: (await r.json()) as { error: { code: string; message: string } } }));
  const attack = Promise.all([send(), send('1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'), send(), send('nonsense')]);
  const latencies = await healthzDuring(ctx, attack);
  const answers = await attack;
  for (const a of answers) {
    t.equal(a.status, 401, 'refused without reading the body');
    t.equal(a.json.error.code, 'DRIFT_ERR_UNAUTHORIZED');
  }
  t.ok(median(latencies) < 100, `/healthz median ${median(latencies).toFixed(1)} ms under attack (bound 100 ms)`);
  t.ok(Math.max(...latencies) < 1000, `/healthz worst ${Math.max(...latencies).toFixed(1)} ms under attack (bound 1 s on a loaded machine)`);
  t.match((await call(ctx, 'GET', '/metrics')).text, /drift_reports_refused_total\{reason="unauthorized"\} 4\n/, 'the refusals are counted');
});

t.test('attack 1: an enrolled host repeating "manifest" costs one pass over its body; /healthz answers meanwhile', async (t) => {
  const ctx = await setup(t);
  const sections = bigSections(3000);
  await putBaseline(ctx, 'ami-1', sections);
  const key = await keyOf(ctx, 'h1');
  const hostile = gzipSync(repeatedManifests(Buffer.byteLength(canonicalJson(sections.files)), 8 * 1024 * 1024));
  const proper = Promise.all([1, 2].map(() => fetch(`${ctx.base}/v1/reports`, {
    method: 'POST', body: hostile, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'content-encoding': 'gzip' }, signal: AbortSignal.timeout(60_000),
  }).then(async (r) => ({ status: r.status, json: (await r.json()) as { error: { code: string } } }))));
  const latencies = await healthzDuring(ctx, proper);
  for (const a of await proper) {
    t.equal(a.status, 400, 'not a report');
    t.equal(a.json.error.code, 'DRIFT_ERR_USAGE');
    t.match((a.json.error as { message?: string }).message, /names manifest twice/, 'refused at the second manifest, never parsed');
  }
  t.ok(median(latencies) < 100, `/healthz median ${median(latencies).toFixed(1)} ms (bound 100 ms)`);
  t.ok(Math.max(...latencies) < 1000, `/healthz worst ${Math.max(...latencies).toFixed(1)} ms (bound 1 s)`);
});

t.test('attack 1: JSON nested deeper than the protocol needs is refused before it is parsed', async (t) => {
  const ctx = await setup(t);
  const key = await keyOf(ctx, 'h1');
  const deep = gzipSync(Buffer.alloc(4 * 1024 * 1024, '['));
  t.ok(deep.length < 20_000, `${deep.length} bytes of gzip`);
  const before = process.memoryUsage().rss;
  const res = await fetch(`${ctx.base}/v1/reports`, {
    method: 'POST', body: deep, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'content-encoding': 'gzip' }, signal: AbortSignal.timeout(60_000),
  });
  const body = (await res.json()) as { error: { code: string; message: string } };
  t.equal(res.status, 400);
  t.equal(body.error.code, 'DRIFT_ERR_USAGE');
  t.match(body.error.message, /nests JSON deeper than 16 levels \(at byte 16\)/, 'says what and where');
  t.ok(process.memoryUsage().rss - before < 256 * 1024 * 1024, 'no gigabytes spent on it');
  const admin = await fetch(`${ctx.base}/v1/baselines/ami-1`, {
    method: 'PUT', body: deep, headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json', 'content-encoding': 'gzip' }, signal: AbortSignal.timeout(60_000),
  });
  t.equal(admin.status, 400, 'the admin routes too');
  await putBaseline(ctx);
  const inSection = Buffer.from(`{"schema":"drift.report-request/v1","manifest":{"files":${'['.repeat(1_000_000)}${']'.repeat(1_000_000)}}}`);
  const sec = await call(ctx, 'POST', '/v1/reports', { token: key, raw: inSection });
  t.equal(sec.status, 400, 'a deep section of a located manifest too');
  t.match(errorOf(sec).message, /deeper than 16 levels \(in manifest\.files, at byte 14\)/);
  const shallow = await call(ctx, 'POST', '/v1/reports', { token: key, body: { a: [[[[[[[[[[[[[[[1]]]]]]]]]]]]]]] } });
  t.equal(shallow.status, 400, 'sixteen levels parse (and fail as a report)');
  t.match(errorOf(shallow).message, /drift\.report-request\/v1/);
});

t.test('attack 2: the enrollment secret alone cannot take over an enrolled host', async (t) => {
  const ctx = await setup(t);
  await putBaseline(ctx);
  const victim = await keyOf(ctx, 'h1');
  const m = manifestOf(imageSections(), { hostname: 'host-h1', machineId: 'h1', imageId: 'ami-1' });
  t.equal((await call(ctx, 'POST', '/v1/reports', { token: victim, body: fullReport(1, m) })).status, 200);

  const takeover = await enroll(ctx, 'h1');
  t.equal(takeover.status, 403, 'refused');
  t.equal(errorOf(takeover).code, 'DRIFT_ERR_FORBIDDEN');
  t.match(errorOf(takeover).message, /already enrolled.*node key.*POST \/v1\/hosts\/h1\/reenroll/);
  const wrongKey = await enroll(ctx, 'h1', { nodeKey: `${victim.split('.')[0]}.${'B'.repeat(43)}` });
  t.equal(wrongKey.status, 403, 'a made-up node key is no proof');
  t.equal((await call(ctx, 'POST', '/v1/reports', { token: victim, body: digestReport(2, m) })).status, 200, 'the real host keeps its key');
  t.match((await call(ctx, 'GET', '/metrics')).text, /drift_enroll_refused_total\{reason="unproven-reenroll"\} 2\n/, 'refused re-enrollments are counted');

  const other = await keyOf(ctx, 'h2');
  const borrowed = await enroll(ctx, 'h1', { nodeKey: other });
  t.equal(borrowed.status, 403, 'another host\'s node key proves nothing about h1');

  const proven = await enroll(ctx, 'h1', { nodeKey: victim });
  t.equal(proven.status, 200, 'the node key proves the host');
  const rekeyed = (proven.json as { nodeKey: string }).nodeKey;
  t.equal((await call(ctx, 'POST', '/v1/reports', { token: victim, body: digestReport(3, m) })).status, 401, 'the old key is revoked');
  t.equal((await call(ctx, 'POST', '/v1/reports', { token: rekeyed, body: digestReport(1, m) })).status, 200, 'seqs restart with the new key');

  const noApproval = await call(ctx, 'POST', '/v1/hosts/h1/reenroll', { token: ENROLL });
  t.equal(noApproval.status, 401, 'approval needs the admin token');
  t.equal((await call(ctx, 'POST', '/v1/hosts/nope/reenroll', { token: ADMIN })).status, 404);
  const approval = await call(ctx, 'POST', '/v1/hosts/h1/reenroll', { token: ADMIN });
  t.equal(approval.status, 200);
  t.match(approval.json, { hostId: 'h1', approvedUntil: String });
  t.equal((await enroll(ctx, 'h1')).status, 200, 'an operator\'s approval lets the host enroll again without its key');
  t.equal((await enroll(ctx, 'h1')).status, 403, 'once');
});

t.test('attack 2: failed enrollments are rate-limited per address', async (t) => {
  const ctx = await setup(t, { enrollFailures: { max: 3, windowMs: 60_000 } });
  for (let i = 0; i < 3; i++) t.equal((await call(ctx, 'POST', '/v1/enroll', { token: `guess-${i}`, body: { hostId: 'x', hostname: 'x' } })).status, 401);
  const limited = await enroll(ctx, 'h9');
  t.equal(limited.status, 429, 'even the right secret waits for the window');
  t.equal(errorOf(limited).code, 'DRIFT_ERR_RATE_LIMITED');
  t.match(limited.headers.get('retry-after'), /^\d+$/);
  t.match((await call(ctx, 'GET', '/metrics')).text, /drift_enroll_refused_total\{reason="rate-limited"\} 1\n/);
  t.equal(ctx.store.hostById('h9'), undefined, 'nothing enrolled');
});

t.test('attack 2: weak, shared or world-readable secrets are refused at start', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'drift-secrets-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, text: string, mode = 0o600): string => { const p = join(dir, name); writeFileSync(p, text, { mode }); return p; };
  const good = file('enroll', 'enroll-secret-0123456789\n');
  const admin = file('admin', 'admin-token-0123456789abc\n');
  t.same(await readSecrets({ enrollSecretFile: good, adminTokenFile: admin }), { enrollSecret: 'enroll-secret-0123456789', adminToken: 'admin-token-0123456789abc' });
  await t.rejects(readSecrets({ enrollSecretFile: file('open', 'enroll-secret-0123456789\n', 0o644), adminTokenFile: admin }), { code: 'DRIFT_ERR_CONFIG', message: /accessible to others \(mode 0644\); chmod o-rwx/ });
  await t.rejects(readSecrets({ enrollSecretFile: file('short', 'short\n'), adminTokenFile: admin }), { code: 'DRIFT_ERR_CONFIG', message: /5 characters; use at least 16/ });
  await t.rejects(readSecrets({ enrollSecretFile: good, adminTokenFile: file('same', 'enroll-secret-0123456789') }), { code: 'DRIFT_ERR_CONFIG', message: /hold the same value/ });
});

t.test('attack 3: a report\'s strings and lists are bounded', async (t) => {
  const ctx = await setup(t);
  await putBaseline(ctx);
  const key = await keyOf(ctx, 'h1');
  const long = manifestOf(imageSections(), { hostname: 'x'.repeat(300_000), machineId: 'h1', imageId: 'ami-1' });
  const a = await call(ctx, 'POST', '/v1/reports', { token: key, body: fullReport(1, long), gzip: true });
  t.equal(a.status, 400, 'a 300 KB hostname is refused');
  t.match(errorOf(a).message, /host\.hostname/);
  const hosts = await call(ctx, 'GET', '/v1/hosts', { token: ADMIN });
  t.ok(hosts.text.length < 2000, 'and never served back');

  const s = imageSections();
  for (let i = 0; i <= 100_000; i++) s.packages[`dpkg:p${i}`] = { version: '1' };
  const many = manifestOf(s, { hostname: 'h1', machineId: 'h1', imageId: 'ami-1' });
  const b = await call(ctx, 'POST', '/v1/reports', { token: key, body: fullReport(1, many), gzip: true });
  t.equal(b.status, 422, 'more packages than any host has are refused');
  t.match(errorOf(b).message, /manifest\.packages: more than 100000 entries/);
  t.equal(ctx.store.hostById('h1')?.lastSeq, 0, 'nothing stored');
});

t.test('attack 3: findings beyond the bound are summarised, not stored', async (t) => {
  const ctx = await setup(t);
  await putBaseline(ctx);
  const key = await keyOf(ctx, 'h1');
  const s = imageSections();
  const added = MAX_STORED_FINDINGS + 500;
  for (let i = 0; i < added; i++) s.files[`/etc/junk/f${i}`] = { type: 'file', mode: '0644', uid: 1000, gid: 1000, size: 1, sha256: 'b'.repeat(64) };
  const m = manifestOf(s, { hostname: 'h1', machineId: 'h1', imageId: 'ami-1' });
  const a = await call(ctx, 'POST', '/v1/reports', { token: key, body: fullReport(1, m), gzip: true });
  t.equal(a.status, 200);
  t.equal(Number(ctx.store.db.prepare('SELECT count(*) FROM findings').pluck().get()), MAX_STORED_FINDINGS, 'at most the bound stored in full');
  const h = (await call(ctx, 'GET', '/v1/hosts/h1', { token: ADMIN })).json as { findings: unknown[]; findingsOmitted: { count: number; byKind: Record<string, number> } | null; status: string };
  t.equal(h.findings.length, MAX_STORED_FINDINGS);
  t.ok(h.findingsOmitted !== null && h.findingsOmitted.count >= 500, 'the rest is counted and said');
  t.equal(h.status, 'drifted');
  const list = (await call(ctx, 'GET', '/v1/hosts', { token: ADMIN })).json as { hosts: { findings: number }[] };
  t.ok((list.hosts[0]?.findings ?? 0) >= added, 'the count covers every finding');
});

t.test('attack 4: a host cannot choose its cohort', async (t) => {
  const ctx = await setup(t, { roles: ['web'] });
  await putBaseline(ctx);
  const drifted = imageSections();
  drifted.files['/etc/ssh/sshd_config'] = { ...drifted.files['/etc/ssh/sshd_config']!, sha256: 'e'.repeat(64) };
  for (const id of ['h1', 'h2', 'h3', 'h4']) {
    const key = await keyOf(ctx, id);
    const m = manifestOf(id === 'h4' ? drifted : imageSections(), { hostname: id, machineId: id, imageId: 'ami-1' });
    const a = await call(ctx, 'POST', '/v1/reports', { token: key, body: fullReport(1, m, id === 'h4' ? { role: 'solo' } : {}) });
    t.equal(a.status, 200, `${id} reported`);
  }
  const hosts = ((await call(ctx, 'GET', '/v1/hosts', { token: ADMIN })).json as { hosts: { id: string; role: string | null; flags: { claim: string; value: string; why: string }[]; snowflake: unknown }[] }).hosts;
  const h4 = hosts.find((h) => h.id === 'h4');
  t.equal(h4?.role, null, 'kept in its image\'s default cohort');
  t.match(h4?.flags, [{ claim: 'role', value: 'solo', why: /not one of the collector's roles \("web"\)/ }], 'the claim is flagged');
  t.not(h4?.snowflake, null, 'and it is the snowflake it is');
  const fleet = (await call(ctx, 'GET', '/v1/fleet', { token: ADMIN })).json as { cohorts: { imageId: string; role: string | null; hosts: number }[] };
  t.same(fleet.cohorts.map((c) => [c.imageId, c.role, c.hosts]), [['ami-1', null, 4]], 'one cohort, no cohort of its own choosing');

  const k5 = await keyOf(ctx, 'h5');
  const web = await call(ctx, 'POST', '/v1/reports', { token: k5, body: fullReport(1, manifestOf(imageSections(), { hostname: 'h5', machineId: 'h5', imageId: 'ami-1' }), { role: 'web' }) });
  t.equal(web.status, 200);
  t.equal(ctx.store.hostById('h5')?.role, 'web', 'a configured role is trusted');
  const m5 = manifestOf(imageSections(), { hostname: 'h5', machineId: 'h5', imageId: 'ami-1' });
  await call(ctx, 'POST', '/v1/reports', { token: k5, body: digestReport(2, m5, { role: 'solo' }) });
  t.equal(ctx.store.hostById('h5')?.role, 'web', 'a later unknown claim keeps the trusted role');

  const k6 = await keyOf(ctx, 'h6');
  const bogus = manifestOf(drifted, { hostname: 'h6', machineId: 'h6', imageId: 'ami-mine' });
  t.equal((await call(ctx, 'POST', '/v1/reports', { token: k6, body: fullReport(1, bogus) })).status, 200);
  const h6 = (await call(ctx, 'GET', '/v1/hosts/h6', { token: ADMIN })).json as { status: string; flags: { claim: string; value: string }[] };
  t.equal(h6.status, 'unknown-image', 'an image without a baseline is not clean');
  t.match(h6.flags, [{ claim: 'image', value: 'ami-mine' }], 'and flagged');
});

t.test('attack 5: a signature never verified records no key id', async (t) => {
  const ctx = await setup(t);
  const signer = generateKeyPairSync('ed25519');
  const signed = signBaseline(baselineOf('ami-1').baseline, signer.privateKey);
  const put = await call(ctx, 'PUT', '/v1/baselines/ami-1', { token: ADMIN, body: signed });
  t.equal(put.status, 200);
  t.match(put.json, { keyId: null, signature: 'unverified' }, 'no key id for a signature never verified');
  t.equal(ctx.store.getBaseline('ami-1')?.keyId, null, 'nor stored');
});

t.test('attack 5: spoolDropped is bounded before it reaches a metric', async (t) => {
  const ctx = await setup(t);
  await putBaseline(ctx);
  const key = await keyOf(ctx, 'h1');
  const m = manifestOf(imageSections(), { hostname: 'h1', machineId: 'h1', imageId: 'ami-1' });
  const huge = await call(ctx, 'POST', '/v1/reports', { token: key, body: fullReport(1, m, { spoolDropped: 9_000_000_000_000_002 }) });
  t.equal(huge.status, 400, 'an impossible spoolDropped is refused');
  t.match(errorOf(huge).message, /spoolDropped/);
  t.equal((await call(ctx, 'POST', '/v1/reports', { token: key, body: fullReport(1, m, { spoolDropped: 2 }) })).status, 200);
  t.match((await call(ctx, 'GET', '/metrics')).text, /drift_agent_spool_dropped_total 2\n/, 'only the plausible one is counted');
});

t.test('attack 5: a seq at the end of the number line cannot block the host', async (t) => {
  const ctx = await setup(t);
  await putBaseline(ctx);
  const key = await keyOf(ctx, 'h1');
  const m = manifestOf(imageSections(), { hostname: 'h1', machineId: 'h1', imageId: 'ami-1' });
  t.equal((await call(ctx, 'POST', '/v1/reports', { token: key, body: fullReport(1, m) })).status, 200);

  const ahead = await call(ctx, 'POST', '/v1/reports', { token: key, body: digestReport(Number.MAX_SAFE_INTEGER, m) });
  t.equal(ahead.status, 400, 'a seq far ahead of the clock is refused');
  t.match(errorOf(ahead).message, /more than a day ahead/);
  t.equal((await call(ctx, 'POST', '/v1/reports', { token: key, body: digestReport(Date.now(), m) })).status, 200, 'the host is not blocked');
});

t.test('attack 5: malformed URLs answer the documented error body; the database is 0600', async (t) => {
  const ctx = await setup(t);

  for (const url of ['/v1/hosts/%E0%A4%A', '/v1/hosts/%zz', '/%']) {
    const bad = await call(ctx, 'GET', url, { token: ADMIN });
    t.equal(bad.status, 400, `${url}: 400`);
    t.equal(errorOf(bad).code, 'DRIFT_ERR_USAGE', `${url}: the documented error body`);
  }
  for (const f of ['drift.db', 'drift.db-wal']) t.equal(statSync(join(ctx.dir, f)).mode & 0o777, 0o600, `${f} is 0600`);
});

t.test('findings beyond the bound: the most severe are kept, the rest counted by severity and kind', async (t) => {
  const f = (key: string, severity: 'low' | 'medium' | 'high' | 'critical'): Finding => ({
    kind: 'file', key, change: 'added', changed: [], before: null, after: null, severity, action: 'report', rule: null, explanation: `${key} added`,
  });
  const all = [f('/a', 'low'), f('/b', 'critical'), f('/c', 'low'), f('/d', 'high'), f('/e', 'critical')];
  const b = boundFindings(all, 3);
  t.same(b.findings.map((x) => x.key), ['/b', '/e', '/d'], 'critical first, then high, in their order');
  t.same(b.omitted, { count: 2, bySeverity: { low: 2 }, byKind: { file: 2 } });
  t.ok(b.bytes > 0 && b.bytes < 10_000, 'their size is estimated for the cache bound');
  t.equal(boundFindings(all, 10).omitted, null, 'nothing omitted under the bound');
});
