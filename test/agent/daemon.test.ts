import t from 'tap';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { resolveAgentConfig } from '../../agent/config.js';
import { AGENT_METRICS_FILE, AgentDaemon, jsonLogger } from '../../agent/daemon.js';
import { collectManifest } from '../../agent/manifest.js';
import { loadRuleSet } from '../../agent/rules/load.js';
import { closedPort, exited, makeRoot, spawnAgent, startCollector, waitForLog } from '../e2e/helpers.js';
import { driftBin } from '../helpers/paths.js';
import { run } from '../helpers/run.js';

/** A temp folder with a host root, a state folder and the enrollment secret. */
async function setup(t: { teardown(fn: () => unknown): void }, machineId = '0123456789abcdef0123456789abcdef'): Promise<{ dir: string; root: string; stateDir: string; secret: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'drift-agent-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const root = await makeRoot(join(dir, 'root'), { machineId, hostname: 'web-1' });
  const secret = join(dir, 'enroll-secret');
  await writeFile(secret, 'enroll-s3cret\n', { mode: 0o600 });
  return { dir, root, stateDir: join(dir, 'state'), secret };
}

/** Open a daemon with real collection and rules; its log lines are kept. */
async function daemon(t: { teardown(fn: () => unknown): void }, flags: Record<string, unknown>): Promise<{ d: AgentDaemon; logs: Array<Record<string, unknown>> }> {
  const logs: Array<Record<string, unknown>> = [];
  const cfg = await resolveAgentConfig({ once: true, ...flags });
  const d = await AgentDaemon.open(cfg, {
    collect: collectManifest, loadRules: (dirs) => loadRuleSet(dirs),
    log: jsonLogger((l) => { logs.push(JSON.parse(l) as Record<string, unknown>); }),
  });
  t.teardown(() => d.close());
  return { d, logs };
}

const never = new AbortController().signal;

t.test('enrolls once, sends the full manifest, then only digests while nothing changes', async (t) => {
  const s = await setup(t);
  const c = await startCollector(join(s.dir, 'drift.db'));
  t.teardown(() => c.close());
  const { d } = await daemon(t, { collector: c.url, 'enroll-secret-file': s.secret, root: s.root, 'state-dir': s.stateDir });
  t.equal(await d.runOnce(never), 0, 'first report delivered');
  const key = await stat(join(s.stateDir, 'node-key.json'));
  t.equal(key.mode & 0o777, 0o600, 'the node key is private');
  t.equal(await d.runOnce(never), 0, 'second report delivered');
  const [first, second] = c.received;
  t.ok(first?.manifest, 'first report carries the manifest');
  t.equal(second?.manifest, false, 'second report carries no manifest');
  t.equal(second?.sections, null, 'nor sections');
  t.ok((second?.bytes ?? Infinity) < 2048 && (second?.bytes ?? 0) < (first?.bytes ?? 0) / 2, `digest-only body is small (${second?.bytes} vs ${first?.bytes} bytes)`);
  t.ok((second?.seq ?? 0) > (first?.seq ?? 0), 'seq increases');
  t.same(c.store.reportSeqs('0123456789abcdef0123456789abcdef'), [first?.seq, second?.seq], 'the collector stored both');
  t.same(await d.spool.seqs(), [], 'the spool is empty');

  // A file changes: the next report carries the files section only.
  await writeFile(join(s.root, 'etc/motd'), 'Changed.\n');
  t.equal(await d.runOnce(never), 0);
  t.equal(c.received[2]?.manifest, false, 'no full manifest for one changed section');
  t.same(c.received[2]?.sections, ['files'], 'only the files section');
  // A package changes too: both sections changed, which is the whole manifest.
  await writeFile(join(s.root, 'etc/motd'), 'Changed again.\n');
  await writeFile(join(s.root, 'var/lib/dpkg/status'), 'Package: hello\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.10-4\nDescription: hello\n');
  t.equal(await d.runOnce(never), 0);
  t.equal(c.received[3]?.manifest, true, 'every section changed → full manifest');
});

