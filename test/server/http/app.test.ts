import t from 'tap';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import type { FastifyInstance } from 'fastify';
import { loadRuleSet } from '../../../agent/rules/load.js';
import { signBaseline } from '../../../agent/sign.js';
import { compare } from '../../../agent/engine/compare.js';
import { buildApp, type AppDeps } from '../../../server/http/app.js';
import { Store } from '../../../server/store/store.js';
import { baselineOf, digestReport, fullReport, imageSections, manifestOf } from '../helpers/fleet.js';

const ENROLL = 'enroll-secret-0123456789';
const ADMIN = 'admin-token-0123456789abc';
const rules = await loadRuleSet([]);

interface Ctx { app: FastifyInstance; store: Store; clock: { now: number } }

async function setup(t: { teardown(fn: () => unknown): void }, over: Partial<AppDeps> = {}): Promise<Ctx> {
  const dir = mkdtempSync(join(tmpdir(), 'drift-http-'));
  const store = Store.open(join(dir, 'drift.db'));
  const clock = { now: Date.parse('2026-01-01T00:00:00Z') };
  const app = buildApp({
    store, enrollSecret: ENROLL, adminToken: ADMIN, baselineKeys: [], rules, compare, maxBody: 1024 * 1024, silentAfterMs: 15 * 60_000,
    now: () => clock.now, ...over,
  });
  t.teardown(async () => { await app.close(); store.close(); rmSync(dir, { recursive: true, force: true }); });
  return { app, store, clock };
}

