import t from 'tap';
import { createHash } from 'node:crypto';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { enforcePass, reportPass, reportText, type FleetReport } from '../../../server/audit/passes.js';
import { closedPort } from '../../e2e/helpers.js';
import { auditWorld, MIN } from './helpers.js';

/**
 * The report pass's optional post to `report.webhook`: a Slack-compatible `{ "text" }`,
 * received by a real server on 127.0.0.1 that records every request.
 */

const GUARDS = { minReports: 2, minPersistMs: 5 * MIN, minHealthy: 0.5 };

interface Got { method: string; url: string; headers: IncomingHttpHeaders; body: string }

async function receiver(t: { teardown(fn: () => unknown): void }, answer: (req: Got) => { status: number; headers?: Record<string, string> }) {
  const got: Got[] = [];
  const srv = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const r = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
      got.push(r);
      const a = answer(r);
      res.writeHead(a.status, a.headers).end(a.status >= 400 ? 'receiver trouble' : 'ok');
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => { srv.closeAllConnections(); srv.close(() => r()); }));
  return { got, url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}/hooks/drift` };
}

/**
 * Ten hosts of ami-1: h0–h6 share a modified openssl.cnf (fleet-wide: rebake), h2 also a
 * modified sshd_config (replaced), h9 stopped reporting (silent), and so did h10, whose
 * agent calls itself `<!channel> <https://evil.example|click>`.
 */
function seed(w: Awaited<ReturnType<typeof auditWorld>>): void {
  w.fleet.image('ami-1');
  const t0 = w.clock.now;
  for (let i = 0; i < 10; i++) w.fleet.enroll(`h${i}`, 'ami-1', t0, `i-${i}`);
  w.store.enroll({ id: 'h10', hostname: '<!channel> <https://evil.example|click>', imageId: 'ami-1', keyHash: createHash('sha256').update('h10').digest().subarray(0, 16), now: t0 });
  for (const dt of [0, 10, 20]) {
    for (let i = 0; i <= 10; i++) {
      if ((i === 9 || i === 10) && dt > 0) continue;
      w.fleet.report(`h${i}`, t0 + dt * MIN, [...(i < 7 ? ['/etc/ssl/openssl.cnf'] : []), ...(i === 2 ? ['/etc/ssh/sshd_config'] : [])], i === 10 ? 'i-10' : undefined);
    }
  }
  w.clock.now = t0 + 20 * MIN;
}

t.test('report webhook: one unsigned POST of { text } naming drifted hosts, rebake lines, actions and silent hosts, escaped', async (t) => {
  const w = await auditWorld(t);
  seed(w);
  const rx = await receiver(t, () => ({ status: 200 }));
  const d = await w.deps({
    mode: 'enforce', guards: GUARDS, provider: { kind: 'command', argv: ['/bin/true'] },
    silent: { interval: '5m', multiple: 3 }, report: { dir: join(w.dir, 'reports'), webhook: rx.url },
  });
  const done = await enforcePass(d);
  t.same(done.done.map((a) => [a.hostId, a.state]), [['h2', 'succeeded']], 'the snowflake was replaced first');
  w.clock.now += MIN;
  const { report, files } = await reportPass(d);

  t.equal(rx.got.length, 1, 'one POST');
  const [post] = rx.got;
  t.equal(post?.method, 'POST');
  t.equal(post?.url, '/hooks/drift');
  t.equal(post?.headers['content-type'], 'application/json');
  t.notOk(Object.keys(post?.headers ?? {}).some((h) => /signature|timestamp|authorization/i.test(h)), 'unsigned: the webhook URL is the secret, as with Slack');
  const body = JSON.parse(post?.body ?? '{}') as Record<string, unknown>;
  t.same(Object.keys(body), ['text'], 'Slack-compatible: only text');
  const text = String(body['text']);
  t.equal(text, reportText(report), 'the text is the report\'s');
  const evil = '&lt;!channel&gt; &lt;https://evil.example|click&gt;';
  t.equal(text, [
    `drift fleet report ${report.at}: 11 hosts, 7 drifted, 2 silent; 1 replaced, 6 blocked`,
    'drifted:', ...[0, 1, 2, 3, 4, 5, 6].map((i) => `- host-h${i} (h${i})`),
    'rebake:', '- rebake image ami-1: file /etc/ssl/openssl.cnf modified on 7 hosts (64%)',
    'actions (enforce):', '- succeeded host-h2 (h2) via command',
    'silent:', `- ${evil} (h10), last seen 2026-06-01T10:00:00.000Z`, '- host-h9 (h9), last seen 2026-06-01T10:00:00.000Z',
  ].join('\n'), 'summary, drifted hosts, rebake line, actions, silent hosts');
  t.notMatch(text, /[<>]/, 'no raw < or > reaches Slack: a host can neither notify a channel nor post a link');
  t.equal(files.length, 2);
});