t.test('collector down: reports spool (exit 2), then arrive in order', async (t) => {
  const s = await setup(t);
  const down = `http://127.0.0.1:${await closedPort()}`;
  const a = await daemon(t, { collector: down, 'enroll-secret-file': s.secret, root: s.root, 'state-dir': s.stateDir });
  t.equal(await a.d.runOnce(never), 2, 'not delivered → 2');
  t.equal(await a.d.runOnce(never), 2);
  await writeFile(join(s.root, 'etc/motd'), 'Changed while away.\n');
  t.equal(await a.d.runOnce(never), 2);
  const spooled = await a.d.spool.seqs();
  t.equal(spooled.length, 3, 'three reports spooled');
  t.ok(a.logs.some((l) => l['msg'] === 'collector unreachable' && /ECONNREFUSED/.test(String(l['reason']))), 'the log says why');
  await a.d.close();

  const c = await startCollector(join(s.dir, 'drift.db'));
  t.teardown(() => c.close());
  const b = await daemon(t, { collector: c.url, 'enroll-secret-file': s.secret, root: s.root, 'state-dir': s.stateDir });
  t.equal(await b.d.runOnce(never), 0, 'delivered');
  const seqs = c.received.map((r) => r.seq);
  t.same(seqs.slice(0, 3), spooled, 'spooled reports first, in seq order');
  t.equal(seqs.length, 4, 'then the new one');
  t.same(c.received.map((r) => r.manifest), [true, false, false, false], 'full, digests, files section, digests');
  t.same(c.received[2]?.sections, ['files']);
  t.same(c.store.reportSeqs('0123456789abcdef0123456789abcdef'), seqs, 'the collector stored all four');
  t.same(await b.d.spool.seqs(), []);
});

t.test('a full spool drops the oldest, counts them, and the next delivered report says so', async (t) => {
  const s = await setup(t);
  const down = `http://127.0.0.1:${await closedPort()}`;
  const a = await daemon(t, { collector: down, 'enroll-secret-file': s.secret, root: s.root, 'state-dir': s.stateDir, 'spool-max': 2 });
  for (let i = 0; i < 5; i++) t.equal(await a.d.runOnce(never), 2);
  const kept = await a.d.spool.seqs();
  t.equal(kept.length, 2, 'bounded at 2');
  t.equal(a.d.state.spoolDropped, 3, 'three dropped and counted');
  t.ok(a.logs.some((l) => l['msg'] === 'spool full: oldest reports dropped'), 'and logged');
  await a.d.close();
  const persisted = JSON.parse(await readFile(join(s.stateDir, 'state.json'), 'utf8')) as { spoolDropped: number };
  t.equal(persisted.spoolDropped, 3, 'the count survives a restart');

  const c = await startCollector(join(s.dir, 'drift.db'));
  t.teardown(() => c.close());
  const b = await daemon(t, { collector: c.url, 'enroll-secret-file': s.secret, root: s.root, 'state-dir': s.stateDir, 'spool-max': 2 });
  t.equal(await b.d.runOnce(never), 0);
  // The spool held 2; the new run put a third and dropped one more: 4 dropped in all.
  t.equal(c.received[0]?.spoolDropped, 4, 'the first delivered report announces the drops');
  t.equal(c.received[1]?.spoolDropped, undefined, 'only once');
  t.equal(b.d.state.spoolDropped, 0, 'and the count is cleared');
});