const auth = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` });

async function enroll(ctx: Ctx, hostId: string, imageId: string | null = 'ami-1', nodeKey?: string): Promise<string> {
  const r = await ctx.app.inject({ method: 'POST', url: '/v1/enroll', headers: auth(ENROLL), payload: { hostId, hostname: `host-${hostId}`, imageId, ...(nodeKey ? { nodeKey } : {}) } });
  if (r.statusCode !== 200) throw new Error(`enroll ${hostId}: ${r.statusCode} ${r.body}`);
  return (r.json() as { nodeKey: string }).nodeKey;
}

async function putBaseline(ctx: Ctx, imageId = 'ami-1', sections = imageSections()): Promise<string> {
  const { baseline, digest } = baselineOf(imageId, sections);
  const r = await ctx.app.inject({ method: 'PUT', url: `/v1/baselines/${imageId}`, headers: auth(ADMIN), payload: baseline });
  if (r.statusCode !== 200) throw new Error(`baseline: ${r.statusCode} ${r.body}`);
  return digest;
}

function report(ctx: Ctx, key: string, body: unknown, headers: Record<string, string> = {}) {
  return ctx.app.inject({ method: 'POST', url: '/v1/reports', headers: { ...auth(key), 'content-type': 'application/json', ...headers }, payload: typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body) });
}

/** Everything a refused request must leave alone. */
function snapshot(store: Store): string {
  return JSON.stringify({ counts: store.counts(), hosts: store.db.prepare('SELECT * FROM hosts ORDER BY id').all(), findings: store.db.prepare('SELECT * FROM findings ORDER BY host, key').all() });
}

const drifted = () => {
  const s = imageSections();
  s.files['/etc/ssh/sshd_config'] = { ...s.files['/etc/ssh/sshd_config']!, sha256: 'e'.repeat(64), size: 3300 };
  s.packages['dpkg:netcat-openbsd:amd64'] = { version: '1.219-1' };
  return s;
};

t.test('healthz and metrics need no credentials', async (t) => {
  const ctx = await setup(t);
  const h = await ctx.app.inject({ url: '/healthz' });
  t.equal(h.statusCode, 200);
  t.same(h.json(), { ok: true });
  const m = await ctx.app.inject({ url: '/metrics' });
  t.equal(m.statusCode, 200);
  t.match(m.headers['content-type'], /^text\/plain/);
  t.match(m.body, /drift_reports_received_total 1?0?\n/);
  t.match(m.body, /drift_db_size_bytes \d+/);
  t.match(m.body, /drift_http_request_duration_seconds_count\{route="\/healthz"\} 1/);
  const nf = await ctx.app.inject({ url: '/nope' });
  t.equal(nf.statusCode, 404);
  t.equal(nf.json().error.code, 'DRIFT_ERR_NOT_FOUND');
});

t.test('enroll: the secret is checked, the body validated, re-enrolling with the node key revokes the old key', async (t) => {
  const ctx = await setup(t);
  const before = snapshot(ctx.store);
  const none = await ctx.app.inject({ method: 'POST', url: '/v1/enroll', payload: { hostId: 'h1', hostname: 'a', imageId: null } });
  t.equal(none.statusCode, 401);
  t.equal(none.json().error.code, 'DRIFT_ERR_UNAUTHORIZED');
  const bad = await ctx.app.inject({ method: 'POST', url: '/v1/enroll', headers: auth('wrong'), payload: { hostId: 'h1', hostname: 'a', imageId: null } });
  t.equal(bad.statusCode, 401);
  t.match(bad.json().error.message, /enrollment secret refused/);
  const shape = await ctx.app.inject({ method: 'POST', url: '/v1/enroll', headers: auth(ENROLL), payload: { hostname: 'a' } });
  t.equal(shape.statusCode, 400);
  t.match(shape.json().error.message, /hostId/);
  t.equal(snapshot(ctx.store), before, 'refused enrollments change nothing');

  const k1 = await enroll(ctx, 'h1');
  t.match(k1, /^[1-9]\d*\.[A-Za-z0-9_-]{43}$/, 'host number, then 32 random bytes, base64url');
  const k2 = await enroll(ctx, 'h1', 'ami-1', k1);
  t.not(k1, k2);
  const m = manifestOf(imageSections(), { hostname: 'a', machineId: 'h1' });
  t.equal((await report(ctx, k1, fullReport(1, m))).statusCode, 401, 'old key revoked');
  t.equal((await report(ctx, k2, fullReport(1, m, { spoolDropped: 3 }))).statusCode, 200, 'new key works');
  t.match((await ctx.app.inject({ url: '/metrics' })).body, /drift_agent_spool_dropped_total 3\n/, 'drops the agent announces are counted');
});

t.test('baselines: admin token, image id, signatures', async (t) => {
  const signer = generateKeyPairSync('ed25519');
  const ctx = await setup(t, { baselineKeys: [signer.publicKey] });
  const { baseline, digest } = baselineOf('ami-1');
  const noAuth = await ctx.app.inject({ method: 'PUT', url: '/v1/baselines/ami-1', payload: baseline });
  t.equal(noAuth.statusCode, 401);
  const unsigned = await ctx.app.inject({ method: 'PUT', url: '/v1/baselines/ami-1', headers: auth(ADMIN), payload: baseline });
  t.equal(unsigned.statusCode, 422);
  t.equal(unsigned.json().error.code, 'DRIFT_ERR_SIGNATURE');
  t.match(unsigned.json().error.message, /not signed/);
  const signed = signBaseline(baseline, signer.privateKey);
  const wrongImage = await ctx.app.inject({ method: 'PUT', url: '/v1/baselines/ami-2', headers: auth(ADMIN), payload: signed });
  t.equal(wrongImage.statusCode, 422);
  t.match(wrongImage.json().error.message, /not "ami-2"/);
  const tampered = { ...signed, collectedAt: '2030-01-01T00:00:00Z' };
  const bad = await ctx.app.inject({ method: 'PUT', url: '/v1/baselines/ami-1', headers: auth(ADMIN), payload: tampered });
  t.equal(bad.statusCode, 422);
  t.match(bad.json().error.message, /does not verify/);
  const wrongDigests = signBaseline({ ...baseline, digests: { ...baseline.digests, root: `sha256:${'0'.repeat(64)}` } }, signer.privateKey);
  const mismatch = await ctx.app.inject({ method: 'PUT', url: '/v1/baselines/ami-1', headers: auth(ADMIN), payload: wrongDigests });
  t.equal(mismatch.statusCode, 422, 'digests that do not match the sections are refused');
  t.match(mismatch.json().error.message, /digests do not match its sections/);
  t.equal(ctx.store.counts()['baselines'], 0, 'nothing stored for refused baselines');
  const ok = await ctx.app.inject({ method: 'PUT', url: '/v1/baselines/ami-1', headers: auth(ADMIN), payload: signed });
  t.equal(ok.statusCode, 200);
  t.same(ok.json(), { imageId: 'ami-1', digest, keyId: signed.signature?.keyId, signature: 'verified' });
  const got = await ctx.app.inject({ url: '/v1/baselines/ami-1', headers: auth(ADMIN) });
  t.same(got.json(), signed, 'GET returns the stored baseline with its signature');
  const missing = await ctx.app.inject({ url: '/v1/baselines/ami-9', headers: auth(ADMIN) });
  t.equal(missing.statusCode, 404);
  const invalid = await ctx.app.inject({ method: 'PUT', url: '/v1/baselines/ami-1', headers: auth(ADMIN), payload: { schema: 'nope' } });
  t.equal(invalid.statusCode, 422);
  t.equal(invalid.json().error.code, 'DRIFT_ERR_MANIFEST');
});

t.test('reports: digests first, sections on demand, then digest-only', async (t) => {
  const ctx = await setup(t);
  const bd = await putBaseline(ctx);
  const key = await enroll(ctx, 'h1');
  const m = manifestOf(imageSections(), { hostname: 'web-1', machineId: 'h1', imageId: 'ami-1', baselineDigest: bd });

  const first = await report(ctx, key, digestReport(1, m));
  t.equal(first.statusCode, 200);
  t.same(first.json(), { accepted: false, seq: 1, need: ['packages', 'files', 'processes', 'ports'] });
  t.equal(ctx.store.counts()['history'], 0, 'nothing stored for an unaccepted report');

  const full = await report(ctx, key, gzipSync(JSON.stringify(fullReport(1, m))), { 'content-encoding': 'gzip' });
  t.equal(full.statusCode, 200, full.body);
  t.same(full.json(), { accepted: true, seq: 1, need: [] });

  const again = await report(ctx, key, digestReport(2, m));
  t.same(again.json(), { accepted: true, seq: 2, need: [] });
  t.same(ctx.store.reportSeqs('h1'), [1, 2]);

  const d = manifestOf(drifted(), { hostname: 'web-1', machineId: 'h1', imageId: 'ami-1', baselineDigest: bd });
  const ask = await report(ctx, key, digestReport(3, d));
  t.same(ask.json(), { accepted: false, seq: 3, need: ['packages', 'files'] }, 'only the changed sections are asked for');
  const partial = await report(ctx, key, { ...digestReport(3, d), sections: { packages: d.packages, files: d.files } });
  t.same(partial.json(), { accepted: true, seq: 3, need: [] }, partial.body);

  const host = await ctx.app.inject({ url: '/v1/hosts/h1', headers: auth(ADMIN) });
  const body = host.json();
  t.equal(body.status, 'drifted');
  t.equal(body.findings.length, 2);
  t.same(body.findings.map((f: { key: string; change: string }) => `${f.key} ${f.change}`).sort(), ['/etc/ssh/sshd_config modified', 'dpkg:netcat-openbsd:amd64 added']);
  t.match(body.findings[0], { severity: String, action: String, explanation: String, firstSeen: '2026-01-01T00:00:00.000Z' });
  t.same(body.baseline, { imageId: 'ami-1', digest: bd });
  t.same(body.unread, []);
});

t.test('refused reports get a 4xx with a reason and change nothing', async (t) => {
  const ctx = await setup(t, { maxBody: 64 * 1024 });
  const bd = await putBaseline(ctx);
  const key = await enroll(ctx, 'h1');
  const m = manifestOf(imageSections(), { hostname: 'web-1', machineId: 'h1', imageId: 'ami-1', baselineDigest: bd });
  t.equal((await report(ctx, key, fullReport(5, m))).statusCode, 200);
  const before = snapshot(ctx.store);

  const cases: [string, Promise<{ statusCode: number; json(): { error: { code: string; message: string } } }>, number, string, RegExp][] = [
    ['no key', ctx.app.inject({ method: 'POST', url: '/v1/reports', payload: digestReport(6, m) }), 401, 'DRIFT_ERR_UNAUTHORIZED', /missing Authorization/],
    ['unknown key', report(ctx, 'not-a-key', digestReport(6, m)), 401, 'DRIFT_ERR_UNAUTHORIZED', /unknown or revoked/],
    ['malformed JSON', report(ctx, key, '{"schema": '), 400, 'DRIFT_ERR_USAGE', /not valid JSON/],
    ['malformed gzip', report(ctx, key, Buffer.from('not gzip at all'), { 'content-encoding': 'gzip' }), 400, 'DRIFT_ERR_USAGE', /not valid gzip/],
    ['bad envelope', report(ctx, key, { schema: 'drift.report-request/v1', seq: 'x' }), 400, 'DRIFT_ERR_USAGE', /seq/],
    ['oversized', report(ctx, key, JSON.stringify({ ...digestReport(6, m), pad: 'x'.repeat(70 * 1024) })), 413, 'DRIFT_ERR_TOO_LARGE', /--max-body/],
    ['gzip bomb', report(ctx, key, gzipSync(Buffer.alloc(50 * 1024 * 1024, 32)), { 'content-encoding': 'gzip' }), 413, 'DRIFT_ERR_TOO_LARGE', /inflates to more than 65536 bytes/],
    ['replayed', report(ctx, key, fullReport(5, m)), 409, 'DRIFT_ERR_CONFLICT', /last accepted seq is 5/],
    ['older seq', report(ctx, key, digestReport(2, m)), 409, 'DRIFT_ERR_CONFLICT', /last accepted seq is 5/],
    ['wrong image', report(ctx, key, fullReport(6, { ...m, host: { ...m.host, image: { id: 'ami-1', baselineDigest: `sha256:${'1'.repeat(64)}` } } })), 422, 'DRIFT_ERR_MANIFEST', /collector's baseline of ami-1 is sha256:/],
    ['wrong host', report(ctx, key, fullReport(6, m, { hostId: 'h2' })), 422, 'DRIFT_ERR_MANIFEST', /belongs to host h1/],
    ['other machine', report(ctx, key, fullReport(6, { ...m, host: { ...m.host, machineId: 'other' } })), 422, 'DRIFT_ERR_MANIFEST', /used by machine-id h1/],
    ['invalid manifest', report(ctx, key, fullReport(6, { ...m, files: { '/x': { type: 'file', mode: '644', uid: 0, gid: 0 } } } as never)), 422, 'DRIFT_ERR_MANIFEST', /manifest\.files\./],
    ['digest mismatch', report(ctx, key, fullReport(6, { ...m, files: { ...m.files, '/etc/evil': { type: 'file', mode: '0644', uid: 0, gid: 0 } } })), 422, 'DRIFT_ERR_MANIFEST', /digests do not match/],
    ['section digest mismatch', report(ctx, key, { ...digestReport(6, m), sections: { ports: { 'tcp:0.0.0.0:23': {} } } }), 422, 'DRIFT_ERR_MANIFEST', /section ports does not match/],
    ['bad content type', report(ctx, key, 'x', { 'content-type': 'text/plain' }), 415, 'DRIFT_ERR_USAGE', /Content-Type/],
  ];
  for (const [name, p, status, code, message] of cases) {
    const r = await p;
    t.equal(r.statusCode, status, `${name}: status`);
    t.equal(r.json().error.code, code, `${name}: code`);
    t.match(r.json().error.message, message, `${name}: message`);
    t.equal(snapshot(ctx.store), before, `${name}: database unchanged`);
  }
  const metrics = (await ctx.app.inject({ url: '/metrics' })).body;
  t.match(metrics, /drift_reports_refused_total\{reason="replayed"\} 2/);
  t.match(metrics, /drift_reports_refused_total\{reason="unauthorized"\} 2/);
  t.match(metrics, /drift_reports_refused_total\{reason="too-large"\} 2/);
  t.match(metrics, /drift_reports_accepted_total 1\n/);
});

t.test('hosts and fleet: statuses, fleet-wide drift and the snowflake', async (t) => {
  const ctx = await setup(t);
  const bd = await putBaseline(ctx);
  const hosts = ['h1', 'h2', 'h3', 'h4', 'h5'];
  for (const [i, id] of hosts.entries()) {
    const key = await enroll(ctx, id);
    const s = imageSections();
    // Everybody got netcat (fleet-wide); only h3 edited sshd_config (snowflake).
    s.packages['dpkg:netcat-openbsd:amd64'] = { version: '1.219-1' };
    if (id === 'h3') s.files['/etc/ssh/sshd_config'] = { ...s.files['/etc/ssh/sshd_config']!, sha256: 'f'.repeat(64) };
    const m = manifestOf(s, { hostname: `web-${i}`, machineId: id, imageId: 'ami-1', baselineDigest: bd });
    t.equal((await report(ctx, key, fullReport(1, m))).statusCode, 200);
  }
  const unknownKey = await enroll(ctx, 'u1', 'ami-unknown');
  const um = manifestOf(imageSections(), { hostname: 'odd', machineId: 'u1', imageId: 'ami-unknown' });
  t.equal((await report(ctx, unknownKey, fullReport(1, um))).statusCode, 200, 'a report for an image without baseline is accepted');
  await enroll(ctx, 'never');

  const list = (await ctx.app.inject({ url: '/v1/hosts', headers: auth(ADMIN) })).json().hosts as { id: string; status: string; findings: number; snowflake: { score: number } | null; lastSeen: string | null }[];
  const byId = new Map(list.map((h) => [h.id, h]));
  t.equal(byId.get('h1')?.status, 'drifted');
  t.equal(byId.get('h1')?.findings, 1);
  t.equal(byId.get('h1')?.snowflake, null);
  t.equal(byId.get('h3')?.findings, 2);
  t.ok((byId.get('h3')?.snowflake?.score ?? 0) > 0.5, 'h3 is a snowflake');
  t.equal(byId.get('u1')?.status, 'unknown-image');
  t.equal(byId.get('never')?.status, 'silent');
  t.equal(byId.get('never')?.lastSeen, null);

  const fleet = (await ctx.app.inject({ url: '/v1/fleet', headers: auth(ADMIN) })).json();
  const ami1 = fleet.cohorts.find((c: { imageId: string }) => c.imageId === 'ami-1');
  t.equal(ami1.hosts, 6, 'the host that never reported counts in the cohort, not in shares');
  t.equal(ami1.drifted, 5);
  t.same(ami1.fleetWide, [{ kind: 'package', key: 'dpkg:netcat-openbsd:amd64', change: 'added', hosts: 5, share: 1, recommendation: 'rebake or add a rule' }]);
  t.equal(ami1.snowflakes.length, 1);
  t.equal(ami1.snowflakes[0].hostId, 'h3');
  t.same(ami1.snowflakes[0].findings, [{ kind: 'file', key: '/etc/ssh/sshd_config', change: 'modified' }]);
  t.match(ami1.snowflakes[0].why, /\/etc\/ssh\/sshd_config modified \(only this host\)/);

  ctx.clock.now += 16 * 60_000;
  const later = (await ctx.app.inject({ url: '/v1/hosts/h1', headers: auth(ADMIN) })).json();
  t.equal(later.status, 'silent', 'no report for longer than --silent-after');
  const noHost = await ctx.app.inject({ url: '/v1/hosts/zzz', headers: auth(ADMIN) });
  t.equal(noHost.statusCode, 404);
  t.equal((await ctx.app.inject({ url: '/v1/fleet' })).statusCode, 401);
  t.equal((await ctx.app.inject({ url: '/v1/hosts', headers: auth('nope') })).statusCode, 401);
});

t.test('canonical bodies take the hash fast path and give the same results', async (t) => {
  const ctx = await setup(t);
  const bd = await putBaseline(ctx);
  const { canonicalJson } = await import('../../../agent/protocol/canonical.js');
  for (const [id, sections] of [['c1', imageSections()], ['c2', drifted()]] as const) {
    const key = await enroll(ctx, id);
    const m = manifestOf(sections, { hostname: id, machineId: id, imageId: 'ami-1', baselineDigest: bd });
    const r = await report(ctx, key, gzipSync(canonicalJson(fullReport(1, m))), { 'content-encoding': 'gzip' });
    t.same(r.json(), { accepted: true, seq: 1, need: [] }, `${id}: accepted`);
  }
  const c1 = (await ctx.app.inject({ url: '/v1/hosts/c1', headers: auth(ADMIN) })).json();
  t.equal(c1.status, 'clean');
  const c2 = (await ctx.app.inject({ url: '/v1/hosts/c2', headers: auth(ADMIN) })).json();
  t.equal(c2.findings.length, 2);
  t.same(ctx.store.hostSections(ctx.store.hostById('c2')!), drifted(), 'the stored state is the one sent');
  const key3 = await enroll(ctx, 'c3');
  const m3 = manifestOf(imageSections(), { hostname: 'c3', machineId: 'c3', imageId: 'ami-1' });
  const bad = canonicalJson(fullReport(1, m3)).replace('"mode":"0644"', '"mode":"644"');
  const r3 = await report(ctx, key3, bad);
  t.equal(r3.statusCode, 422, 'an invalid section is still checked against the schema');
});

t.test('a new baseline recomputes findings on the next digest-only report', async (t) => {
  const ctx = await setup(t);
  const key = await enroll(ctx, 'h1');
  const s = drifted();
  const m = manifestOf(s, { hostname: 'web-1', machineId: 'h1', imageId: 'ami-1' });
  t.equal((await report(ctx, key, fullReport(1, m))).json().accepted, true);
  t.equal((await ctx.app.inject({ url: '/v1/hosts/h1', headers: auth(ADMIN) })).json().status, 'unknown-image');
  await putBaseline(ctx);
  t.same((await report(ctx, key, digestReport(2, m))).json(), { accepted: true, seq: 2, need: [] });
  const h = (await ctx.app.inject({ url: '/v1/hosts/h1', headers: auth(ADMIN) })).json();
  t.equal(h.status, 'drifted');
  t.equal(h.findings.length, 2);
});

t.test('concurrent reports of one host are decided one after the other: the same seq twice is one 200 and one 409', async (t) => {
  const ctx = await setup(t);
  const bd = await putBaseline(ctx);
  const key = await enroll(ctx, 'h1');
  const m = manifestOf(imageSections(), { hostname: 'web-1', machineId: 'h1', imageId: 'ami-1', baselineDigest: bd });
  t.equal((await report(ctx, key, fullReport(1, m))).statusCode, 200);
  const [a, b] = await Promise.all([report(ctx, key, digestReport(2, m)), report(ctx, key, digestReport(2, m))]);
  t.same([a.statusCode, b.statusCode].sort(), [200, 409], `${a.body} / ${b.body}`);
  const [c, d] = await Promise.all([report(ctx, key, digestReport(3, m)), report(ctx, key, digestReport(4, m))]);
  t.same([c.statusCode, d.statusCode], [200, 200]);
  t.same(ctx.store.reportSeqs('h1'), [1, 2, 3, 4]);
  t.same(ctx.store.history('h1').map((r) => [r.firstSeq, r.lastSeq]), [[1, 4]], 'one state: one history row');
});
