import t from 'tap';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readHostInfo } from '../../agent/identity.js';

function root(t: { teardown: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'drift-identity-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'etc'));
  return dir;
}

t.test('hostname and machine-id are read from the root, trimmed', async (t) => {
  const dir = root(t);
  writeFileSync(join(dir, 'etc/hostname'), 'web-1\n');
  writeFileSync(join(dir, 'etc/machine-id'), '0123abcd\n');
  t.same(await readHostInfo(dir), { hostname: 'web-1', machineId: '0123abcd' });
});

t.test('missing identity files give empty fields', async (t) => {
  t.same(await readHostInfo(root(t)), { hostname: '', machineId: '' });
});

t.test('an identity file that exists but cannot be read is an error naming it, never a guess', async (t) => {
  const dir = root(t);
  writeFileSync(join(dir, 'etc/hostname'), 'web-1\n');
  // A folder where the file should be: readFile fails with EISDIR, an error other than ENOENT.
  mkdirSync(join(dir, 'etc/machine-id'));
  await t.rejects(readHostInfo(dir), { name: 'DriftError', code: 'DRIFT_ERR_IO', message: new RegExp(`${join(dir, 'etc/machine-id')}: EISDIR`) });

  rmSync(join(dir, 'etc/machine-id'), { recursive: true });
  rmSync(join(dir, 'etc/hostname'));
  mkdirSync(join(dir, 'etc/hostname'));
  await t.rejects(readHostInfo(dir), { name: 'DriftError', code: 'DRIFT_ERR_IO', message: /etc\/hostname: EISDIR/ });
});