t.test('a lost node key or a collector that forgot the host: enroll again, resend what it needs', async (t) => {
  const s = await setup(t);
  const c = await startCollector(join(s.dir, 'drift.db'));
  t.teardown(() => c.close());
  const a = await daemon(t, { collector: c.url, 'enroll-secret-file': s.secret, root: s.root, 'state-dir': s.stateDir });
  t.equal(await a.d.runOnce(never), 0);
  await rm(join(s.stateDir, 'node-key.json'));
  // The host id is bound to its first enrollment: without its key, an operator approves.
  t.equal(await a.d.runOnce(never), 2, 'the enrollment secret alone does not re-key an enrolled host');
  t.ok(a.logs.some((l) => l['level'] === 'error' && /^enrollment refused by the collector \(403 /.test(String(l['msg'])) && /already enrolled/.test(String(l['msg']))), 'refusal logged with the reason');
  const hostId = c.store.listHosts()[0]?.id ?? '';
  const approve = await fetch(`${c.url}/v1/hosts/${encodeURIComponent(hostId)}/reenroll`, { method: 'POST', headers: { authorization: 'Bearer admin-t0ken' } });
  t.equal(approve.status, 200, 'operator approval');
  t.equal(await a.d.runOnce(never), 0, 'enrolled again and delivered');
  t.equal(a.logs.filter((l) => l['msg'] === 'enrolled').length, 2);
  t.equal(c.received[1]?.manifest, false, 'the collector still has the manifest: digests only');
  await a.d.close();

  // A new collector (new database) does not know the key (401) nor the manifest (need).
  const c2 = await startCollector(join(s.dir, 'drift2.db'));
  t.teardown(() => c2.close());
  // Same URL is needed for the key to be reused: state keys are per collector URL; emulate a
  // collector that lost its database by pointing the stored key at the new URL.
  const key = JSON.parse(await readFile(join(s.stateDir, 'node-key.json'), 'utf8')) as Record<string, string>;
  await writeFile(join(s.stateDir, 'node-key.json'), JSON.stringify({ ...key, collector: c2.url }), { mode: 0o600 });
  const st = JSON.parse(await readFile(join(s.stateDir, 'state.json'), 'utf8')) as { lastAccepted: Record<string, unknown> };
  await writeFile(join(s.stateDir, 'state.json'), JSON.stringify({ ...st, lastAccepted: { ...st.lastAccepted, collector: c2.url } }), { mode: 0o600 });
  const b = await daemon(t, { collector: c2.url, 'enroll-secret-file': s.secret, root: s.root, 'state-dir': s.stateDir });
  t.equal(await b.d.runOnce(never), 0, 'delivered');
  const msgs = b.logs.map((l) => l['msg']);
  t.ok(msgs.includes('node key refused; enrolling again'), '401 → re-enrolled');
  t.ok(msgs.includes('collector needs sections'), 'digests unknown → need');
  // The 401 is answered from the headers, before the body is read: the hook never sees it.
  t.same(c2.received.map((r) => r.manifest), [false, true], 'digests (need), then the manifest');
  t.equal(new Set(c2.received.map((r) => r.seq)).size, 1, 'both with the same seq');
});

t.test('a report the collector refuses for good is dropped, not retried for ever', async (t) => {
  const s = await setup(t);
  const c = await startCollector(join(s.dir, 'drift.db'));
  t.teardown(() => c.close());
  // The collector knows image img-1 by another baseline than the one the host is stamped with: 422.
  const a0 = await daemon(t, { collector: c.url, 'enroll-secret-file': s.secret, root: s.root, 'state-dir': join(s.dir, 'bake-state') });
  const manifest = await collectManifest({ root: s.root, proc: null, rules: await loadRuleSet([]), stateDir: null, forceRehash: false }, { hostname: 'bake', machineId: 'bake', image: { id: 'img-1' } });
  const { pushBaseline } = await import('../../agent/transport/client.js');
  await pushBaseline(c.url, 'admin-t0ken', manifest);
  await a0.d.close();
  const { mkdir } = await import('node:fs/promises');
  await mkdir(join(s.root, 'etc/drift'), { recursive: true });
  await writeFile(join(s.root, 'etc/drift/image.json'), JSON.stringify({ schema: 'drift.image/v1', id: 'img-1', baselineDigest: `sha256:${'9'.repeat(64)}`, bakedAt: '2026-01-01T00:00:00Z' }));

  const down = `http://127.0.0.1:${await closedPort()}`;
  const a = await daemon(t, { collector: down, 'enroll-secret-file': s.secret, root: s.root, 'state-dir': s.stateDir });
  t.equal(await a.d.runOnce(never), 2, 'spooled while down');
  await a.d.close();
  const b = await daemon(t, { collector: c.url, 'enroll-secret-file': s.secret, root: s.root, 'state-dir': s.stateDir });
  t.equal(await b.d.runOnce(never), 2, 'refused → 2');
  const refusals = b.logs.filter((l) => /refused by the collector; dropping/.test(String(l['msg'])));
  t.equal(refusals.length, 2, 'the spooled report and the new one, each refused once');
  t.equal(refusals[0]?.['status'], 422);
  t.same(await b.d.spool.seqs(), [], 'both dropped: nothing left to retry');
  t.equal(c.received.length, 2, 'exactly two report requests');
});

t.test('the state folder is locked against a second agent', async (t) => {
  const s = await setup(t);
  await daemon(t, { collector: 'http://127.0.0.1:1', 'enroll-secret-file': s.secret, root: s.root, 'state-dir': s.stateDir });
  await t.rejects(daemon(t, { collector: 'http://127.0.0.1:1', 'enroll-secret-file': s.secret, root: s.root, 'state-dir': s.stateDir }),
    { code: 'DRIFT_ERR_USAGE', message: new RegExp(`another drift agent \\(pid ${process.pid}\\)`) });
});

t.test('SIGTERM while waiting for the next interval: exit 0 at once', async (t) => {
  const s = await setup(t);
  const c = await startCollector(join(s.dir, 'drift.db'));
  t.teardown(() => c.close());
  const child = spawnAgent(['--collector', c.url, '--enroll-secret-file', s.secret, '--root', s.root, '--state-dir', s.stateDir, '--interval', '1h', '--splay', '0s']);
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
  await waitForLog(child, /^report accepted$/);
  const done = exited(child);
  child.kill('SIGTERM');
  t.same(await done, { code: 0, signal: null }, 'exited 0 by itself');
  t.same(await readdir(join(s.stateDir, 'spool')), ['sections'], 'nothing left spooled but the section cache');
  t.same((await readdir(join(s.stateDir, 'spool', 'sections'))).map((n) => n.replace(/-[0-9a-f]{64}\./, '.')).sort(), ['files.json.gz', 'packages.json.gz'],
    'which keeps the last report\'s sections for the next one');
  await t.rejects(stat(join(s.stateDir, 'agent.pid')), { code: 'ENOENT' }, 'the lock is released');
});

t.test('SIGTERM while the collector does not answer: the report stays spooled, --once exits 2', async (t) => {
  const s = await setup(t);
  const sockets: Socket[] = [];
  const silent = createServer((sock) => { sockets.push(sock); });
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => { for (const k of sockets) k.destroy(); silent.close(() => r()); }));
  const url = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
  const child = spawnAgent(['--collector', url, '--enroll-secret-file', s.secret, '--root', s.root, '--state-dir', s.stateDir, '--timeout', '10m', '--once']);
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
  await waitForLog(child, /^manifest collected$/);
  // The enrollment request is now in flight and will not be answered for 10 minutes.
  await new Promise<void>((r) => { if (sockets.length > 0) r(); else silent.once('connection', () => r()); });
  const done = exited(child);
  child.kill('SIGTERM');
  t.same(await done, { code: 2, signal: null }, '2: spooled, not delivered');
  const left = (await readdir(join(s.stateDir, 'spool'))).filter((n) => n.startsWith('r-'));
  t.equal(left.length, 1, 'the report waits in the spool');
});

