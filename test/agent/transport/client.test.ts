import t from 'tap';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { AddressInfo } from 'node:net';
import { backoffDelay, CollectorClient, fetchFleet, fetchHost, pushBaseline, readSecretFile, REPORT_REQUEST_SCHEMA, type ReportRequest } from '../../../agent/transport/client.js';
import { MANIFEST_SCHEMA, type Baseline } from '../../../agent/protocol/manifest.js';
import { canonicalJson } from '../../../agent/protocol/canonical.js';

interface Seen { method: string; url: string; auth: string | undefined; encoding: string | undefined; body: unknown; rawBytes: number; text: string }

/** A local HTTP server whose answer each test sets; records what it received. */
async function server(t: { teardown(fn: () => unknown): void }, answer: (req: IncomingMessage, res: ServerResponse, seen: Seen) => void): Promise<{ url: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  const srv: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const text = req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw).toString() : raw.toString();
      const s: Seen = { method: req.method ?? '', url: req.url ?? '', auth: req.headers.authorization, encoding: req.headers['content-encoding'], body: text ? JSON.parse(text) : null, rawBytes: raw.length, text };
      seen.push(s);
      answer(req, res, s);
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => { srv.closeAllConnections(); srv.close(() => r()); }));
  return { url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}`, seen };
}

const json = (res: ServerResponse, status: number, body: unknown): void => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
};

async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

const report = (n = 0): ReportRequest => ({
  schema: REPORT_REQUEST_SCHEMA, seq: 7, collectedAt: '2026-01-01T00:00:00Z', host: { hostname: 'h', machineId: 'm' },
  digests: { root: `sha256:${'1'.repeat(64)}` },
  ...(n > 0 ? { sections: { files: Object.fromEntries(Array.from({ length: n }, (_, i) => [`/etc/f${i}`, { type: 'file' as const, mode: '0644', uid: 0, gid: 0 }])) } } : {}),
});

t.test('reports travel with the bearer key, gzip-compressed when large', async (t) => {
  const s = await server(t, (_q, res, seen) => json(res, 200, { accepted: true, seq: (seen.body as { seq: number }).seq, need: [] }));
  const c = new CollectorClient(s.url);
  t.teardown(() => c.close());
  t.same(await c.report('key-1', report()), { kind: 'ok', value: { accepted: true, seq: 7 } });
  t.same(await c.report('key-1', report(500)), { kind: 'ok', value: { accepted: true, seq: 7 } });
  const [small, big] = s.seen;
  t.equal(small?.auth, 'Bearer key-1');
  t.equal(small?.url, '/v1/reports');
  t.equal(small?.encoding, undefined, 'a small body is sent as is');
  t.equal(big?.encoding, 'gzip');
  t.same(big?.body, report(500), 'the gzip body inflates to the report');
  t.ok((big?.rawBytes ?? 0) < JSON.stringify(report(500)).length / 3, 'and is much smaller on the wire');
  t.equal(c.lastReport.requestBytes, big?.rawBytes, 'lastReport says what went on the wire');
  // Canonical bytes: a clean host's section is byte for byte its baseline's (the collector hashes it unparsed).
  t.equal(small?.text, canonicalJson(report()), 'a small body is canonical JSON');
  t.equal(big?.text, canonicalJson(report(500)), 'a large body inflates to canonical JSON');
});

t.test('a report body too large to hold twice is serialised and gzipped in pieces', async (t) => {
  const { encodeBody } = await import('../../../agent/transport/client.js');
  const small = await encodeBody({ b: 1, a: 'x' }, 1024);
  t.same(small, { payload: Buffer.from('{"a":"x","b":1}'), gzipped: false });
  // About 3.5 MB of canonical JSON, many pieces; the threshold is crossed in the first one.
  const body = report(60_000);
  const text = canonicalJson(body);
  t.ok(text.length > 3_000_000, `${text.length} characters`);
  const big = await encodeBody(body, 1024);
  t.equal(big.gzipped, true);
  t.equal(gunzipSync(big.payload).toString(), text, 'one gzip stream of exactly the canonical text');
  const edge = await encodeBody({ s: 'y'.repeat(100) }, 100);
  t.equal(edge.gzipped, true, 'a body one byte over the threshold is gzipped');
  t.equal(gunzipSync(edge.payload).toString(), canonicalJson({ s: 'y'.repeat(100) }));
});

t.test('need is passed through; unknown section names are left out', async (t) => {
  const s = await server(t, (_q, res) => json(res, 200, { accepted: false, seq: 7, need: ['files', 'bogus'] }));
  const c = new CollectorClient(s.url);
  t.teardown(() => c.close());
  t.same(await c.report('k', report()), { kind: 'ok', value: { accepted: false, seq: 7, need: ['files'] } });
});

t.test('answers are classified for the daemon', async (t) => {
  const statuses: Array<[number, unknown]> = [
    [401, { error: { code: 'DRIFT_ERR_UNAUTHORIZED', message: 'unknown node key' } }],
    [409, { error: { code: 'DRIFT_ERR_CONFLICT', message: 'seq 7 replayed; last accepted 9' } }],
    [503, { error: { code: 'DRIFT_ERR_IO', message: 'database locked' } }],
    [200, { hello: 'not a collector' }],
  ];
  let i = 0;
  const s = await server(t, (_q, res) => { const [st, b] = statuses[i++] ?? [500, null]; json(res, st, b); });
  const c = new CollectorClient(s.url);
  t.teardown(() => c.close());
  t.same(await c.report('k', report()), { kind: 'unauthorized', message: 'unknown node key' });
  t.same(await c.report('k', report()), { kind: 'refused', status: 409, code: 'DRIFT_ERR_CONFLICT', message: 'seq 7 replayed; last accepted 9' });
  const five = await c.report('k', report());
  t.equal(five.kind, 'unreachable', '5xx is worth retrying');
  t.match(five, { message: /HTTP 503: database locked/ });
  t.match(await c.report('k', report()), { kind: 'unreachable', message: /not the expected JSON/ });
});

t.test('a closed port, a silent server and an abort are told apart', async (t) => {
  const port = await closedPort();
  const c = new CollectorClient(`http://127.0.0.1:${port}`, { timeoutMs: 5000 });
  t.match(await c.report('k', report()), { kind: 'unreachable', message: /ECONNREFUSED/ });
  c.close();

  const silent = await server(t, () => { /* never answers */ });
  const slow = new CollectorClient(silent.url, { timeoutMs: 200 });
  t.match(await slow.report('k', report()), { kind: 'unreachable', message: /no answer within 200 ms/ });
  const ac = new AbortController();
  const pending = slow.report('k', report(), ac.signal);
  ac.abort();
  t.same(await pending, { kind: 'aborted' });
  slow.close();
});

