import t from 'tap';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QUARANTINE_KEEP, Spool, type SpoolEntry } from '../../../agent/transport/spool.js';
import { execFileSync } from 'node:child_process';
import { gunzipSync, gzipSync } from 'node:zlib';
import { createHash } from 'node:crypto';
import { canonicalJson } from '../../../agent/protocol/canonical.js';
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
  t.throws(() => new Spool('/nonexistent', 10, 0), { code: 'DRIFT_ERR_USAGE', message: /byte bound/ });
});

t.test('the byte bound drops the oldest reports while the manifests are too large', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'drift-spool-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const blobBytes = async (): Promise<number[]> => {
    const names = (await readdir(dir)).filter((n) => n.startsWith('m-'));
    return Promise.all(names.map(async (n) => (await stat(join(dir, n))).size));
  };
  // Measure one blob: the manifests below differ only in same-length content.
  const probe = new Spool(dir, 1000);
  await probe.put(entry(1, 'content-00'));
  const one = (await blobBytes())[0] ?? 0;
  t.ok(one > 0);
  await probe.remove(1);
  // Room for three blobs and a half.
  const bound = Math.floor(one * 3.5);
  const spool = new Spool(dir, 1000, bound);
  const dropped: number[] = [];
  for (let seq = 1; seq <= 6; seq++) dropped.push(...await spool.put(entry(seq, `content-${String(seq).padStart(2, '0')}`)));
  t.same(dropped, [1, 2, 3], 'the three oldest dropped, in order');
  t.same(await spool.seqs(), [4, 5, 6]);
  const sizes = await blobBytes();
  t.equal(sizes.length, 3, 'their manifests went with them');
  t.ok(sizes.reduce((a, b) => a + b, 0) <= bound, 'the manifests kept fit the bound');
  // Reports sharing one manifest count it once: ten more of the newest content drop nothing.
  for (let seq = 7; seq <= 16; seq++) t.same(await spool.put(entry(seq, 'content-06')), [], `seq ${seq} kept`);
  t.equal((await spool.seqs()).length, 13);
  // The newest report is kept even when its manifest alone is over the bound.
  const tiny = new Spool(dir, 1000, 1);
  const d = await tiny.put(entry(17, 'content-17'));
  t.same(await tiny.seqs(), [17], 'only the newest is left');
  t.equal(d.length, 13, 'everything older was dropped');
  t.ok(await tiny.get(17));
});

t.test('get: null for a missing or unparsable report (quarantined), an error for a disk failure', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'drift-spool-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const spool = new Spool(dir, 10);
  t.equal(await spool.get(1), null, 'no report under that seq');
  await spool.put(entry(1));
  await spool.put(entry(2, 'other'));
  // Entry 2's file becomes a folder: reading it fails with EISDIR, which is not "bad data".
  const name = (await readdir(dir)).find((n) => n.startsWith(`r-${'2'.padStart(20, '0')}`)) as string;
  await rm(join(dir, name));
  await mkdir(join(dir, name));
  await t.rejects(spool.get(2), { code: 'DRIFT_ERR_IO', message: /EISDIR/ });
  t.same(await spool.seqs(), [1, 2], 'the report is still there');
  // Entry 2 is torn: it can never be read as a report.
  await rm(join(dir, name), { recursive: true });
  await writeFile(join(dir, name), '{"seq":');
  t.equal(await spool.get(2), null);
  t.same(await spool.seqs(), [1], 'it is out of the queue');
  t.match(await spool.quarantined(), [new RegExp(`^\\d{15}-${name}$`)], 'and kept aside in quarantine/');
  // Entry 1's blob is missing: that report can never be read back.
  const blob = (await readdir(dir)).filter((n) => n.startsWith('m-'));
  for (const b of blob) await rm(join(dir, b));
  t.equal(await spool.get(1), null);
});

t.test('an entry from an older agent (no blob id in its name) is read and removed with its blob', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'drift-spool-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const spool = new Spool(dir, 10);
  await spool.put(entry(3));
  const name = (await readdir(dir)).find((n) => n.startsWith('r-')) as string;
  const { rename } = await import('node:fs/promises');
  await rename(join(dir, name), join(dir, `r-${'3'.padStart(20, '0')}.json`));
  t.same(await spool.get(3), entry(3));
  await spool.put(entry(4));
  t.equal((await readdir(dir)).filter((n) => n.startsWith('m-')).length, 1, 'the same manifest, shared');
  await spool.remove(4);
  t.equal((await readdir(dir)).filter((n) => n.startsWith('m-')).length, 1, 'still needed by the older entry');
  await spool.remove(3);
  t.same(await readdir(dir), [], 'nothing left');
});