t.test('a stale lock whose pid now runs another program is taken over; a live agent\'s is not', async (t) => {
  const s = await setup(t);
  await mkdir(s.stateDir, { recursive: true });
  const other = spawn('sleep', ['600'], { stdio: 'ignore' });
  t.teardown(() => { other.kill('SIGKILL'); });
  await new Promise<void>((r, j) => { other.once('spawn', () => r()); other.once('error', j); });
  await writeFile(join(s.stateDir, 'agent.pid'), `${other.pid}\n`);
  const { d } = await daemon(t, { collector: 'http://127.0.0.1:1', 'enroll-secret-file': s.secret, root: s.root, 'state-dir': s.stateDir });
  t.equal(other.exitCode, null, 'the pid in the file is alive (sleep, not a drift agent)');
  t.equal((await readFile(join(s.stateDir, 'agent.pid'), 'utf8')).trim(), String(process.pid), 'the lock was taken over');
  await d.close();

  // A live process whose command line is a drift agent's keeps the lock.
  const agent = spawn('sleep', ['600'], { stdio: 'ignore', argv0: 'drift-agent' });
  t.teardown(() => { agent.kill('SIGKILL'); });
  await new Promise<void>((r, j) => { agent.once('spawn', () => r()); agent.once('error', j); });
  t.match(await readFile(`/proc/${agent.pid}/cmdline`, 'utf8'), /^drift-agent\x00600\x00/, 'its command line names a drift agent');
  await writeFile(join(s.stateDir, 'agent.pid'), `${agent.pid}\n`);
  await t.rejects(daemon(t, { collector: 'http://127.0.0.1:1', 'enroll-secret-file': s.secret, root: s.root, 'state-dir': s.stateDir }),
    { code: 'DRIFT_ERR_USAGE', message: new RegExp(`another drift agent \\(pid ${agent.pid}\\)`) });
});

