import t from 'tap';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Spool, type SpoolEntry } from '../../../agent/transport/spool.js';
import { computeDigests } from '../../../agent/manifest.js';
import { MANIFEST_SCHEMA, type Manifest } from '../../../agent/protocol/manifest.js';

function entry(seq: number, content = 'a'): SpoolEntry {
  const sections = { packages: { 'dpkg:bash:amd64': { version: '5.2' } }, files: { '/etc/motd': { type: 'file' as const, mode: '0644', uid: 0, gid: 0, size: content.length, content } } };
  const host = { hostname: 'web-1', machineId: 'm1' };
  const manifest: Manifest = { schema: MANIFEST_SCHEMA, host, collectedAt: `2026-01-01T00:00:${String(seq % 60).padStart(2, '0')}Z`, agent: { version: '0' }, digests: computeDigests(sections), ...sections, unread: [] };
  return { seq, collectedAt: manifest.collectedAt, host, role: seq % 2 ? 'web' : null, manifest };
}

t.test('reports come back in seq order, whole', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'drift-spool-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const spool = new Spool(dir, 10);
  // Put out of order, with seqs of different digit counts: the order is numeric.
  for (const seq of [100, 9, 1_700_000_000_000, 42]) t.same(await spool.put(entry(seq)), []);
  t.same(await spool.seqs(), [9, 42, 100, 1_700_000_000_000]);
  const got = await spool.get(42);
  t.same(got, entry(42), 'the entry reads back equal to what was put');
  await spool.remove(9);
  t.same(await spool.seqs(), [42, 100, 1_700_000_000_000]);
  t.equal(await spool.get(9), null, 'a removed report is gone');
});

t.test('the bound drops the oldest first and says which', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'drift-spool-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const spool = new Spool(dir, 3);
  const dropped: number[] = [];
  for (let seq = 1; seq <= 7; seq++) dropped.push(...await spool.put(entry(seq)));
  t.same(dropped, [1, 2, 3, 4], 'four oldest dropped, in order');
  t.same(await spool.seqs(), [5, 6, 7]);
  // Survives a restart: a new Spool over the same folder sees the same reports.
  t.same(await new Spool(dir, 3).seqs(), [5, 6, 7]);
});

t.test('an unchanged manifest is stored once; blobs nobody needs are removed', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'drift-spool-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const spool = new Spool(dir, 100);
  for (let seq = 1; seq <= 20; seq++) await spool.put(entry(seq));
  await spool.put(entry(21, 'changed'));
  const blobs = async (): Promise<string[]> => (await readdir(dir)).filter((n) => n.startsWith('m-'));
  t.equal((await blobs()).length, 2, 'twenty identical manifests share one blob; the changed one has its own');
  await spool.remove(21);
  t.equal((await blobs()).length, 1, 'the changed manifest went with its only report');
  for (let seq = 1; seq <= 20; seq++) await spool.remove(seq);
  t.same(await readdir(dir), [], 'an empty spool leaves no files');
});

t.test('a corrupt entry reads as null instead of throwing', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'drift-spool-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const spool = new Spool(dir, 10);
  await spool.put(entry(5));
  await writeFile(join(dir, `r-${'6'.padStart(20, '0')}.json`), '{"seq": 6, "trunc');
  t.same(await spool.seqs(), [5, 6]);
  t.equal(await spool.get(6), null);
  t.ok(await spool.get(5));
});

t.test('a bound below 1 is refused', async (t) => {
  t.throws(() => new Spool('/nonexistent', 0), { code: 'DRIFT_ERR_USAGE' });
});
