import t from 'tap';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StatPool, type StatView } from '../../agent/walk.js';

const view = (): StatView => ({ mode: 0, uid: 0, gid: 0, nlink: 0, size: 0, mtime: 0, view: new DataView(new ArrayBuffer(0)), stampAt: 0 });

t.test('a block reused after its refs are forgotten keeps no error, target or stat of the paths before', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'drift-walk-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'file'), 'hello');
  symlinkSync('file', join(dir, 'link'));
  const pool = new StatPool({ thread: false });
  const gone = pool.statNow(join(dir, 'gone'));
  const link = pool.statNow(join(dir, 'link'));
  t.equal(pool.error(gone), 'ENOENT');
  t.equal(pool.target(link), 'file');
  pool.forgetRefs();
  // The same slots, now for other paths.
  const file = pool.statNow(join(dir, 'file'));
  const again = pool.statNow(join(dir, 'file'));
  t.equal(file, 0, 'refs count from 0 again');
  t.equal(pool.error(file), undefined, 'the error of the path before is not this path\'s');
  t.equal(pool.target(again), undefined, 'nor its symlink target');
  t.equal(pool.read(file, view()).size, 5);
  // More paths than one block holds, forgotten and stat'ed again: every result is its own path's.
  for (let round = 0; round < 3; round++) {
    const refs = Array.from({ length: 1500 }, (_, i) => pool.statNow(join(dir, i % 3 === 0 ? 'gone' : i % 3 === 1 ? 'link' : 'file')));
    const wrong = refs.filter((ref, i) => {
      const kind = i % 3;
      if (kind === 0) return pool.error(ref) !== 'ENOENT';
      if (kind === 1) return pool.error(ref) !== undefined || pool.target(ref) !== 'file';
      return pool.error(ref) !== undefined || pool.target(ref) !== undefined || pool.read(ref, view()).size !== 5;
    });
    t.same(wrong, [], `round ${round}: every ref reads its own path`);
    pool.forgetRefs();
  }
});
