import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packagesCollector } from '../../../../agent/collectors/packages/index.js';
import type { CollectContext } from '../../../../agent/collectors/contract.js';

/** The package databases are files of the scanned root: hostile input, read bounded and without following links or blocking. */

const ctx = (root: string): CollectContext => ({ root, proc: null, rules: {} as CollectContext['rules'], stateDir: null, forceRehash: false });
const STATUS = 'Package: a\nStatus: install ok installed\nArchitecture: all\nVersion: 1\n\n';

function tempRoot(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'drift-pkg-hostile-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'var/lib/dpkg/info'), { recursive: true });
  return dir;
}

t.test('a FIFO planted as the dpkg status file does not hang the scan: it is unread', async (t) => {
  const root = tempRoot(t);
  execFileSync('mkfifo', [join(root, 'var/lib/dpkg/status')]);
  const r = await packagesCollector.collect(ctx(root));
  t.same(r.entries, {});
  t.same(r.unread.map((u) => u.path), ['/var/lib/dpkg/status']);
  t.match(r.unread[0]?.reason ?? '', /not a regular file.*FIFO/);
});

t.test('a FIFO as a files list, an updates journal entry or the diversions file is reported, the rest read', async (t) => {
  const root = tempRoot(t);
  writeFileSync(join(root, 'var/lib/dpkg/status'), STATUS);
  execFileSync('mkfifo', [join(root, 'var/lib/dpkg/info/a.list')]);
  execFileSync('mkfifo', [join(root, 'var/lib/dpkg/diversions')]);
  mkdirSync(join(root, 'var/lib/dpkg/updates'));
  execFileSync('mkfifo', [join(root, 'var/lib/dpkg/updates/0001')]);
  const r = await packagesCollector.collect(ctx(root));
  t.same(r.entries['dpkg:a:all'], { version: '1', source: 'a' });
  const paths = r.unread.map((u) => u.path).sort();
  t.same(paths, ['/var/lib/dpkg/diversions', '/var/lib/dpkg/info/a.list', '/var/lib/dpkg/updates']);
});

t.test('a status file that is a symlink (to a file outside the root) is not followed', async (t) => {
  const root = tempRoot(t);
  const outside = join(root, 'outside-status');
  writeFileSync(outside, STATUS);
  symlinkSync(outside, join(root, 'var/lib/dpkg/status'));
  const r = await packagesCollector.collect(ctx(root));
  t.same(r.entries, {});
  t.same(r.unread.map((u) => `${u.path} ${u.reason}`), ['/var/lib/dpkg/status ELOOP']);
});
