import t from 'tap';
import { createHash } from 'node:crypto';
import { MANIFEST_SCHEMA, type FileEntry, type Manifest } from '../../../agent/protocol/manifest.js';
import { emptyRuleSet, type RuleSet } from '../../../agent/protocol/rules.js';
import { MAX_PINS, PinBookSchema, PINS_SCHEMA } from '../../../agent/protocol/pins.js';
import { compareWithPins, keyIdentity } from '../../../agent/engine/pins.js';
import { publicKeysOf } from '../../../agent/instance-data.js';

/** The pin engine on plain data: what is pinned, what breaks a pin, re-pins, and the bounds. */

const sha = (s: string): string => createHash('sha256').update(s).digest('hex');
const file = (content: string, extra: Partial<FileEntry> = {}): FileEntry => ({ type: 'file', mode: '0644', uid: 0, gid: 0, size: Buffer.byteLength(content), sha256: sha(content), content, ...extra });
function manifest(files: Record<string, FileEntry>, host: Partial<Manifest['host']> = {}): Manifest {
  return { schema: MANIFEST_SCHEMA, host: { hostname: 'h', machineId: 'm', ...host }, collectedAt: '2026-01-01T00:00:00Z', agent: { version: 't' }, digests: { root: `sha256:${'0'.repeat(64)}` }, files, unread: [] };
}
const rules: RuleSet = {
  ...emptyRuleSet(),
  vars: { cloudInitUser: 'admin' },
  expect: [
    { path: '/etc/hostname', lines: ['^[a-z0-9-]+$'], why: 'hostname' },
    { path: '/etc/resolv.conf', pin: false, why: 'every boot' },
    { path: '/home/${cloudInitUser}/**', change: 'added', why: 'the default user' },
    { path: '/etc/ssh/ssh_host_*', why: 'host keys' },
  ],
};
const image = manifest({ '/etc/hostname': file('localhost\n'), '/etc/resolv.conf': file('nameserver 1.1.1.1\n'), '/etc/ssh/ssh_host_rsa_key': file('image key') });
const T0 = '2026-12-01T00:00:00.000Z';
const T1 = '2026-12-08T00:00:00.000Z';

t.test('the first compare pins what expectations accept, and only that', async (t) => {
  const host = manifest({ '/etc/hostname': file('web-1\n'), '/etc/resolv.conf': file('nameserver 10.0.0.2\n'), '/home/admin/x': file('x'), '/etc/ssh/ssh_host_rsa_key': file('image key') });
  const first = compareWithPins({ baseline: image, manifest: host, rules }, { book: null, now: T0 });
  t.same(first.findings, []);
  t.same(Object.keys(first.book.files), ['/etc/hostname', '/home/admin/x'], 'resolv.conf (pin: false) is not pinned');
  t.equal(first.book.pinnedAt, T0);
  t.same(first.changed, ['/etc/hostname', '/home/admin/x']);
  t.equal(first.firstBoot.keys, null, 'no keys file, no key verdict');

  const bad = manifest({ '/etc/hostname': file('web 1 evil\n'), '/etc/resolv.conf': file('x\n'), '/etc/ssh/ssh_host_rsa_key': file('image key') });
  const drifted = compareWithPins({ baseline: image, manifest: bad, rules }, { book: null, now: T0 });
  t.same(drifted.findings.map((f) => f.key), ['/etc/hostname'], 'an unexpected first boot is drift from the start');
  t.same(Object.keys(drifted.book.files), [], 'and is not pinned');
});

t.test('after first boot: changed, reverted to the image, removed, or newly changed pinned paths are findings', async (t) => {
  const host = manifest({ '/etc/hostname': file('web-1\n'), '/etc/resolv.conf': file('a\n'), '/home/admin/x': file('x'), '/etc/ssh/ssh_host_rsa_key': file('image key') });
  const { book } = compareWithPins({ baseline: image, manifest: host, rules }, { book: null, now: T0 });
  const same = compareWithPins({ baseline: image, manifest: { ...host, files: { ...host.files, '/etc/resolv.conf': file('b\n') } }, rules }, { book, now: T1 });
  t.same(same.findings, [], 'unchanged (resolv.conf may change at every boot)');
  t.same(same.changed, [], 'pins untouched');

  const later = manifest({ '/etc/hostname': file('web-2\n'), '/etc/resolv.conf': file('a\n'), '/etc/ssh/ssh_host_rsa_key': file('new key') });
  const r = compareWithPins({ baseline: image, manifest: later, rules }, { book, now: T1 });
  const by = new Map(r.findings.map((f) => [f.key, f]));
  t.same([...by.keys()].sort(), ['/etc/hostname', '/etc/ssh/ssh_host_rsa_key', '/home/admin/x']);
  t.match(by.get('/etc/hostname'), { change: 'modified', pinned: { firstSeen: T0 }, before: { content: 'web-1\n' }, after: { content: 'web-2\n' } });
  t.match(by.get('/etc/hostname')?.explanation, /changed after first boot: first seen 2026-12-01T00:00:00.000Z, pinned value file, mode 0644/);
  t.match(by.get('/home/admin/x'), { change: 'removed', pinned: { firstSeen: T0 } }, 'a pinned file that vanished');
  t.match(by.get('/etc/ssh/ssh_host_rsa_key')?.explanation, /not changed at first boot .* re-pin it/, 'expected, but not at first boot');
  t.notOk(by.get('/etc/ssh/ssh_host_rsa_key')?.pinned);

  const reverted = compareWithPins({ baseline: image, manifest: manifest({ ...image.files, '/home/admin/x': file('x') }), rules }, { book, now: T1 });
  t.match(reverted.findings, [{ key: '/etc/hostname', change: 'modified', before: { content: 'web-1\n' }, after: { content: 'localhost\n' }, pinned: { firstSeen: T0 } }], 'back to the image value is a change after first boot too');
});

