import t from 'tap';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BAKED_BASELINE_MAX_BYTES, BAKED_BASELINE_PATH, baselineDigest, makeBaseline, readBakedScope, scopeOf } from '../../agent/baseline.js';
import { writeFileAtomic } from '../../agent/atomic.js';
import { execFileSync } from 'node:child_process';
import { signBaseline, signedBytes } from '../../agent/sign.js';
import { BaselineSchema, type Baseline, type Manifest } from '../../agent/protocol/manifest.js';

function folder(t: { teardown: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'drift-baseline-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('writeFileAtomic writes the file and leaves no temp file', async (t) => {
  const dir = folder(t);
  await writeFileAtomic(join(dir, 'out.json'), 'hello\n');
  t.equal(readFileSync(join(dir, 'out.json'), 'utf8'), 'hello\n');
  t.same(readdirSync(dir), ['out.json']);
});

t.test('writeFileAtomic removes its temp file when the write fails', async (t) => {
  const dir = folder(t);
  // A non-empty folder at the target: the temp file is written, then the rename fails.
  mkdirSync(join(dir, 'out.json'));
  writeFileSync(join(dir, 'out.json', 'keep'), '');
  await t.rejects(writeFileAtomic(join(dir, 'out.json'), 'hello\n'), { name: 'DriftError', code: 'DRIFT_ERR_IO', message: /out\.json/ });
  t.same(readdirSync(dir), ['out.json'], 'no temp file left behind');
});

t.test('concurrent writes to one path do not share a temp file', async (t) => {
  const dir = folder(t);
  const path = join(dir, 'out.json');
  const texts = Array.from({ length: 20 }, (_, i) => `${'x'.repeat(10_000)}${i}\n`);
  await Promise.all(texts.map((text) => writeFileAtomic(path, text)));
  t.ok(texts.includes(readFileSync(path, 'utf8')), 'the file is one whole write');
  t.same(readdirSync(dir), ['out.json']);
});

t.test('baselineDigest is the sha256 of the signed bytes, the same signed or not', async (t) => {
  const manifest = { schema: 'drift.manifest/v1', host: { hostname: 'h', machineId: 'm' }, files: {} } as unknown as Manifest;
  const { privateKey } = generateKeyPairSync('ed25519');
  const signed = signBaseline(manifest, privateKey);
  const expected = `sha256:${createHash('sha256').update(signedBytes(manifest)).digest('hex')}`;
  t.equal(baselineDigest(manifest), expected);
  t.equal(baselineDigest(signed), expected, 'signing does not change the digest');
});

t.test('readBakedScope: only the baseline the stamp names, within a size bound', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'drift-baked-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, 'etc', 'drift'), { recursive: true });
  const m: Manifest = { schema: 'drift.manifest/v1', host: { hostname: 'h', machineId: 'm', image: { id: 'img' } }, collectedAt: '2026-01-01T00:00:00Z', agent: { version: '0' }, digests: { root: `sha256:${'0'.repeat(64)}` }, unread: [] };
  const b = makeBaseline(m, { id: 'img' }, null, scopeOf({ vars: {}, watch: [{ path: '/srv/**' }], ignore: [], expect: [], policy: [] }));
  const path = join(root, BAKED_BASELINE_PATH);
  writeFileSync(path, JSON.stringify(b));
  const parse = (d: unknown): Baseline | null => BaselineSchema.safeParse(d).data ?? null;
  t.match(await readBakedScope(root, baselineDigest(b), parse), { baseline: { scope: { watch: [{ path: '/srv/**' }] } } });
  t.match(await readBakedScope(root, `sha256:${'f'.repeat(64)}`, parse), { none: /but the image stamp names sha256:f+/ });
  t.match(await readBakedScope(root, undefined, parse), { none: /no image stamp/ });
  // A sparse file as large as a hostile host may make it: refused from its size, never read.
  execFileSync('truncate', ['-s', String(BAKED_BASELINE_MAX_BYTES + 1), path]);
  t.match(await readBakedScope(root, baselineDigest(b), parse), { none: /more than the 268435456 bytes a baseline may have/ });
});