t.test('a resent report the collector already committed (409) counts as delivered', async (t) => {
  const s = await setup(t);
  const c = await startCollector(join(s.dir, 'drift.db'));
  t.teardown(() => c.close());
  const { d, logs } = await daemon(t, { collector: c.url, 'enroll-secret-file': s.secret, root: s.root, 'state-dir': s.stateDir });
  const seq = await d.collectAndSpool();
  const copy = await d.spool.get(seq);
  if (!copy) throw new Error('spooled report unreadable');
  t.same((await d.drain(never)).delivered, [seq], 'delivered once');
  // The answer was lost: the agent still holds the report, with drops to announce.
  await d.spool.put(copy);
  await d.state.addDropped(2);
  const r = await d.drain(never);
  t.equal(c.received.at(-1)?.seq, seq, 'the same seq was sent again');
  t.same(r.delivered, [seq], 'counted as delivered');
  t.same(r.refused, []);
  t.same(await d.spool.seqs(), [], 'and taken off the spool');
  t.equal(d.state.spoolDropped, 0, 'the drop count was acknowledged');
  const line = logs.find((l) => l['msg'] === 'report already received by the collector; counted as delivered');
  t.equal(line?.['level'], 'info', 'logged at info');
  t.same(logs.filter((l) => l['level'] === 'error'), [], 'no error logged');
});

t.test('a spooled report that cannot be read for a disk error stays spooled', async (t) => {
  const s = await setup(t);
  const c = await startCollector(join(s.dir, 'drift.db'));
  t.teardown(() => c.close());
  const { d, logs } = await daemon(t, { collector: c.url, 'enroll-secret-file': s.secret, root: s.root, 'state-dir': s.stateDir });
  const seq = await d.collectAndSpool();
  const spoolDir = join(s.stateDir, 'spool');
  const name = (await readdir(spoolDir)).find((n) => n.startsWith('r-')) as string;
  // EISDIR stands in for EIO/EMFILE: a read error that is not bad data.
  await rm(join(spoolDir, name));
  await mkdir(join(spoolDir, name));
  t.equal(await d.runOnce(never), 2, 'not delivered → 2');
  t.same((await d.spool.seqs())[0], seq, 'the unreadable report is kept');
  t.equal((await d.spool.seqs()).length, 2, 'and so is the new one, behind it');
  t.equal(d.state.spoolDropped, 0, 'nothing dropped');
  t.ok(logs.some((l) => l['msg'] === 'cannot read spooled report; keeping it for the next attempt' && /EISDIR/.test(String(l['reason']))));
  t.equal(c.received.length, 0, 'nothing sent out of order');
});