t.test('collectGarbage removes manifests no report needs and temporary files', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'drift-spool-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const spool = new Spool(dir, 10);
  await spool.put(entry(1));
  await writeFile(join(dir, `m-${'a'.repeat(64)}.json.gz`), 'orphan');
  await writeFile(join(dir, `state.json.tmp-123`), 'torn');
  await spool.collectGarbage();
  const left = (await readdir(dir)).sort();
  t.equal(left.length, 2, 'one entry and its manifest');
  t.ok(await spool.get(1));
});

t.test('hostile spool files: a gzip bomb, a corrupt blob and a FIFO are quarantined and never block the reports after them', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'drift-spool-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const spool = new Spool(dir, 10);
  for (const seq of [1, 2, 3, 4]) await spool.put(entry(seq, `content-${seq}`));
  const blobOf = async (seq: number): Promise<string> => {
    const name = (await readdir(dir)).find((n) => n.startsWith(`r-${String(seq).padStart(20, '0')}-`)) as string;
    return join(dir, `m-${name.slice(23, 87)}.json.gz`);
  };
  // 4 GiB of zeros in 4 MB: 4097 gzip members of 1 MiB each, which gunzip joins.
  const member = gzipSync(Buffer.alloc(1024 * 1024));
  await writeFile(await blobOf(1), Buffer.concat(Array.from({ length: 4097 }, () => member)));
  await writeFile(await blobOf(2), 'not gzip at all');
  const fifo = await blobOf(3);
  await rm(fifo);
  execFileSync('mkfifo', [fifo]);
  const read: (number | null)[] = [];
  for (const seq of await spool.seqs()) {
    const got = await spool.get(seq);
    read.push(got === null ? null : got.seq);
    if (got === null) await spool.remove(seq);
  }
  t.same(read, [null, null, null, 4], 'each bad report answers null at once; the next one is read');
  t.same(await spool.seqs(), [4]);
  t.equal((await spool.quarantined()).length, 6, 'the three entries and their blobs are kept aside');
  t.ok((await spool.quarantined()).length <= QUARANTINE_KEEP);
});

t.test('quarantine keeps only the newest files', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'drift-spool-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const spool = new Spool(dir, 100);
  for (let seq = 1; seq <= QUARANTINE_KEEP + 4; seq++) {
    await spool.put(entry(seq, `c${seq}`));
    const name = (await readdir(dir)).find((n) => n.startsWith(`r-${String(seq).padStart(20, '0')}-`)) as string;
    await writeFile(join(dir, name), '{ torn');
    t.equal(await spool.get(seq), null);
  }
  t.equal((await spool.quarantined()).length, QUARANTINE_KEEP);
});

t.test('the report just spooled is answered from memory while its files are the ones written; its blob is the gzip of its canonical JSON', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'drift-spool-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const spool = new Spool(dir, 10);
  const e = entry(5, 'fresh');
  await spool.put(e);
  t.equal(await spool.get(5), e, 'the same object, not read back');
  const blob = (await readdir(dir)).find((n) => n.startsWith('m-')) as string;
  const { gunzipSync: gunzip } = await import('node:zlib');
  const { readFile } = await import('node:fs/promises');
  const { canonicalJson } = await import('../../../agent/protocol/canonical.js');
  const { host: _h, collectedAt: _c, ...rest } = e.manifest;
  const text = gunzip(await readFile(join(dir, blob))).toString();
  t.equal(text, canonicalJson(rest), 'one gzip stream of the canonical manifest');
  t.equal(blob, `m-${(await import('node:crypto')).createHash('sha256').update(text).digest('hex')}.json.gz`, 'named by the sha256 of its text');
  t.same((await readdir(dir)).filter((n) => n.includes('.tmp-')), [], 'no temporary file left');
  // Someone replaces the blob with another manifest of the same length: the disk wins.
  const other = entry(5, 'stale');
  const { host: _h2, collectedAt: _c2, ...otherRest } = other.manifest;
  await writeFile(join(dir, blob), gzipSync(canonicalJson(otherRest)));
  const got = await spool.get(5);
  t.not(got, e, 'read from disk once its files changed');
  t.same(got?.manifest.files, other.manifest.files, 'and what is on disk is what is sent');
  await spool.remove(5);
  t.equal(await spool.get(5), null);
});

