import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import Database from 'better-sqlite3';
import { Store } from '../../../server/store/store.js';
import { MIGRATIONS } from '../../../server/store/migrations.js';
import { applyDelta, sectionDelta } from '../../../server/store/delta.js';
import type { Finding } from '../../../agent/protocol/finding.js';
import { baselineOf, imageSections, manifestOf } from '../helpers/fleet.js';

const tmp = (t: { teardown(fn: () => void): void }): string => {
  const dir = mkdtempSync(join(tmpdir(), 'drift-store-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
};

const key = (s: string): Buffer => createHash('sha256').update(s).digest();

const finding = (k: string): Finding => ({
  kind: 'file', key: k, change: 'modified', changed: ['sha256'], before: null, after: null,
  severity: 'high', action: 'replace', rule: null, explanation: `${k} edited`,
});

t.test('migrations run from empty, once, and the file reopens', async (t) => {
  const file = join(tmp(t), 'sub', 'drift.db');
  const s = Store.open(file);
  t.same(s.migrations(), MIGRATIONS.map((m) => m.version));
  t.equal(s.db.pragma('journal_mode', { simple: true }), 'wal');
  s.enroll({ id: 'h1', hostname: 'web-1', imageId: 'ami-1', keyHash: key('k1'), now: 1 });
  s.close();
  const again = Store.open(file);
  t.same(again.migrations(), MIGRATIONS.map((m) => m.version), 'no migration runs twice');
  t.equal(again.hostById('h1')?.hostname, 'web-1');
  t.equal(again.db.pragma('integrity_check', { simple: true }), 'ok');
  again.close();
});

t.test('node keys are stored hashed; re-enrolling revokes the old key and restarts the seq', async (t) => {
  const s = Store.open(join(tmp(t), 'd.db'));
  t.teardown(() => s.close());
  const h = s.enroll({ id: 'h1', hostname: 'web-1', imageId: null, keyHash: key('k1'), now: 1 });
  t.equal(s.hostByKey(h.rowid, key('k1'))?.id, 'h1');
  const raw = new Database(s.file, { readonly: true });
  const dump = JSON.stringify(raw.prepare('SELECT * FROM hosts').all());
  raw.close();
  t.notMatch(dump, /k1/, 'the key is not stored in clear');
  const m = manifestOf(imageSections(), { hostname: 'web-1', machineId: 'h1' });
  s.saveReport({ host: h, seq: 5, now: 2, hostname: 'web-1', imageId: null, role: null, digests: m.digests, kind: 'full', sections: imageSections(), baseline: null, findings: [], machineId: 'h1' });
  t.equal(s.hostById('h1')?.lastSeq, 5);
  s.enroll({ id: 'h1', hostname: 'web-1', imageId: null, keyHash: key('k2'), now: 3 });
  t.equal(s.hostByKey(h.rowid, key('k1')), undefined, 'old key revoked');
  t.equal(s.hostByKey(h.rowid, key('k2'))?.lastSeq, 0);
});

t.test('hosts of one image share the baseline\'s section blobs; drift is stored as a delta', async (t) => {
  const s = Store.open(join(tmp(t), 'd.db'));
  t.teardown(() => s.close());
  const { baseline, digest } = baselineOf('ami-1');
  s.putBaseline({ imageId: 'ami-1', digest, keyId: null, baseline, now: 1 });
  const stored = s.getBaseline('ami-1');
  t.same(stored?.baseline, baseline, 'baseline reads back equal');
  const blobsAfterBaseline = s.counts()['blobs'] ?? 0;
  t.equal(blobsAfterBaseline, 4, 'one blob per section');

  for (const id of ['h1', 'h2']) {
    const host = s.enroll({ id, hostname: id, imageId: 'ami-1', keyHash: key(id), now: 1 });
    const sections = imageSections();
    const m = manifestOf(sections, { hostname: id, machineId: id, imageId: 'ami-1' });
    s.saveReport({ host, seq: 1, now: 2, hostname: id, imageId: 'ami-1', role: null, digests: m.digests, kind: 'full', sections, baseline: stored ?? null, findings: [], machineId: id });
  }
  t.equal(s.counts()['blobs'], blobsAfterBaseline, 'two clean hosts add no blob');
  t.equal(s.counts()['host_deltas'], 0);

  const drifted = imageSections();
  drifted.files['/etc/ssh/sshd_config'] = { ...drifted.files['/etc/ssh/sshd_config']!, sha256: 'd'.repeat(64) };
  delete drifted.files['/etc/hosts'];
  const m3 = manifestOf(drifted, { hostname: 'h3', machineId: 'h3', imageId: 'ami-1' });
  const h3 = s.enroll({ id: 'h3', hostname: 'h3', imageId: 'ami-1', keyHash: key('h3'), now: 1 });
  s.saveReport({ host: h3, seq: 1, now: 2, hostname: 'h3', imageId: 'ami-1', role: null, digests: m3.digests, kind: 'full', sections: drifted, baseline: stored ?? null, findings: [finding('/etc/ssh/sshd_config')], machineId: 'h3' });
  t.equal(s.counts()['blobs'], blobsAfterBaseline + 1, 'one delta blob');
  t.equal(s.counts()['host_deltas'], 1);
  t.same(s.hostSections(s.hostById('h3')!), drifted, 'the drifted host\'s state rebuilds from baseline + delta');
  t.same(s.hostSections(s.hostById('h1')!), imageSections(), 'a clean host rebuilds from the baseline blobs');
});

t.test('findings keep first_seen while they persist and disappear when gone', async (t) => {
  const s = Store.open(join(tmp(t), 'd.db'));
  t.teardown(() => s.close());
  const sections = imageSections();
  const m = manifestOf(sections, { hostname: 'h', machineId: 'h' });
  const save = (seq: number, now: number, findings: Finding[] | undefined): void => {
    const host = s.hostById('h')!;
    s.saveReport({ host, seq, now, hostname: 'h', imageId: null, role: null, digests: m.digests, kind: findings ? 'full' : 'digests', ...(findings ? { sections } : {}), baseline: null, ...(findings ? { findings } : {}), machineId: 'h' });
  };
  s.enroll({ id: 'h', hostname: 'h', imageId: null, keyHash: key('h'), now: 1 });
  save(1, 100, [finding('/a'), finding('/b')]);
  save(2, 200, [finding('/a')]);
  save(3, 300, undefined);
  const f = s.findings(s.hostById('h')!);
  t.equal(f.length, 1);
  t.equal(f[0]?.finding.key, '/a');
  t.equal(f[0]?.firstSeen, 100, 'first_seen kept');
  t.equal(f[0]?.lastSeen, 300, 'last_seen moves with a digest-only report');
  t.equal(s.hostById('h')?.findings, 1);
  t.same(s.reportSeqs('h'), [1, 2, 3]);
});

t.test('retention prunes old report history and unreferenced blobs', async (t) => {
  const s = Store.open(join(tmp(t), 'd.db'));
  t.teardown(() => s.close());
  const { baseline, digest } = baselineOf('ami-1');
  s.putBaseline({ imageId: 'ami-1', digest, keyId: null, baseline, now: 1 });
  const other = imageSections();
  other.packages['dpkg:curl:amd64'] = { version: '7.88.1-10+deb12u8' };
  const b2 = baselineOf('ami-1', other);
  s.putBaseline({ imageId: 'ami-1', digest: b2.digest, keyId: null, baseline: b2.baseline, now: 2 });
  t.equal(s.counts()['blobs'], 5, 'the replaced packages blob lingers until pruned');
  const h = s.enroll({ id: 'h', hostname: 'h', imageId: null, keyHash: key('h'), now: 1 });
  // Seq 1 in a state of its own (its ports section is a new blob), seq 2 in the baseline's state.
  const first = imageSections();
  first.ports['tcp:0.0.0.0:8080'] = { process: '/usr/bin/python3' };
  const m1 = manifestOf(first, { hostname: 'h', machineId: 'h' });
  const m2 = manifestOf(other, { hostname: 'h', machineId: 'h' });
  s.saveReport({ host: h, seq: 1, now: 10, hostname: 'h', imageId: null, role: null, digests: m1.digests, kind: 'full', sections: first, baseline: null, findings: [], machineId: 'h' });
  t.equal(s.counts()['blobs'], 6, 'the first state\'s ports section is stored');
  s.saveReport({ host: s.hostById('h')!, seq: 2, now: 1000, hostname: 'h', imageId: null, role: null, digests: m2.digests, kind: 'full', sections: other, baseline: null, findings: [], machineId: 'h' });
  t.equal(s.prune(500), 1);
  t.same(s.reportSeqs('h'), [2]);
  t.equal(s.counts()['states'], 1, 'the pruned history row\'s state goes');
  t.equal(s.counts()['blobs'], 4, 'blobs of no baseline and no current state go');
  t.same(s.getBaseline('ami-1')?.baseline, b2.baseline);
  t.same(s.hostSections(s.hostById('h')!), other);
});

t.test('history: a row per change; consecutive reports of one state extend it; re-enrolling starts a new epoch', async (t) => {
  const s = Store.open(join(tmp(t), 'd.db'));
  t.teardown(() => s.close());
  const a = imageSections();
  const b = imageSections();
  b.packages['dpkg:curl:amd64'] = { version: '7.88.1-10+deb12u8' };
  const ma = manifestOf(a, { hostname: 'h', machineId: 'h' });
  const mb = manifestOf(b, { hostname: 'h', machineId: 'h' });
  s.enroll({ id: 'h', hostname: 'h', imageId: null, keyHash: key('h'), now: 1 });
  const save = (seq: number, now: number, m: typeof ma, sections: typeof a): void => {
    s.saveReport({ host: s.hostById('h')!, seq, now, hostname: 'h', imageId: null, role: null, digests: m.digests, kind: 'full', sections, baseline: null, findings: [], machineId: 'h' });
  };
  save(1, 100, ma, a);
  save(2, 200, ma, a);
  save(3, 300, ma, a);
  save(4, 400, mb, b);
  save(6, 600, mb, b); // seq 5 never arrived: a gap starts a new row, so the seqs stay exact
  save(7, 700, ma, a);
  t.same(s.history('h').map((r) => [r.epoch, r.firstSeq, r.lastSeq, r.firstAt, r.lastAt, r.root]), [
    [1, 1, 3, 100, 300, ma.digests.root],
    [1, 4, 4, 400, 400, mb.digests.root],
    [1, 6, 6, 600, 600, mb.digests.root],
    [1, 7, 7, 700, 700, ma.digests.root],
  ]);
  t.same(s.reportSeqs('h'), [1, 2, 3, 4, 6, 7]);
  t.equal(s.counts()['states'], 2, 'two states, however many reports');
  s.enroll({ id: 'h', hostname: 'h', imageId: null, keyHash: key('h2'), now: 800 });
  save(1, 900, ma, a);
  t.same(s.history('h').at(-1), { epoch: 2, firstSeq: 1, lastSeq: 1, firstAt: 900, lastAt: 900, root: ma.digests.root }, 'seq 1 again, in the new epoch');
  t.same(s.reportSeqs('h'), [1, 2, 3, 4, 6, 7, 1]);
});

t.test('host ids: machine-ids are stored as 16 bytes, other ids as text; both read back', async (t) => {
  const s = Store.open(join(tmp(t), 'd.db'));
  t.teardown(() => s.close());
  const mid = '0123456789abcdef0123456789abcdef';
  s.enroll({ id: mid, hostname: 'a', imageId: 'ami-1', keyHash: key('a'), now: 1 });
  s.enroll({ id: 'web-7.example.org', hostname: 'b', imageId: 'ami-1', keyHash: key('b'), now: 1 });
  s.enroll({ id: mid.toUpperCase(), hostname: 'c', imageId: null, keyHash: key('c'), now: 1 });
  t.same(s.listHosts().map((h) => [h.id, h.hostname, h.imageId]), [[mid.toUpperCase(), 'c', null], [mid, 'a', 'ami-1'], ['web-7.example.org', 'b', 'ami-1']]);
  const raw = s.db.prepare('SELECT typeof(id) AS t, length(id) AS n FROM hosts ORDER BY rowid').all();
  t.same(raw, [{ t: 'blob', n: 16 }, { t: 'text', n: 17 }, { t: 'text', n: 32 }]);
  t.equal(s.counts()['strings'], 1, 'the image id is stored once');
  const m = manifestOf(imageSections(), { hostname: 'a', machineId: mid });
  s.saveReport({ host: s.hostById(mid)!, seq: 1, now: 5, hostname: 'a', imageId: 'ami-1', role: 'web', digests: m.digests, kind: 'full', sections: imageSections(), baseline: null, findings: [], machineId: mid });
  const h = s.hostById(mid)!;
  t.equal(h.machineId, mid, 'a machine-id equal to the host id reads back');
  t.equal(h.role, 'web');
  t.same(h.digests, m.digests);
  t.same(h.unread, []);
});

t.test('section deltas round-trip', async (t) => {
  const base = { a: { v: 1 }, b: { v: 2 }, c: { v: 3 } };
  const now = { a: { v: 1 }, b: { v: 20 }, d: { v: 4 } };
  const d = sectionDelta(base, now);
  t.same(d, { set: { b: { v: 20 }, d: { v: 4 } }, del: ['c'] });
  t.same(applyDelta(base, d), now);
  t.same(base, { a: { v: 1 }, b: { v: 2 }, c: { v: 3 } }, 'base untouched');
});