t.test('--spool-max-bytes bounds the spool by manifest size, and the drops are counted', async (t) => {
  const s = await setup(t);
  const down = `http://127.0.0.1:${await closedPort()}`;
  const a = await daemon(t, { collector: down, 'enroll-secret-file': s.secret, root: s.root, 'state-dir': s.stateDir, 'spool-max-bytes': '1' });
  for (let i = 0; i < 3; i++) {
    await writeFile(join(s.root, 'etc/motd'), `Change ${i}.\n`);
    t.equal(await a.d.runOnce(never), 2);
  }
  t.equal((await a.d.spool.seqs()).length, 1, 'only the newest report is kept');
  t.equal((await readdir(join(s.stateDir, 'spool'))).filter((n) => n.startsWith('m-')).length, 1, 'with its manifest alone');
  t.equal(a.d.state.spoolDropped, 2, 'two dropped and counted');
  t.ok(a.logs.some((l) => l['msg'] === 'spool full: oldest reports dropped' && l['spoolMaxBytes'] === 1), 'and logged');
});

t.test('the agent collects the scope baked into the image, not the rule files the host has now', async (t) => {
  const s = await setup(t);
  await mkdir(join(s.root, 'srv'), { recursive: true });
  await writeFile(join(s.root, 'srv', 'app.conf'), 'a=1\n');
  const bake = join(s.dir, 'bake-rules');
  await mkdir(bake);
  await writeFile(join(bake, 'srv.yaml'), 'watch:\n  - path: /srv/**\n');
  const baked = await run(process.execPath, [driftBin, 'baseline', '--root', s.root, '--image-id', 'img', '--rules', bake,
    '--out', join(s.root, 'etc', 'drift', 'baseline.json'), '--stamp', '--state-dir', join(s.dir, 'bake-state')]);
  t.equal(baked.code, 0, baked.stderr);
  // The host's own rules now: no /srv, and /etc ignored (acknowledged as broad).
  const site = join(s.dir, 'site');
  await mkdir(site);
  await writeFile(join(site, 'quiet.yaml'), 'ignore:\n  - path: /etc/**\n    why: quiet\n    broad: true\n');
  const flags = { collector: 'http://127.0.0.1:9', 'enroll-secret-file': s.secret, root: s.root, 'state-dir': s.stateDir, rules: [site] };
  const { d, logs } = await daemon(t, flags);
  const entry = await d.spool.get(await d.collectAndSpool());
  const paths = Object.keys(entry?.manifest.files ?? {});
  t.ok(paths.includes('/srv/app.conf'), 'the baked watch rule applies');
  t.ok(paths.includes('/etc/hostname'), 'the host\'s ignore rule does not');
  t.ok(paths.includes('/etc/drift'), 'drift\'s own folder is watched');
  t.notOk(paths.includes('/etc/drift/baseline.json'), 'the baseline and stamp written after the bake are not');
  t.ok(logs.some((l) => l['msg'] === 'collecting the scope baked into the image'));
  await d.close();

  // A baseline file that is not the one the stamp names is not taken for the image's.
  const b = JSON.parse(await readFile(join(s.root, 'etc', 'drift', 'baseline.json'), 'utf8')) as { scope: { watch: Array<{ path: string }> } };
  b.scope.watch = [{ path: '/nothing' }];
  await writeFile(join(s.root, 'etc', 'drift', 'baseline.json'), JSON.stringify(b));
  const other = await daemon(t, { ...flags, 'state-dir': join(s.dir, 'state2') });
  const swapped = await other.d.spool.get(await other.d.collectAndSpool());
  t.notOk(Object.keys(swapped?.manifest.files ?? {}).includes('/srv/app.conf'), 'the host\'s rules are used');
  t.match(other.logs.find((l) => l['level'] === 'warn'), { msg: /no baked scope/, reason: /but the image stamp names sha256:/ });
});