t.test('a spool that cannot be written leaves no blob nor temporary file and says where', async (t) => {
  // A file where the spool folder should be (root ignores folder modes, so no chmod here).
  const dir = await mkdtemp(join(tmpdir(), 'drift-spool-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const spool = new Spool(join(dir, 'file'), 10);
  await writeFile(join(dir, 'file'), 'not a folder');
  await t.rejects(spool.put(entry(1)), { code: 'DRIFT_ERR_IO' });
  t.same(await readdir(dir), ['file']);
});

t.test('with a section cache, a section whose digest is unchanged is copied from its kept gzip member; the blob reads back the same', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'drift-spool-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const spool = new Spool(dir, 10, undefined, { sectionCache: true });
  const textOf = (e: SpoolEntry): string => {
    const { host: _h, collectedAt: _c, ...rest } = e.manifest;
    return canonicalJson(rest);
  };
  const blobText = async (): Promise<{ name: string; bytes: Buffer; text: string }[]> => {
    const out = [];
    for (const name of (await readdir(dir)).filter((n) => n.startsWith('m-')).sort()) {
      const bytes = await readFile(join(dir, name));
      out.push({ name, bytes, text: gunzipSync(bytes).toString() });
    }
    return out;
  };
  const first = entry(1, 'one');
  await spool.put(first);
  const members = (await readdir(join(dir, 'sections'))).sort();
  t.same(members.map((n) => n.replace(/-[0-9a-f]{64}\./, '-D.')), ['files-D.json.gz', 'packages-D.json.gz'], 'one member per section');
  t.equal(members[0], `files-${(first.manifest.digests.files ?? '').slice(7)}.json.gz`, 'named by the section digest');
  const [blob1] = await blobText();
  t.equal(blob1?.text, textOf(first), 'the members inflate to the canonical manifest');
  t.equal(blob1?.name, `m-${createHash('sha256').update(blob1?.text ?? '').digest('hex')}.json.gz`, 'named by the sha256 of its text');

  // The packages member, compressed otherwise (same text): the next report copies these very bytes.
  const pkgName = members[1] as string;
  const pkgText = gunzipSync(await readFile(join(dir, 'sections', pkgName)));
  const recompressed = gzipSync(pkgText, { level: 1, memLevel: 9 });
  await writeFile(join(dir, 'sections', pkgName), recompressed);
  // Files changed, packages did not.
  const second = entry(2, 'two');
  await spool.put(second);
  const blob2 = (await blobText()).find((b) => b.text === textOf(second));
  t.ok(blob2, 'the second blob reads back as its manifest');
  t.ok(blob2?.bytes.includes(recompressed), 'the unchanged section was copied from its member');
  t.equal(blob2?.name, `m-${createHash('sha256').update(blob2?.text ?? '').digest('hex')}.json.gz`);
  const fresh = new Spool(dir, 10, undefined, { sectionCache: true });
  t.same((await fresh.get(2))?.manifest, second.manifest, 'read back from disk, whole');
  t.equal((await readdir(join(dir, 'sections'))).filter((n) => n.startsWith('files-')).length, 1, 'only the latest member of a section is kept');
});

t.test('a section member that is wrong, a bomb, a FIFO or a folder is not used; the report is spooled whole', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'drift-spool-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const spool = new Spool(dir, 50, undefined, { sectionCache: true });
  const e = entry(1, 'same');
  await spool.put(e);
  const member = (await readdir(join(dir, 'sections'))).find((n) => n.startsWith('files-')) as string;
  const { host: _h, collectedAt: _c, ...rest } = e.manifest;
  const plant: Array<[string, () => Promise<void>]> = [
    ['another text under its name', () => writeFile(join(dir, 'sections', member), gzipSync('{"/etc/motd":{"forged":true}}'))],
    // 257 MiB of zeros in 257 gzip members of 1 MiB: past the inflate bound.
    ['a gzip bomb', () => { const mib = gzipSync(Buffer.alloc(1024 * 1024)); return writeFile(join(dir, 'sections', member), Buffer.concat(Array.from({ length: 257 }, () => mib))); }],
    ['not gzip', () => writeFile(join(dir, 'sections', member), 'plain text')],
    ['a FIFO', async () => { execFileSync('mkfifo', [join(dir, 'sections', member)]); }],
    ['a folder', () => mkdir(join(dir, 'sections', member))],
  ];
  let seq = 2;
  for (const [what, make] of plant) {
    await rm(join(dir, 'sections', member), { force: true, recursive: true });
    await make();
    const again = { ...entry(seq, 'same'), seq };
    await spool.put(again);
    const blob = (await readdir(dir)).find((n) => n.startsWith('m-')) as string;
    t.equal(gunzipSync(await readFile(join(dir, blob))).toString(), canonicalJson(rest), `${what}: the blob holds the manifest`);
    t.same((await new Spool(dir, 50).get(seq))?.manifest.files, e.manifest.files, `${what}: and reads back`);
    seq++;
  }
});