t.test('re-pin: the listed paths take their current accepted value; others stay', async (t) => {
  const host = manifest({ '/etc/hostname': file('web-1\n'), '/home/admin/x': file('x'), '/etc/ssh/ssh_host_rsa_key': file('image key') });
  const { book } = compareWithPins({ baseline: image, manifest: host, rules }, { book: null, now: T0 });
  const later = manifest({ '/etc/hostname': file('web-2\n'), '/home/admin/x': file('y'), '/etc/ssh/ssh_host_rsa_key': file('image key') });
  const one = compareWithPins({ baseline: image, manifest: later, rules }, { book, now: T1, repin: { paths: ['/etc/hostname'] } });
  t.same(one.changed, ['/etc/hostname']);
  t.same(one.findings.map((f) => f.key), ['/home/admin/x'], 'the path not re-pinned is still reported');
  t.equal(one.book.files['/etc/hostname']?.firstSeen, T1);
  t.equal(one.book.files['/home/admin/x']?.firstSeen, T0);
  t.equal(one.book.pinnedAt, T0, 'first boot stays when it was');
  const all = compareWithPins({ baseline: image, manifest: image, rules }, { book: one.book, now: T1, repin: { paths: [] } });
  t.same(all.findings, []);
  t.same(all.book.files, {}, 're-pinned to the image: nothing pinned');
  t.same(all.changed, ['/etc/hostname', '/home/admin/x']);
});

t.test('a host cannot grow its pins without bound: expected changes beyond the cap are reported', async (t) => {
  const files: Record<string, FileEntry> = { ...image.files };
  for (let i = 0; i < MAX_PINS + 20; i++) files[`/home/admin/f${String(i).padStart(5, '0')}`] = file(`${i}`);
  const r = compareWithPins({ baseline: image, manifest: manifest(files), rules }, { book: null, now: T0 });
  t.equal(Object.keys(r.book.files).length, MAX_PINS);
  t.equal(r.findings.length, 20);
  t.match(r.findings[0]?.explanation, /not pinned: this host has more than 1000 first-boot changes/);
  t.ok(PinBookSchema.safeParse(r.book).success, 'the book it keeps is a valid pin book');
  const over = { ...r.book, files: { ...r.book.files, '/extra': { firstSeen: T0, entry: null } } };
  t.notOk(PinBookSchema.safeParse(over).success, 'a pin book of more than 1000 paths is refused when read');
  t.notOk(PinBookSchema.safeParse({ schema: PINS_SCHEMA, pinnedAt: T0, files: { ['/' + 'a'.repeat(5000)]: { firstSeen: T0, entry: null } } }).success, 'so is an overlong path');
});

