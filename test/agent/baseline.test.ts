import t from 'tap';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { baselineDigest } from '../../agent/baseline.js';
import { writeFileAtomic } from '../../agent/atomic.js';
import { signBaseline, signedBytes } from '../../agent/sign.js';
import type { Manifest } from '../../agent/protocol/manifest.js';

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