t.test('enroll returns the node key', async (t) => {
  const s = await server(t, (_q, res, seen) => (seen.auth === 'Bearer s3cret'
    ? json(res, 200, { hostId: 'm', nodeKey: 'nk-1' })
    : json(res, 401, { error: { code: 'DRIFT_ERR_UNAUTHORIZED', message: 'bad enrollment secret' } })));
  const c = new CollectorClient(`${s.url}/`);
  t.teardown(() => c.close());
  t.same(await c.enroll('s3cret', { hostId: 'm', hostname: 'h', imageId: null }), { kind: 'ok', value: 'nk-1' });
  t.same(s.seen[0]?.body, { hostId: 'm', hostname: 'h', imageId: null });
  t.equal(s.seen[0]?.url, '/v1/enroll', 'a trailing slash in the base URL does not double');
  t.same(await c.enroll('wrong', { hostId: 'm', hostname: 'h', imageId: null }), { kind: 'unauthorized', message: 'bad enrollment secret' });
});

const baseline: Baseline = {
  schema: MANIFEST_SCHEMA, host: { hostname: 'bake', machineId: 'x', image: { id: 'img/1' } }, collectedAt: '2026-01-01T00:00:00Z',
  agent: { version: '0' }, digests: { root: `sha256:${'0'.repeat(64)}` }, unread: [],
};

t.test('admin calls: results, the collector\'s 4xx message, unreachable with the URL', async (t) => {
  const s = await server(t, (q, res) => {
    if (q.method === 'PUT') json(res, 200, { imageId: 'img/1', digest: `sha256:${'2'.repeat(64)}`, keyId: null });
    else if (q.url === '/v1/fleet') json(res, 200, { cohorts: [{ imageId: 'img/1' }] });
    else json(res, 404, { error: { code: 'DRIFT_ERR_NOT_FOUND', message: 'no host nope; list hosts with GET /v1/hosts' } });
  });
  t.same(await pushBaseline(s.url, 'adm', baseline), { imageId: 'img/1', digest: `sha256:${'2'.repeat(64)}`, keyId: null });
  t.equal(s.seen[0]?.url, '/v1/baselines/img%2F1', 'the image id is escaped in the path');
  t.equal(s.seen[0]?.auth, 'Bearer adm');
  t.same(await fetchFleet(s.url, 'adm'), { cohorts: [{ imageId: 'img/1' }] });
  await t.rejects(fetchHost(s.url, 'adm', 'nope'), { code: 'DRIFT_ERR_NOT_FOUND', message: /answered 404 DRIFT_ERR_NOT_FOUND: no host nope/ });
  const port = await closedPort();
  await t.rejects(fetchFleet(`http://127.0.0.1:${port}`, 'adm'), { code: 'DRIFT_ERR_UNREACHABLE', message: new RegExp(`127\\.0\\.0\\.1:${port}/v1/fleet.*ECONNREFUSED.*drift server`) });
  await t.rejects(fetchFleet('ftp://x', 'adm'), { code: 'DRIFT_ERR_USAGE', message: /http:\/\/ or https:\/\// });
});

t.test('secret files: trimmed, never empty, a warning when others may read them', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'drift-secret-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const ok = join(dir, 'ok');
  await writeFile(ok, '  s3cret\n', { mode: 0o600 });
  const warnings: string[] = [];
  t.equal(await readSecretFile(ok, (m) => warnings.push(m)), 's3cret');
  t.same(warnings, []);
  await chmod(ok, 0o644);
  await readSecretFile(ok, (m) => warnings.push(m));
  t.match(warnings, [/readable by group or others \(mode 0644\); chmod 600/]);
  const empty = join(dir, 'empty');
  await writeFile(empty, '\n', { mode: 0o600 });
  await t.rejects(readSecretFile(empty), { code: 'DRIFT_ERR_CONFIG', message: new RegExp(`${empty} is empty`) });
  await t.rejects(readSecretFile(join(dir, 'missing')), { code: 'DRIFT_ERR_CONFIG', message: /ENOENT/ });
});

t.test('full-jitter backoff stays within [0, min(cap, base·2^n))', async (t) => {
  t.equal(backoffDelay(0, 1000, 300_000, () => 0), 0);
  t.equal(backoffDelay(0, 1000, 300_000, () => 0.999999), 999);
  t.equal(backoffDelay(3, 1000, 300_000, () => 0.5), 4000);
  t.equal(backoffDelay(20, 1000, 300_000, () => 0.999999), 299_999, 'capped at 5 minutes');
  t.equal(backoffDelay(10_000, 1000, 300_000, () => 0.5), 150_000, 'a huge attempt count does not overflow');
});
