import t from 'tap';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { drift } from '../helpers/run.js';
import { exited, makeRoot, spawnAgent, startCollector } from './helpers.js';
import { AGENT_METRICS_FILE } from '../../agent/daemon.js';

/**
 * An operator's day against a real collector (real SQLite file, 127.0.0.1): bake and
 * stamp, push the baked file, run agents, find hosts by name, and agents that can
 * never deliver saying so.
 */

const dir = await mkdtemp(join(tmpdir(), 'drift-operator-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));
const c = await startCollector(join(dir, 'drift.db'), { enrollSecret: 'enroll-s3cret-operator', adminToken: 'admin-t0ken-operator' });
t.teardown(() => c.close());
const enroll = join(dir, 'enroll');
const admin = join(dir, 'admin');
const wrongSecret = join(dir, 'wrong');
await writeFile(enroll, 'enroll-s3cret-operator\n', { mode: 0o600 });
await writeFile(admin, 'admin-t0ken-operator\n', { mode: 0o600 });
await writeFile(wrongSecret, 'not-the-secret\n', { mode: 0o600 });
const adminArgs = ['--collector', c.url, '--admin-token-file', admin];

const must = async (args: string[]): Promise<string> => {
  const r = await drift(args);
  if (r.code !== 0) throw new Error(`drift ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stderr;
};

// Bake: a signed, stamped image; the baseline is written to a file only.
await must(['keygen', '--out', join(dir, 'bake')]);
const image = await makeRoot(join(dir, 'image'), { machineId: 'f'.repeat(32), hostname: 'bake' });
const baselineFile = join(dir, 'baseline.json');
await must(['baseline', '--root', image, '--image-id', 'img-A', '--sign-key', join(dir, 'bake.key'), '--stamp', '--out', baselineFile, '--state-dir', join(dir, 'bake-state')]);

async function host(name: string, machineId: string): Promise<string> {
  const root = join(dir, `root-${name}-${machineId.slice(0, 4)}`);
  // A copy keeps the image's times, as a disk made from the image does (mtime is compared).
  await cp(image, root, { recursive: true, preserveTimestamps: true });
  await writeFile(join(root, 'etc/machine-id'), `${machineId}\n`);
  await writeFile(join(root, 'etc/hostname'), `${name}\n`);
  return root;
}

async function agentOnce(root: string, secret: string, state: string): Promise<{ code: number | null; stderr: string }> {
  const child = spawnAgent(['--collector', c.url, '--enroll-secret-file', secret, '--root', root, '--state-dir', state, '--once', '--splay', '0s']);
  let stderr = '';
  child.stderr?.on('data', (b: Buffer) => { stderr += b.toString(); });
  const { code } = await exited(child);
  return { code, stderr };
}

t.test('drift baseline push FILE: verified here first, stored with the digest the image was stamped with', async (t) => {
  const tampered = join(dir, 'tampered.json');
  await writeFile(tampered, (await readFile(baselineFile, 'utf8')).replace('PermitRootLogin no', 'PermitRootLogin yes'));
  const refused = await drift(['baseline', 'push', tampered, ...adminArgs, '--pubkey', join(dir, 'bake.pub')]);
  t.equal(refused.code, 2);
  t.match(refused.stderr, /does not verify with key [0-9a-f]{16}: the content was changed after signing/);
  t.equal(c.store.getBaseline('img-A'), undefined, 'nothing was uploaded');

  const privateKey = await drift(['baseline', 'push', baselineFile, ...adminArgs, '--pubkey', join(dir, 'bake.key')]);
  t.equal(privateKey.code, 2);
  t.match(privateKey.stderr, /bake\.key is a private key, not a public key/);

  const pushed = await drift(['baseline', 'push', baselineFile, ...adminArgs, '--pubkey', join(dir, 'bake.pub')]);
  t.equal(pushed.code, 0, pushed.stderr);
  t.match(pushed.stderr, /pushed baseline .*baseline\.json of image img-A .*signature verified by key [0-9a-f]{16}/);
  const stamp = JSON.parse(await readFile(join(image, 'etc/drift/image.json'), 'utf8')) as { baselineDigest: string };
  t.equal(c.store.getBaseline('img-A')?.digest, stamp.baselineDigest, 'the stored digest is the stamped one');
});

t.test('agents of the stamped image are judged against it; hosts are listed and found by name', async (t) => {
  const web1 = await host('web-1', '1'.repeat(32));
  const r = await agentOnce(web1, enroll, join(dir, 'state-web-1'));
  t.equal(r.code, 0, r.stderr);

  const table = await drift(['hosts', ...adminArgs]);
  t.equal(table.code, 0, table.stderr);
  const lines = table.stdout.trimEnd().split('\n');
  t.match(lines[0], /^HOST +ID +IMAGE +STATUS +FINDINGS +LAST SEEN +SNOWFLAKE$/);
  t.match(lines[1], new RegExp(`^web-1 +${'1'.repeat(32)} +img-A +clean +0 +\\d{4}-\\d\\d-\\d\\dT\\S+ +-$`));
  const json = await drift(['hosts', ...adminArgs, '--format', 'json']);
  const parsed = JSON.parse(json.stdout) as { schema: string; hosts: Array<{ id: string; hostname: string; status: string }> };
  t.equal(parsed.schema, 'drift.hosts/v1');
  t.same(parsed.hosts.map((h) => [h.hostname, h.id, h.status]), [['web-1', '1'.repeat(32), 'clean']]);

  const byName = await drift(['scan', ...adminArgs, '--host', 'web-1']);
  t.equal(byName.code, 0, byName.stderr);
  t.match(byName.stdout, new RegExp(`^drift: no drift on web-1 \\(${'1'.repeat(32)}\\) against image img-A`));

  // A second host of the same name (a replacement that kept it): the name is ambiguous.
  const twin = await host('web-1', '2'.repeat(32));
  t.equal((await agentOnce(twin, enroll, join(dir, 'state-web-1b'))).code, 0);
  const ambiguous = await drift(['scan', ...adminArgs, '--host', 'web-1']);
  t.equal(ambiguous.code, 2);
  t.match(ambiguous.stderr, /^drift: 2 hosts on .* are named "web-1"; give one id with --host:\n/);
  t.match(ambiguous.stderr, new RegExp(`\\n  ${'1'.repeat(32)}  image img-A  clean`));
  t.match(ambiguous.stderr, new RegExp(`\\n  ${'2'.repeat(32)}  image img-A  clean`));
  const byId = await drift(['scan', ...adminArgs, '--host', '2'.repeat(32)]);
  t.equal(byId.code, 0, byId.stderr);
  const unknown = await drift(['scan', ...adminArgs, '--host', 'web-9']);
  t.equal(unknown.code, 2);
  t.match(unknown.stderr, /no host with id or hostname "web-9" .*drift hosts --collector/);

  const fleet = await drift(['scan', ...adminArgs, '--fleet']);
  t.equal(fleet.code, 0, fleet.stderr);
  t.match(fleet.stdout, /^drift fleet: 2 hosts, 0 drifted/);
  t.match(fleet.stdout, new RegExp(`\\nweb-1 +${'2'.repeat(32)} +img-A +clean`), 'the text form shows host ids');
  t.match(fleet.stdout, /image img-A: 2 hosts, 0 drifted/);
});

t.test('a root without a stamp is warned about, and the collector view says to stamp the image', async (t) => {
  const bare = await host('bare-1', '3'.repeat(32));
  await rm(join(bare, 'etc/drift/image.json'));
  const r = await agentOnce(bare, enroll, join(dir, 'state-bare'));
  t.equal(r.code, 0, r.stderr);
  t.match(r.stderr, /"level":"warn".*"msg":"this root has no image stamp: the collector cannot tell which baseline to compare it with; bake the image with drift baseline --stamp"/);
  const view = await drift(['scan', ...adminArgs, '--host', 'bare-1']);
  t.equal(view.code, 2);
  t.match(view.stderr, /reports no image: its root has no stamp \(etc\/drift\/image\.json\); bake its image with drift baseline --stamp/);
});

t.test('a wrong enrolment secret is a configuration error: said once, exit 2, counted, never "delivered by the next run"', async (t) => {
  const root = await host('web-7', '7'.repeat(32));
  const loose = join(dir, 'loose-wrong');
  await writeFile(loose, 'not-the-secret\n', { mode: 0o644 });
  const state = join(dir, 'state-web-7');
  const r = await agentOnce(root, loose, state);
  t.equal(r.code, 2);
  const logs = r.stderr.trim().split('\n').map((l) => JSON.parse(l) as { level: string; msg: string; fatal?: boolean });
  t.equal(logs.filter((l) => /readable by group or others/.test(l.msg)).length, 1, 'the secret-permission warning is given once');
  t.ok(logs.some((l) => l.level === 'error' && l.fatal === true && /^enrollment refused: the collector does not accept the enrollment secret in .*loose-wrong/.test(l.msg)));
  t.ok(logs.some((l) => l.level === 'error' && /^cannot deliver to the collector: .*; the report stays spooled until this is fixed$/.test(l.msg)));
  t.notOk(logs.some((l) => /delivered by the next run/.test(l.msg)), 'no promise a next run cannot keep');
  const metrics = await readFile(join(state, AGENT_METRICS_FILE), 'utf8');
  t.match(metrics, /\ndrift_agent_config_errors_total 1\n/);
  t.match(metrics, /\ndrift_agent_config_error 1\n/);
  t.match(metrics, /\ndrift_agent_spooled_reports 1\n/);
});

t.test('an unreachable collector is transient: the report is spooled for the next run', async (t) => {
  const root = await host('web-8', '8'.repeat(32));
  const child = spawnAgent(['--collector', 'http://127.0.0.1:1', '--enroll-secret-file', enroll, '--root', root, '--state-dir', join(dir, 'state-web-8'), '--once']);
  let stderr = '';
  child.stderr?.on('data', (b: Buffer) => { stderr += b.toString(); });
  t.equal((await exited(child)).code, 2);
  t.match(stderr, /report spooled; it will be delivered by the next run/);
  t.notMatch(stderr, /"fatal":true/);
});

t.test('a host id with terminal escapes is printed escaped when the collector calls the host silent', async (t) => {
  // Host ids are any string a host enrolled with; one that clears the screen must not reach the terminal raw.
  const quiet = await startCollector(join(dir, 'quiet.db'), { enrollSecret: 'enroll-s3cret-operator', adminToken: 'admin-t0ken-operator', silentAfterMs: 1 });
  t.teardown(() => quiet.close());
  const root = await host('web-esc', '8'.repeat(32));
  const evil = 'web-esc\x1b[2J\x1b]0;owned\x07';
  const child = spawnAgent(['--collector', quiet.url, '--enroll-secret-file', enroll, '--root', root, '--state-dir', join(dir, 'state-esc'), '--host-id', evil, '--once', '--splay', '0s']);
  let stderr = '';
  child.stderr?.on('data', (b: Buffer) => { stderr += b.toString(); });
  t.equal((await exited(child)).code, 0, stderr);
  const view = await drift(['scan', '--collector', quiet.url, '--admin-token-file', admin, '--host', evil]);
  t.match(view.stderr, /drift: warning: host web-esc\\x1b\[2J\\x1b\]0;owned\\x07 is silent/, 'the id is shown with its escapes spelled out');
  t.notOk(/[\x1b\x07]/.test(view.stderr + view.stdout), 'no escape or bell byte reaches the terminal');
});
