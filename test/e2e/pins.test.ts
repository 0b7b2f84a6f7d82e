import t from 'tap';
import { appendFile, mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BaselineSchema } from '../../agent/protocol/manifest.js';
import { fetchFleet, fetchHost, fetchPins, pushBaseline, repinHost } from '../../agent/transport/client.js';
import { drift } from '../helpers/run.js';
import { bootInstance, KEY_A, KEY_B, makeImage } from '../helpers/firstboot.js';
import { startCollector } from './helpers.js';
import { DEFAULT_COHORT_OPTIONS } from '../../server/fleet/cohorts.js';

/**
 * First boot happens once, through a real collector (in-process app over a real
 * SQLite file, listening on 127.0.0.1) and `drift agent --once` processes: the first
 * report pins, later reports are held to the pins, a re-pin through the admin API
 * (and `drift pins`) is journaled and makes the next report clean, and a host whose
 * pinned keys differ from its cohort's is a snowflake.
 */

const work = await mkdtemp(join(tmpdir(), 'drift-e2e-pins-'));
t.teardown(() => rm(work, { recursive: true, force: true }));
const ADMIN = 'admin-t0ken-for-pins';
const collector = await startCollector(join(work, 'collector', 'drift.db'), { enrollSecret: 'enroll-s3cret', adminToken: ADMIN });
t.teardown(() => collector.close());
const enroll = join(work, 'enroll.secret');
const admin = join(work, 'admin.token');
await writeFile(enroll, 'enroll-s3cret\n', { mode: 0o600 });
await writeFile(admin, `${ADMIN}\n`, { mode: 0o600 });

const image = await makeImage(join(work, 'image'));
const made = await drift(['baseline', '--root', image, '--image-id', 'img-pins', '--stamp', '--out', join(work, 'baseline.json'), '--state-dir', join(work, 'bake-state')]);
if (made.code !== 0) throw new Error(`drift baseline: ${made.stderr}`);
await pushBaseline(collector.url, ADMIN, BaselineSchema.parse(JSON.parse(await readFile(join(work, 'baseline.json'), 'utf8'))));

let n = 0;
interface Host { id: string; root: string; state: string }
async function launch(boot: { keys: string[]; metadataKeys: string[] | null }): Promise<Host> {
  n++;
  const id = `${n}`.padStart(32, 'e');
  const root = await bootInstance(image, join(work, `host-${n}`), { machineId: id, hostname: `app-${n}`, ...boot });
  return { id, root, state: join(work, `agent-${n}`) };
}
async function report(h: Host): Promise<void> {
  const r = await drift(['agent', '--once', '--collector', collector.url, '--enroll-secret-file', enroll, '--root', h.root, '--state-dir', h.state, '--splay', '0s']);
  if (r.code !== 0) throw new Error(`drift agent --once for ${h.root} exited ${r.code}: ${r.stderr}`);
}
interface Finding { kind: string; key: string; change: string; severity: string; explanation: string; pinned?: { firstSeen: string } }
async function findingsOf(h: Host): Promise<Finding[]> {
  return (await fetchHost(collector.url, ADMIN, h.id))['findings'] as Finding[];
}
const keysPath = '/home/admin/.ssh/authorized_keys';
const keysFile = 'home/admin/.ssh/authorized_keys';