t.test('the daemon: a refused enrolment secret is an error with a metric, and the loop waits for the next collection', async (t) => {
  const s = await setup(t);
  const c = await startCollector(join(s.dir, 'drift.db'));
  t.teardown(() => c.close());
  const wrong = join(s.dir, 'wrong-secret');
  await writeFile(wrong, 'not-the-enrollment-secret\n', { mode: 0o600 });
  const cfg = await resolveAgentConfig({ collector: c.url, 'enroll-secret-file': wrong, root: s.root, 'state-dir': s.stateDir, interval: '1h', splay: '0s' });
  const logs: Array<Record<string, unknown>> = [];
  let onFatal: () => void = () => undefined;
  const fatal = new Promise<void>((r) => { onFatal = r; });
  const d = await AgentDaemon.open(cfg, {
    collect: collectManifest, loadRules: (dirs) => loadRuleSet(dirs),
    log: jsonLogger((l) => { const j = JSON.parse(l) as Record<string, unknown>; logs.push(j); if (j['msg'] === 'retrying later' || /^delivery stopped by a configuration error/.test(String(j['msg']))) onFatal(); }),
  });
  t.teardown(() => d.close());
  const ac = new AbortController();
  const loop = d.runLoop(ac.signal);
  await fatal;
  // The drain wrote the metrics file before the loop said it waits for the next collection.
  const metrics = await readFile(join(s.stateDir, AGENT_METRICS_FILE), 'utf8');
  ac.abort();
  await loop;
  const errors = logs.filter((l) => l['level'] === 'error');
  t.match(errors[0], { fatal: true, configErrors: 1, msg: /^enrollment refused: the collector does not accept the enrollment secret in .*wrong-secret/ });
  t.notOk(logs.some((l) => l['msg'] === 'retrying later'), 'no backoff retries: retrying cannot help');
  t.match(metrics, /\ndrift_agent_config_errors_total 1\n/);
  t.match(metrics, /\ndrift_agent_config_error 1\n/);
  t.match(metrics, /\ndrift_agent_spooled_reports 1\n/);
  t.equal(c.received.length, 0, 'nothing was delivered');
});

t.test('a poisoned spool blob is quarantined once, counted, and never blocks the reports after it', async (t) => {
  const s = await setup(t);
  const down = `http://127.0.0.1:${await closedPort()}`;
  const a = await daemon(t, { collector: down, 'enroll-secret-file': s.secret, root: s.root, 'state-dir': s.stateDir });
  const poisoned = await a.d.collectAndSpool();
  await writeFile(join(s.root, 'etc/motd'), 'Changed.\n');
  const good = await a.d.collectAndSpool();
  const spoolDir = join(s.stateDir, 'spool');
  // The first report's manifest blob, overwritten with bytes that are not gzip.
  const entryName = (await readdir(spoolDir)).find((n) => n.startsWith(`r-${String(poisoned).padStart(20, '0')}-`)) as string;
  await writeFile(join(spoolDir, `m-${entryName.slice(23, 87)}.json.gz`), 'not gzip: a torn or hostile write');
  await a.d.close();

  const c = await startCollector(join(s.dir, 'drift.db'));
  t.teardown(() => c.close());
  const b = await daemon(t, { collector: c.url, 'enroll-secret-file': s.secret, root: s.root, 'state-dir': s.stateDir });
  const r = await b.d.drain(never);
  t.same(r.delivered, [good], 'the report after the poisoned one is delivered');
  t.same(c.received.map((x) => x.seq), [good], 'the poisoned one is never sent');
  t.equal(c.received[0]?.spoolDropped, 1, 'and the collector is told one report was lost');
  t.equal(b.d.spool.quarantinedReports, 1, 'quarantined once');
  t.equal((await b.d.spool.quarantined()).length, 2, 'its entry and its blob are kept aside');
  const metrics = await readFile(join(s.stateDir, AGENT_METRICS_FILE), 'utf8');
  t.match(metrics, /^drift_agent_spool_quarantined_total 1$/m, 'counted in the metrics file');
  t.match(metrics, /^drift_agent_spool_quarantine_files 2$/m);
  t.ok(b.logs.some((l) => l['msg'] === 'spooled report unreadable; dropping it' && l['seq'] === poisoned && l['quarantinedTotal'] === 1), 'and logged with the count');
  // The next pass neither finds nor counts it again.
  await writeFile(join(s.root, 'etc/motd'), 'Changed again.\n');
  t.equal(await b.d.runOnce(never), 0, 'the next report is delivered');
  t.equal(b.d.spool.quarantinedReports, 1, 'still counted once');
  t.match(await readFile(join(s.stateDir, AGENT_METRICS_FILE), 'utf8'), /^drift_agent_spool_quarantined_total 1$/m);
  t.equal(c.received.length, 2);
});
