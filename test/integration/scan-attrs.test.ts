import t from 'tap';
import { link, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { copyRoot, debianMinbase } from '../helpers/debian.js';
import { drift, must, run } from '../helpers/run.js';

/**
 * Everything AIDE sees, on a real Debian root (debootstrap minbase, cached by
 * test/setup.sh): bake an image, change a copy with the real tools (setcap,
 * setfattr, setfacl, chattr, ln, mknod, touch), and check that each change is one
 * finding with an explanation a person can act on, that an unchanged copy has
 * none, and that a scan with a warm stat cache says exactly what a cold one says.
 * The test roots live under /tmp, which must support xattrs, ACLs and inode
 * flags (ext4, xfs, btrfs do; ramfs has no inode flags).
 */

interface JsonFinding { kind: string; key: string; change: string; changed: string[]; explanation: string; severity: string; action: string }
interface JsonReport { findings: JsonFinding[]; unread: { path: string; reason: string }[] }

const work = await mkdtemp(join(tmpdir(), 'drift-attrs-'));
const immutable: string[] = [];
t.teardown(async () => {
  // An immutable file cannot be removed, not even by root.
  for (const path of immutable) await run('chattr', ['-i', '-a', path]);
  await rm(work, { recursive: true, force: true });
});

const fsType = (await must('stat', ['-f', '-c', '%T', work])).trim();
const image = await copyRoot(debianMinbase, join(work, 'image'));
const baseline = join(work, 'baseline.json');
const bake = await drift(['baseline', '--root', image, '--image-id', 'debian-12-minbase', '--out', baseline, '--state-dir', join(work, 'bake-state')]);
t.equal(bake.code, 0, `baseline exits 0: ${bake.stderr}`);

async function scan(root: string, state: string): Promise<{ code: number; report: JsonReport; stdout: string }> {
  const r = await drift(['scan', '--root', root, '--baseline', baseline, '--format', 'json', '--state-dir', state]);
  return { code: r.code, report: JSON.parse(r.stdout || '{}') as JsonReport, stdout: r.stdout };
}

t.test('the test root supports what is checked', async (t) => {
  t.notOk(['ramfs', 'proc', 'sysfs'].includes(fsType), `${work} is on ${fsType}, which has no inode flags: run the tests with TMPDIR on ext4, xfs, btrfs or tmpfs`);
});

t.test('an unchanged copy has no findings and nothing unread, cold and warm', async (t) => {
  const host = await copyRoot(image, join(work, 'same'));
  const state = join(work, 'same-state');
  const cold = await scan(host, state);
  t.equal(cold.code, 0, JSON.stringify(cold.report.findings.map((f) => `${f.key} ${f.changed.join(',')}`)));
  t.same(cold.report.findings, []);
  t.same(cold.report.unread, [], 'every attribute was read');
  const warm = await scan(host, state);
  t.equal(warm.stdout, cold.stdout, 'the warm scan says what the cold one said');
});

t.test('each change made with a real tool is one finding, explained; warm and cold agree', async (t) => {
  const host = await copyRoot(image, join(work, 'changed'));
  const p = (rel: string): string => join(host, rel);
  const state = join(work, 'changed-state');
  // A warm cache of the unchanged copy first, so that the second scan below is a warm one over changed paths.
  t.equal((await scan(host, state)).code, 0, 'the copy starts clean');

  await must('setcap', ['cap_setuid+ep', p('usr/bin/tar')]);
  await must('setfattr', ['-n', 'user.backdoor', '-v', 'yes', p('etc/issue')]);
  // Read access to the password hashes for uid 1000, with the mode bits unchanged (mask r-- = group r--).
  await must('setfacl', ['-m', 'u:1000:r', p('etc/shadow')]);
  await must('setfacl', ['-d', '-m', 'u:1000:rwx', p('etc/systemd')]);
  await must('chattr', ['+i', p('etc/motd')]);
  immutable.push(p('etc/motd'));
  // A second name for a setuid binary in a folder no rule watches.
  await link(p('usr/bin/su'), p('var/tmp/.su'));
  await must('mknod', [p('etc/kmem'), 'c', '1', '2']);
  await must('touch', [p('etc/debian_version')]);

  const cold = await scan(host, join(work, 'cold-state'));
  const warm = await scan(host, state);
  t.equal(cold.code, 1, 'drift found');
  t.equal(warm.stdout, cold.stdout, 'a warm scan (stat cache of the unchanged copy) says exactly what a cold one says');
  const { findings, unread } = cold.report;
  t.same(unread, [], 'nothing unread');
  const byKey = new Map(findings.map((f) => [f.key, f]));
  const expected: Array<[string, string, string[], RegExp, string]> = [
    ['/usr/bin/tar', 'modified', ['caps'], /file capabilities none → cap_setuid=ep .*setcap -r/, 'critical'],
    ['/etc/issue', 'modified', ['xattrs'], /extended attributes: user\.backdoor added/, 'medium'],
    ['/etc/shadow', 'modified', ['acl'], /ACL added: user::rw-,user:1000:r--,group::r--,mask::r--,other::---; grants user:1000:r-- beyond what the mode bits say/, 'critical'],
    ['/etc/systemd', 'modified', ['defaultAcl'], /default ACL added: .*user:1000:rwx/, 'high'],
    ['/etc/motd', 'modified', ['flags'], /inode flags none → i \(i set: immutable/, 'medium'],
    ['/usr/bin/su', 'modified', ['nlink'], /hard links 1 → 2: another name for this file was made.*find \/ -xdev -samefile \/usr\/bin\/su/, 'high'],
    ['/etc/kmem', 'added', [], /\/etc\/kmem added \(other, mode 0644, uid 0, gid 0, device c 1:2\)/, 'medium'],
    ['/etc/debian_version', 'modified', ['mtime'], /modification time .* → .* with the content unchanged/, 'low'],
  ];
  for (const [key, change, changed, explanation, severity] of expected) {
    const f = byKey.get(key);
    t.ok(f, `${key} is reported`);
    if (!f) continue;
    t.equal(f.change, change, `${key}: ${change}`);
    t.same(f.changed, changed, `${key}: changed ${changed.join(',')}`);
    t.match(f.explanation, explanation, `${key}: ${f.explanation}`);
    t.equal(f.severity, severity, `${key}: ${severity}`);
  }
  t.same(findings.map((f) => f.key).sort(), expected.map(([key]) => key).sort(), 'one finding per change, and nothing else');
});