t.test('the default user with a key the instance metadata does not list: critical from the first report', async (t) => {
  const h = await launch({ keys: [KEY_A, KEY_B], metadataKeys: [KEY_A] });
  await report(h);
  const findings = await findingsOf(h);
  t.same(findings.map((f) => f.key), [keysPath], 'only the keys file');
  t.equal(findings[0]?.severity, 'critical');
  t.match(findings[0]?.explanation, /1 key not in the instance's metadata .*intruder/);
  const host = await fetchHost(collector.url, ADMIN, h.id);
  t.match(host['firstBoot'], { keys: 'verified', user: 'admin' });
});

t.test('clean first report; a key appended and /etc/hosts rewritten later are reported; a re-pin makes the next report clean, journaled', async (t) => {
  const h = await launch({ keys: [KEY_A], metadataKeys: null });
  await report(h);
  t.same(await findingsOf(h), [], 'the first report is clean');
  const pins = await fetchPins(collector.url, ADMIN, h.id);
  t.match(pins['firstBoot'], { keys: 'trust', user: 'admin' }, 'keys pinned on trust: no instance metadata');
  const paths = (pins['pins'] as Array<{ path: string }>).map((p) => p.path);
  t.ok(paths.includes(keysPath) && paths.includes('/etc/hosts') && paths.includes('/etc/passwd'), `pinned: ${paths.join(', ')}`);
  t.match(pins['journal'], [{ action: 'first-boot', by: null }], 'first boot is journaled');
  const view = await drift(['scan', '--collector', collector.url, '--admin-token-file', admin, '--host', h.id]);
  t.equal(view.code, 0, view.stderr);
  t.match(view.stdout, /first boot pinned \S+ \(8 paths\); SSH keys of admin pinned on trust, not verified: no instance metadata was readable/, 'the collector\'s report says so');

  await appendFile(join(h.root, keysPath.slice(1)), `${KEY_B}\n`);
  await writeFile(join(h.root, 'etc/hosts'), '127.0.0.1 localhost\n127.0.1.1 app-2 cache.internal\n::1 localhost\n');
  await report(h);
  const after = await findingsOf(h);
  t.same(after.map((f) => f.key).sort(), ['/etc/hosts', keysPath]);
  const keys = after.find((f) => f.key === keysPath);
  t.equal(keys?.severity, 'critical');
  t.match(keys?.explanation, /changed after first boot: first seen/);
  t.ok(keys?.pinned?.firstSeen, 'the finding names the pin');

  // The operator accepts the new key through the admin API, and /etc/hosts with drift pins.
  const repinned = await repinHost(collector.url, ADMIN, h.id, { paths: [keysPath], reason: 'second deploy key, CHG-42', by: 'alice' });
  t.same(repinned['changed'], [keysPath]);
  t.equal(repinned['findings'], 1, 'only /etc/hosts is left');
  const cli = await drift(['pins', 'repin', h.id, '--path', '/etc/hosts', '--reason', 'cache alias', '--by', 'bob', '--collector', collector.url, '--admin-token-file', admin]);
  t.equal(cli.code, 0, cli.stderr);
  t.match(cli.stdout, /re-pinned host e+2: 1 pin changed: \/etc\/hosts; 0 findings now/);
  await report(h);
  t.same(await findingsOf(h), [], 'the next report is clean');
  const list = await drift(['pins', 'list', h.id, '--collector', collector.url, '--admin-token-file', admin]);
  t.equal(list.code, 0, list.stderr);
  t.match(list.stdout, /repin by bob: cache alias \(1 path: \/etc\/hosts\)/);
  t.match(list.stdout, /repin by alice: second deploy key, CHG-42 \(1 path: \/home\/admin\/.ssh\/authorized_keys\)/);
  t.match(list.stdout, /first-boot \(\d+ paths\)/);
  t.match(list.stdout, /SSH keys of admin pinned on trust, not verified/);
});

t.test('re-pin: bad requests are refused with what to do, and change nothing', async (t) => {
  const h = await launch({ keys: [KEY_A], metadataKeys: [KEY_A] });
  await report(h);
  const before = await fetchPins(collector.url, ADMIN, h.id);
  const noReason = await repinHost(collector.url, ADMIN, h.id, { reason: ' ' }).then(() => 'accepted', (e: Error) => e.message);
  t.match(noReason, /say why/);
  const relative = await repinHost(collector.url, ADMIN, h.id, { paths: ['etc/hosts'], reason: 'x' }).then(() => 'accepted', (e: Error) => e.message);
  t.match(relative, /an absolute path/);
  const tooMany = await repinHost(collector.url, ADMIN, h.id, { paths: Array.from({ length: 1001 }, (_, i) => `/p${i}`), reason: 'x' }).then(() => 'accepted', (e: Error) => e.message);
  t.match(tooMany, /1000/);
  const unknown = await repinHost(collector.url, ADMIN, 'f'.repeat(32), { reason: 'x' }).then(() => 'accepted', (e: Error) => e.message);
  t.match(unknown, /no host f+ has enrolled/);
  const wrongToken = await repinHost(collector.url, 'not-the-token', h.id, { reason: 'x' }).then(() => 'accepted', (e: Error) => e.message);
  t.match(wrongToken, /admin token refused/);
  t.same(await fetchPins(collector.url, ADMIN, h.id), before, 'pins and journal unchanged');
  const usage = await drift(['pins', 'repin', h.id, '--collector', collector.url, '--admin-token-file', admin]);
  t.equal(usage.code, 2);
  t.match(usage.stderr, /--reason TEXT is required/);
});

t.test('pinning is stable: an unchanged host (resolv.conf rewritten at every boot) stays clean across reports', async (t) => {
  const h = await launch({ keys: [KEY_A], metadataKeys: [KEY_A] });
  await report(h);
  const pinnedAt = ((await fetchPins(collector.url, ADMIN, h.id))['firstBoot'] as { pinnedAt: string }).pinnedAt;
  for (let i = 0; i < 6; i++) {
    // A new state each time, so the collector compares again (not a digests-only report).
    await writeFile(join(h.root, 'etc/resolv.conf'), `nameserver 10.0.0.${i + 2}\n`);
    await report(h);
    t.same(await findingsOf(h), [], `report ${i + 2} is clean`);
  }
  const pins = await fetchPins(collector.url, ADMIN, h.id);
  t.equal((pins['firstBoot'] as { pinnedAt: string }).pinnedAt, pinnedAt, 'pinned once');
  t.equal((pins['journal'] as unknown[]).length, 1, 'one journal entry: first boot');
  t.notOk((pins['pins'] as Array<{ path: string }>).some((p) => p.path === '/etc/resolv.conf'), 'resolv.conf is never pinned');
});

t.test('a host whose pinned keys are rare in its cohort is a snowflake', async (t) => {
  // Its own cohort, big enough that one host in it is rare (at most DEFAULT_COHORT_OPTIONS.rareShare
  // of it), whatever the other tests of this file enrolled before: it passes alone (--grep) too.
  const size = Math.ceil(1 / DEFAULT_COHORT_OPTIONS.rareShare);
  const cohort: Host[] = [];
  for (let i = 0; i < size - 1; i++) cohort.push(await launch({ keys: [KEY_A], metadataKeys: [KEY_A] }));
  // Launched with another key pair: consistent with its own metadata, so no finding — but odd in its cohort.
  const odd = await launch({ keys: [KEY_B], metadataKeys: [KEY_B] });
  // A pinned value includes the file's mtime: on a loaded machine the launches above span
  // several seconds, so give every keys file one first-boot time (as one scaling event does).
  const bootTime = new Date('2026-01-01T00:00:00Z');
  for (const h of [...cohort, odd]) await utimes(join(h.root, keysFile), bootTime, bootTime);
  // Three agents at a time: bounded, and quicker than one by one on a loaded machine.
  const all = [...cohort, odd];
  for (let i = 0; i < all.length; i += 3) await Promise.all(all.slice(i, i + 3).map(report));
  t.same(await findingsOf(odd), [], 'no finding of its own');
  const { cohorts } = await fetchFleet(collector.url, ADMIN);
  const c = cohorts.find((x) => x['imageId'] === 'img-pins') as { snowflakes: Array<{ hostId: string; findings: Array<{ key: string; change: string }>; why: string }> } | undefined;
  const flake = c?.snowflakes.find((s) => s.hostId === odd.id);
  t.ok(flake, `the odd host is a snowflake: ${JSON.stringify(c?.snowflakes.map((s) => s.hostId))}`);
  t.same(flake?.findings, [{ kind: 'file', key: keysPath, change: 'pinned' }]);
  t.match(flake?.why, /first-boot value of \/home\/admin\/.ssh\/authorized_keys \(only this host of \d+ that pinned it/);
  for (const h of cohort) t.notOk(c?.snowflakes.some((s) => s.hostId === h.id && s.findings.some((f) => f.change === 'pinned')), `${h.id} shares the cohort's keys`);
});

t.test('hostile launch keys in a report are refused before anything is stored', async (t) => {
  const enrolled = await fetch(`${collector.url}/v1/enroll`, {
    method: 'POST', headers: { authorization: 'Bearer enroll-s3cret', 'content-type': 'application/json' },
    body: JSON.stringify({ hostId: 'd'.repeat(32), hostname: 'hostile', imageId: 'img-pins' }),
  });
  const { nodeKey } = await enrolled.json() as { nodeKey: string };
  const send = (instanceKeys: unknown) => fetch(`${collector.url}/v1/reports`, {
    method: 'POST', headers: { authorization: `Bearer ${nodeKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ schema: 'drift.report-request/v1', seq: 1, collectedAt: '2026-12-01T00:00:00Z', host: { hostname: 'hostile', machineId: 'd'.repeat(32), instanceKeys }, digests: { root: `sha256:${'0'.repeat(64)}` } }),
  });
  const many = await send({ source: '/run/cloud-init/instance-data.json', keys: Array.from({ length: 101 }, (_, i) => `ssh-ed25519 AAAA${i}`) });
  t.equal(many.status, 400);
  t.match(await many.text(), /host\.instanceKeys\.keys/);
  const long = await send({ source: '/run/cloud-init/instance-data.json', keys: ['x'.repeat(16385)] });
  t.equal(long.status, 400);
  const extraField = await send({ source: 'x', keys: [], trusted: true });
  t.equal(extraField.status, 400, 'unknown fields are refused, not ignored');
  const host = await fetchHost(collector.url, ADMIN, 'd'.repeat(32));
  t.equal(host['lastSeen'], null, 'nothing was stored');
  t.equal(host['firstBoot'], null, 'and nothing pinned');
});