t.test('the default user\'s keys: held to the instance metadata, by key material', async (t) => {
  const A = 'ssh-ed25519 AAAAkeyA alice@laptop';
  const B = 'ssh-rsa AAAAkeyB mallory';
  const keys = (content: string, meta: string[] | null) => compareWithPins({
    baseline: image,
    manifest: manifest({ ...image.files, '/home/admin/.ssh/authorized_keys': file(content, { mode: '0600' }) }, meta ? { instanceKeys: { source: '/run/cloud-init/instance-data.json', keys: meta } } : {}),
    rules,
  }, { book: null, now: T0 });
  const ok = keys(`${A}\n`, ['ssh-ed25519 AAAAkeyA other-comment']);
  t.same(ok.findings, [], 'a comment may differ');
  t.equal(ok.firstBoot.keys, 'verified');
  t.ok(ok.book.files['/home/admin/.ssh/authorized_keys'], 'verified keys are pinned');
  const extra = keys(`${A}\n# a comment\n\n${B}\n`, [A]);
  t.match(extra.findings, [{ key: '/home/admin/.ssh/authorized_keys', change: 'added' }]);
  t.match(extra.findings[0]?.explanation, /1 key not in the instance's metadata \(\/run\/cloud-init\/instance-data.json\): ssh-rsa …AAAAkeyB \(mallory\)/);
  t.notOk(extra.book.files['/home/admin/.ssh/authorized_keys'], 'an extra key is never pinned');
  const options = keys(`command="/bin/sh" ${A}\n`, [A]);
  t.equal(options.findings.length, 1, 'a key with options it was not launched with is not the launch key');
  const missing = keys('\n', [A]);
  t.match(missing.findings[0]?.explanation, /1 key of the instance's metadata missing/);
  const trust = keys(`${A}\n${B}\n`, null);
  t.same(trust.findings, [], 'no metadata: pinned as found');
  t.equal(trust.firstBoot.keys, 'trust');
  t.equal(keyIdentity('  from="10.0.0.0/8"   ssh-ed25519   AAAAx   c  '), 'from="10.0.0.0/8" ssh-ed25519 AAAAx');
});

t.test('instance data: every malformed shape is a reason, never keys', async (t) => {
  t.same(publicKeysOf(JSON.stringify({ v1: { public_ssh_keys: [' ssh-ed25519 AAAA a ', 'ssh-ed25519 AAAA a', ''] } })), ['ssh-ed25519 AAAA a'], 'trimmed, deduplicated, blanks dropped');
  t.same(publicKeysOf(JSON.stringify({ v1: { cloud_name: 'x' } })), [], 'no keys: an instance launched without');
  t.match(publicKeysOf('{'), /^not JSON/);
  t.equal(publicKeysOf('[]'), 'not a JSON object');
  t.equal(publicKeysOf('{"ds":{}}'), 'no v1 key: not cloud-init instance data');
  t.equal(publicKeysOf('{"v1":"x"}'), 'v1 is not an object');
  t.equal(publicKeysOf('{"v1":{"public_ssh_keys":"ssh-rsa AAAA"}}'), 'v1.public_ssh_keys is not a list');
  t.equal(publicKeysOf('{"v1":{"public_ssh_keys":[1]}}'), 'v1.public_ssh_keys holds a non-string');
  t.match(publicKeysOf(JSON.stringify({ v1: { public_ssh_keys: ['ssh-rsa A\nssh-rsa B'] } })), /several lines/);
  t.match(publicKeysOf(JSON.stringify({ v1: { public_ssh_keys: ['x'.repeat(16385)] } })), /longer than 16384/);
});

t.test('large content is pinned by its digest alone, and a change to it is still found', async (t) => {
  const big = 'x'.repeat(9000);
  const host = manifest({ ...image.files, '/home/admin/notes': file(`${big}\n`) });
  const { book } = compareWithPins({ baseline: image, manifest: host, rules }, { book: null, now: T0 });
  const pin = book.files['/home/admin/notes'];
  t.equal(pin?.entry?.content, undefined, 'no content kept above 8192 characters');
  t.equal(pin?.entry?.sha256, sha(`${big}\n`));
  t.same(compareWithPins({ baseline: image, manifest: host, rules }, { book, now: T1 }).findings, [], 'the same file matches its pin');
  const changed = compareWithPins({ baseline: image, manifest: manifest({ ...image.files, '/home/admin/notes': file(`${big}y\n`) }), rules }, { book, now: T1 });
  t.match(changed.findings, [{ key: '/home/admin/notes', change: 'modified', pinned: { firstSeen: T0 } }]);
  t.ok(changed.findings[0]?.changed.includes('sha256'));
});

t.test('a pin holds what the file is, not when first boot wrote it: hosts of a cohort pin one value', async (t) => {
  const at = (mtime: number) => manifest({ '/etc/hostname': file('web\n', { mtime }), '/etc/ssh/ssh_host_rsa_key': file('image key') });
  const a = compareWithPins({ baseline: image, manifest: at(1_764_547_200), rules }, { book: null, now: T0 });
  const b = compareWithPins({ baseline: image, manifest: at(1_764_550_800), rules }, { book: null, now: T0 });
  t.same(a.book.files['/etc/hostname'], b.book.files['/etc/hostname'], 'two hosts booted an hour apart pin the same value');
  t.equal(a.book.files['/etc/hostname']?.entry?.mtime, undefined);
  // A pin book that still holds an mtime is not broken by a later mtime alone; a content change still is.
  const old = structuredClone(a.book);
  const pinned = old.files['/etc/hostname'];
  if (pinned?.entry) pinned.entry.mtime = 1_764_547_200;
  const touched = compareWithPins({ baseline: image, manifest: at(1_764_600_000), rules }, { book: old, now: T1 });
  t.same(touched.findings, [], 'a touch of a pinned file is not a broken pin');
  const edited = compareWithPins({ baseline: image, manifest: manifest({ '/etc/hostname': file('evil\n'), '/etc/ssh/ssh_host_rsa_key': file('image key') }), rules }, { book: old, now: T1 });
  t.same(edited.findings.map((f) => f.key), ['/etc/hostname']);
});
