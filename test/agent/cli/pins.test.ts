import t from 'tap';
import { appendFile, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Report } from '../../../agent/protocol/finding.js';
import { drift } from '../../helpers/run.js';
import { bootInstance, KEY_A, KEY_B, makeImage, writeInstanceData } from '../../helpers/firstboot.js';

/**
 * First boot happens once, as `drift scan` of a root folder sees it: the first scan
 * pins what the expect rules accepted, a later change to a pinned value is drift, and
 * the default user's keys are held to the instance's metadata.
 */

const work = await mkdtemp(join(tmpdir(), 'drift-pins-'));
t.teardown(() => rm(work, { recursive: true, force: true }));
const image = await makeImage(join(work, 'image'));
const baseline = join(work, 'baseline.json');
const made = await drift(['baseline', '--root', image, '--image-id', 'img-fb', '--out', baseline, '--state-dir', join(work, 'bake-state')]);
if (made.code !== 0) throw new Error(`drift baseline: ${made.stderr}`);

let n = 0;
async function instance(boot: { keys: string[]; metadataKeys: string[] | null }): Promise<{ root: string; state: string }> {
  n++;
  const root = await bootInstance(image, join(work, `host-${n}`), { machineId: `${n}`.padStart(32, 'c'), hostname: `web-${n}`, ...boot });
  return { root, state: join(work, `state-${n}`) };
}
async function scan(h: { root: string; state: string }, extra: string[] = []): Promise<{ code: number; report: Report; stderr: string }> {
  const r = await drift(['scan', '--root', h.root, '--baseline', baseline, '--state-dir', h.state, '--format', 'json', ...extra]);
  if (r.code === 2) throw new Error(`drift scan failed: ${r.stderr}`);
  return { code: r.code, report: JSON.parse(r.stdout) as Report, stderr: r.stderr };
}
const keysPath = '/home/admin/.ssh/authorized_keys';