t.test('report webhook that fails: 5xx, no listener, a redirect — logged once, not retried, the report files still written, the pass succeeds', async (t) => {
  const w = await auditWorld(t);
  seed(w);
  const reports = join(w.dir, 'reports');
  const base = { guards: GUARDS, provider: { kind: 'command', argv: ['/bin/true'] } };

  const broken = await receiver(t, () => ({ status: 503 }));
  const d = await w.deps({ ...base, report: { dir: reports, webhook: broken.url } });
  const r = await reportPass(d);
  t.equal(broken.got.length, 1, 'one POST: a report is not retried (the next report pass sends a fresh one)');
  t.same(r.files.map((f) => f.replace(/.*\./, '')), ['md', 'json'], 'the files are written whatever the receiver says');
  t.same(readdirSync(reports).sort(), r.files.map((f) => f.slice(reports.length + 1)).sort());
  t.match(w.logs.filter((l) => /webhook/.test(l.msg)), [{ msg: 'report webhook refused the report', fields: { status: 503 } }]);
  t.match(w.logs.at(-1), { msg: 'fleet report written' }, 'and the pass goes on to its end');

  w.logs.length = 0;
  const port = await closedPort();
  const r2 = await reportPass(await w.deps({ ...base, report: { dir: reports, webhook: `http://127.0.0.1:${port}/` } }));
  t.equal(r2.files.length, 2);
  t.match(w.logs.filter((l) => /webhook/.test(l.msg)), [{ msg: 'report webhook unreachable', fields: { error: /fetch failed/ } }]);

  // A receiver that redirects does not get to send the report (and the fleet's host names) elsewhere.
  w.logs.length = 0;
  const elsewhere = await receiver(t, () => ({ status: 200 }));
  const redirecting = await receiver(t, () => ({ status: 307, headers: { location: elsewhere.url } }));
  await reportPass(await w.deps({ ...base, report: { dir: reports, webhook: redirecting.url } }));
  t.equal(redirecting.got.length, 1);
  t.equal(elsewhere.got.length, 0, 'the redirect was not followed');
  t.match(w.logs.filter((l) => /webhook/.test(l.msg)), [{ msg: 'report webhook unreachable' }]);
});

t.test('webhook text is bounded: 20 names per list, then a count; 30,000 characters at most', async (t) => {
  const host = (i: number, status: string) => ({ id: `h${i}`, hostname: `host-${i}`, status, lastSeen: null }) as unknown as FleetReport['hosts'][number];
  const many: FleetReport = {
    schema: 'drift.audit-report/v1', at: '2026-06-01T10:00:00.000Z', mode: 'dry-run',
    hosts: Array.from({ length: 5000 }, (_, i) => host(i, 'drifted')), cohorts: [],
    rebake: Array.from({ length: 300 }, (_, i) => `rebake image ami-1: file /etc/f${i} modified on 5000 hosts (100%)`),
    actions: [], blocked: [], silent: Array.from({ length: 5000 }, (_, i) => host(i, 'drifted')),
  };
  const text = reportText(many);
  const lines = text.split('\n');
  t.equal(lines.filter((l) => /^- host-\d+ \(h\d+\)$/.test(l)).length, 20, '20 drifted names');
  t.ok(lines.includes('- … and 4980 more'), 'the rest of the drifted hosts counted');
  t.ok(lines.includes('- … and 280 more'), 'the rest of the rebake lines counted');
  t.equal(lines.filter((l) => l.startsWith('- host-') && l.endsWith('last seen never')).length, 20, '20 silent names');

  const huge: FleetReport = { ...many, hosts: [host(0, 'drifted')], silent: [], rebake: [`rebake image ami-1: file /${'<'.repeat(40_000)} modified`] };
  const cut = reportText(huge);
  t.ok(cut.length <= 30_000 + 60, `cut to the limit (${cut.length})`);
  t.match(cut, /\n… cut; the whole report is in report.dir$/);
  t.notMatch(cut, /</, 'escaped before the cut');
});
