import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { HashError, hashFileSync, hashFiles, type HashJob } from '../../agent/hash.js';

/** The expected digests come from coreutils' sha256sum, never from the module under test. */
function sha256sum(paths: string[]): string[] {
  const out = execFileSync('sha256sum', ['--', ...paths], { encoding: 'utf8' });
  return out.trim().split('\n').map((line) => line.slice(0, 64));
}

function tree(t: { teardown: (fn: () => void) => void }, count: number): HashJob[] {
  const dir = mkdtempSync(join(tmpdir(), 'drift-hash-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const jobs: HashJob[] = [];
  for (let i = 0; i < count; i++) {
    const path = join(dir, `f${i}`);
    writeFileSync(path, `file ${i}\n`);
    jobs.push({ path, size: 0 });
  }
  jobs.push({ path: join(dir, 'missing'), size: 0 });
  return jobs;
}

t.test('hashes on a pool match the file contents, in job order', async (t) => {
  const jobs = tree(t, 400);
  const hashes = await hashFiles(jobs, { workers: 2, inlineBelowBytes: 0 });
  t.same(hashes.slice(0, -1), sha256sum(jobs.slice(0, -1).map((j) => j.path)));
  t.same(hashes.at(-1), new HashError('ENOENT'));
});

t.test('hashFileSync agrees with sha256sum, empty and multi-megabyte files included', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'drift-hash-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const files = { empty: Buffer.alloc(0), small: Buffer.from('hello\n'), big: Buffer.alloc(3 * 1024 * 1024 + 17, 0x61) };
  const paths = Object.keys(files).map((n) => join(dir, n));
  for (const [name, bytes] of Object.entries(files)) writeFileSync(join(dir, name), bytes);
  t.same(paths.map((p) => hashFileSync(p)), sha256sum(paths));
});

t.test('a worker that exits before answering: its batches are hashed on the calling thread', async (t) => {
  const jobs = tree(t, 400);
  let started = 0;
  const hashes = await hashFiles(jobs, {
    workers: 3,
    inlineBelowBytes: 0,
    onWorker: (worker) => {
      started += 1;
      // Stopped with two batches in flight: it exits before answering either.
      void worker.terminate();
    },
  });
  t.equal(started, 2, 'the pool did start workers (400 files are 4 batches)');
  t.same(hashes.slice(0, -1), sha256sum(jobs.slice(0, -1).map((j) => j.path)), 'every file hashed, none lost with the worker');
  t.same(hashes.at(-1), new HashError('ENOENT'));
});