t.test('the default user with an extra key the instance metadata does not list: critical on the first scan', async (t) => {
  const h = await instance({ keys: [KEY_A, KEY_B], metadataKeys: [KEY_A] });
  const { code, report } = await scan(h);
  t.equal(code, 1, 'drift found');
  const f = report.findings.find((x) => x.key === keysPath);
  t.ok(f, 'the keys file is a finding');
  t.equal(f?.severity, 'critical');
  t.match(f?.explanation, /1 key not in the instance's metadata \(\/run\/cloud-init\/instance-data.json\): ssh-ed25519 …BBBBBBBBBBBB \(intruder\)/);
  t.equal(report.findings.length, 1, `only the keys: ${report.findings.map((x) => x.key).join(', ')}`);
  t.same(report.firstBoot?.keys, 'verified');
  t.notOk(report.firstBoot?.pins !== undefined && report.findings.some((x) => x.pinned), 'nothing was pinned before it');
});

t.test('a clean first scan with matching metadata; an appended key and a rewritten /etc/hosts are reported after it', async (t) => {
  const h = await instance({ keys: [KEY_A], metadataKeys: [KEY_A] });
  const first = await scan(h);
  t.equal(first.code, 0, `first scan clean: ${JSON.stringify(first.report.findings.map((f) => f.explanation))}`);
  t.equal(first.report.firstBoot?.keys, 'verified');
  t.ok((first.report.firstBoot?.pins ?? 0) >= 8, `first boot pinned: ${first.report.firstBoot?.pins}`);
  const again = await scan(h);
  t.equal(again.code, 0, 'the second scan of an unchanged root is clean');
  t.equal(again.report.firstBoot?.pinnedAt, first.report.firstBoot?.pinnedAt, 'pins are not taken again');

  await appendFile(join(h.root, keysPath.slice(1)), `${KEY_B}\n`);
  // Still only comment and loopback lines: what the expect rule allows, but not what first boot wrote.
  await writeFile(join(h.root, 'etc/hosts'), '127.0.0.1 localhost\n127.0.1.1 web-2 mirror.internal\n::1 localhost\n');
  const later = await scan(h);
  t.equal(later.code, 1);
  const keys = later.report.findings.find((f) => f.key === keysPath);
  t.equal(keys?.severity, 'critical', 'the appended key is critical');
  t.match(keys?.explanation, /not in the instance's metadata/);
  const hosts = later.report.findings.find((f) => f.key === '/etc/hosts');
  t.ok(hosts, '/etc/hosts is reported');
  t.match(hosts?.explanation, /changed after first boot: first seen \d{4}-\d\d-\d\dT[^,]+, pinned value file, mode 0644/);
  t.equal(hosts?.pinned?.firstSeen, first.report.firstBoot?.pinnedAt);
  t.match(hosts?.diff, /-127\.0\.1\.1 web-2\n[^]*\+127\.0\.1\.1 web-2 mirror\.internal/, 'the diff is against the pinned content');
});

t.test('without instance metadata the keys are pinned on trust, and an appended key is still reported', async (t) => {
  const h = await instance({ keys: [KEY_A], metadataKeys: null });
  const first = await scan(h);
  t.equal(first.code, 0);
  t.equal(first.report.firstBoot?.keys, 'trust');
  const text = await drift(['scan', '--root', h.root, '--baseline', baseline, '--state-dir', h.state]);
  t.match(text.stdout, /SSH keys of admin pinned on trust, not verified: no instance metadata was readable/);
  await appendFile(join(h.root, keysPath.slice(1)), `${KEY_B}\n`);
  const later = await scan(h);
  const keys = later.report.findings.find((f) => f.key === keysPath);
  t.equal(keys?.severity, 'critical');
  t.match(keys?.explanation, /changed after first boot/);
  t.match(keys?.diff, /\+ssh-ed25519 \S+ intruder/);

  // An operator who wanted the key re-pins; then the scans are clean again.
  const repin = await scan(h, ['--repin']);
  t.equal(repin.code, 0, `re-pinned: ${JSON.stringify(repin.report.findings.map((f) => f.explanation))}`);
  t.equal((await scan(h)).code, 0);
});

t.test('a path expected at first boot but changed only later is reported; resolv.conf (pin: false) is not', async (t) => {
  const h = await instance({ keys: [KEY_A], metadataKeys: [KEY_A] });
  t.equal((await scan(h)).code, 0);
  await writeFile(join(h.root, 'etc/sudoers.d/90-cloud-init-users'), '# User rules for admin\nadmin ALL=(ALL) NOPASSWD:ALL\n', { mode: 0o440 });
  await writeFile(join(h.root, 'etc/resolv.conf'), 'nameserver 10.0.0.2\n');
  const later = await scan(h);
  t.same(later.report.findings.map((f) => f.key), ['/etc/sudoers.d/90-cloud-init-users']);
  t.equal(later.report.findings[0]?.severity, 'critical');
});

t.test('the pins file: one per root and machine-id, mode 0600; a tampered one is trouble, not a fresh start', async (t) => {
  const h = await instance({ keys: [KEY_A], metadataKeys: [KEY_A] });
  await scan(h);
  const files = await readdir(join(h.state, 'pins'));
  t.equal(files.length, 1);
  const pinFile = join(h.state, 'pins', files[0] as string);
  await writeFile(pinFile, '{"target":{},"book":');
  const r = await drift(['scan', '--root', h.root, '--baseline', baseline, '--state-dir', h.state]);
  t.equal(r.code, 2);
  t.match(r.stderr, /pin file .* is not JSON .*move it aside and scan again/);
  await writeFile(pinFile, JSON.stringify({ target: { root: h.root, machineId: 'x', imageId: 'img-fb' }, book: { schema: 'drift.pins/v1', pinnedAt: 'now', files: {} } }));
  const other = await drift(['scan', '--root', h.root, '--baseline', baseline, '--state-dir', h.state]);
  t.equal(other.code, 2);
  t.match(other.stderr, /belongs to .*\(machine-id x, image img-fb\), not to this scan/);
});

t.test('an image before first boot (machine-id uninitialized) pins nothing', async (t) => {
  const state = join(work, 'image-state');
  const r = await drift(['scan', '--root', image, '--baseline', baseline, '--state-dir', state, '--format', 'json']);
  t.equal(r.code, 0, r.stderr);
  t.equal((JSON.parse(r.stdout) as Report).firstBoot, undefined);
  await t.rejects(readdir(join(state, 'pins')), { code: 'ENOENT' });
});

t.test('hostile instance data: symlinked, oversized, malformed — not used, said so, nothing lost', async (t) => {
  const h = await instance({ keys: [KEY_A, KEY_B], metadataKeys: null });
  await writeInstanceData(h.root, [KEY_A, KEY_B]);
  // A symlink to a file that lists the intruder's key too: never followed.
  const outside = join(work, 'outside.json');
  await writeFile(outside, JSON.stringify({ v1: { public_ssh_keys: [KEY_A, KEY_B] } }));
  await rm(join(h.root, 'run/cloud-init/instance-data.json'));
  await symlink(outside, join(h.root, 'run/cloud-init/instance-data.json'));
  const linked = await scan(h);
  t.same(linked.report.unread.filter((u) => u.path.startsWith('/run/')), [{ path: '/run/cloud-init/instance-data.json', reason: 'a symlink, not followed' }]);
  t.equal(linked.report.firstBoot?.keys, 'trust');

  await rm(join(h.root, 'run/cloud-init/instance-data.json'));
  await writeFile(join(h.root, 'run/cloud-init/instance-data.json'), Buffer.alloc(1024 * 1024 + 10, 0x20));
  const big = await scan(h);
  t.match(big.report.unread.find((u) => u.path.startsWith('/run/')), { path: '/run/cloud-init/instance-data.json', reason: /larger than 1048576 bytes/ });

  await writeFile(join(h.root, 'run/cloud-init/instance-data.json'), JSON.stringify({ v1: { public_ssh_keys: Array.from({ length: 101 }, (_, i) => `ssh-ed25519 AAAA${i}`) } }));
  const many = await scan(h);
  t.match(many.report.unread.find((u) => u.path.startsWith('/run/')), { path: '/run/cloud-init/instance-data.json', reason: /more than 100 keys/ });

  // The sensitive file wins over the public one when both are readable.
  await writeFile(join(h.root, 'run/cloud-init/instance-data-sensitive.json'), JSON.stringify({ v1: { public_ssh_keys: [KEY_A] } }), { mode: 0o600 });
  const sensitive = await scan(h);
  t.match(sensitive.report.findings.find((f) => f.key === keysPath)?.explanation, /instance-data-sensitive\.json\): ssh-ed25519 …BBBBBBBBBBBB/);
});
