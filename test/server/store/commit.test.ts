import t from 'tap';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { GroupCommit } from '../../../server/store/commit.js';
import { Store, type SaveReport } from '../../../server/store/store.js';
import { imageSections, manifestOf } from '../helpers/fleet.js';

const key = (s: string): Buffer => createHash('sha256').update(s).digest().subarray(0, 16);

function setup(t: { teardown(fn: () => void): void }): { store: Store; reader: Database.Database } {
  const dir = mkdtempSync(join(tmpdir(), 'drift-commit-'));
  const store = Store.open(join(dir, 'd.db'));
  // A second connection sees only what is committed.
  const reader = new Database(store.file, { readonly: true });
  t.teardown(() => { reader.close(); store.close(); rmSync(dir, { recursive: true, force: true }); });
  return { store, reader };
}

function reportOf(store: Store, id: string, seq: number): SaveReport {
  const host = store.hostById(id) ?? store.enroll({ id, hostname: id, imageId: null, keyHash: key(id), now: 1 });
  const m = manifestOf(imageSections(), { hostname: id, machineId: id });
  return { host, seq, now: 10, hostname: id, imageId: null, role: null, digests: m.digests, kind: 'full', sections: imageSections(), baseline: null, findings: [], machineId: id };
}

t.test('writes queued in one turn commit together, and each promise settles only after the commit', async (t) => {
  const { store, reader } = setup(t);
  const commit = new GroupCommit(store);
  const ids = Array.from({ length: 20 }, (_, i) => `h${i}`);
  const items = ids.map((id) => reportOf(store, id, 1));
  const settled: string[] = [];
  const done = items.map((r) => commit.save(r).then(() => { settled.push(r.host.id); }));
  t.equal(commit.pending(items[0]!.host.rowid) instanceof Promise, true, 'the host has a queued write');
  t.equal(reader.prepare('SELECT count(*) FROM history').pluck().get(), 0, 'nothing is committed while queued');
  await done[0];
  t.equal(reader.prepare('SELECT count(*) FROM history').pluck().get(), 20, 'when the first is acknowledged, all twenty are committed');
  await Promise.all(done);
  t.same(settled, ids);
  t.equal(commit.pending(items[0]!.host.rowid), null, 'nothing queued any more');
  t.same(store.reportSeqs('h7'), [1]);
});

t.test('a write that fails rejects alone; the others of its batch are stored', async (t) => {
  const { store } = setup(t);
  const commit = new GroupCommit(store);
  const good1 = reportOf(store, 'a', 1);
  const good2 = reportOf(store, 'b', 1);
  // A host row that does not exist: its history insert breaks the foreign key.
  const bad: SaveReport = { ...reportOf(store, 'c', 1), host: { ...good1.host, rowid: 999, id: 'ghost' } };
  const results = await Promise.allSettled([commit.save(good1), commit.save(bad), commit.save(good2)]);
  t.same(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled']);
  t.match((results[1] as PromiseRejectedResult).reason, { code: 'SQLITE_CONSTRAINT_FOREIGNKEY' });
  t.same(store.reportSeqs('a'), [1]);
  t.same(store.reportSeqs('b'), [1]);
  t.equal(store.counts()['history'], 2);
  t.equal((store.db.pragma('foreign_key_check') as unknown[]).length, 0);
});

t.test('maxItems flushes a full batch at once; flush() commits what is queued', async (t) => {
  const { store, reader } = setup(t);
  const commit = new GroupCommit(store, { maxItems: 3 });
  const p = [commit.save(reportOf(store, 'a', 1)), commit.save(reportOf(store, 'b', 1))];
  t.equal(reader.prepare('SELECT count(*) FROM history').pluck().get(), 0);
  p.push(commit.save(reportOf(store, 'c', 1)));
  t.equal(reader.prepare('SELECT count(*) FROM history').pluck().get(), 3, 'the third write filled the batch: committed synchronously');
  p.push(commit.save(reportOf(store, 'd', 1)));
  commit.flush();
  t.equal(reader.prepare('SELECT count(*) FROM history').pluck().get(), 4);
  await Promise.all(p);
});
