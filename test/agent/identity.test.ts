import t from 'tap';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
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
  // A folder where the file should be: an error other than ENOENT.
  mkdirSync(join(dir, 'etc/machine-id'));
  await t.rejects(readHostInfo(dir), { name: 'DriftError', code: 'DRIFT_ERR_IO', message: `cannot read identity file ${join(dir, 'etc/machine-id')}: not a regular file when opened (a folder); it must be a regular file the agent can read` });

  rmSync(join(dir, 'etc/machine-id'), { recursive: true });
  rmSync(join(dir, 'etc/hostname'));
  mkdirSync(join(dir, 'etc/hostname'));
  await t.rejects(readHostInfo(dir), { name: 'DriftError', code: 'DRIFT_ERR_IO', message: /etc\/hostname: not a regular file when opened \(a folder\)/ });
});

t.test('hostile identity files: a symlink to a root-only file, a FIFO, /dev/zero, a huge file', async (t) => {
  const dir = root(t);
  const secret = join(dir, 'secret');
  writeFileSync(secret, 'root-only secret\n', { mode: 0o600 });
  chmodSync(secret, 0o600);
  symlinkSync(secret, join(dir, 'etc/hostname'));
  await t.rejects(readHostInfo(dir), { code: 'DRIFT_ERR_IO', message: /etc\/hostname: it is a symlink, which is never followed/ }, 'the secret never becomes the hostname');
  rmSync(join(dir, 'etc/hostname'));
  writeFileSync(join(dir, 'etc/hostname'), 'web-1\n');

  execFileSync('mkfifo', [join(dir, 'etc/machine-id')]);
  await t.rejects(readHostInfo(dir), { message: /machine-id: not a regular file when opened \(a FIFO\)/ }, 'a FIFO without a writer does not hang the scan');
  rmSync(join(dir, 'etc/machine-id'));
  execFileSync('mknod', [join(dir, 'etc/machine-id'), 'c', '1', '5']);
  await t.rejects(readHostInfo(dir), { message: /machine-id: not a regular file when opened \(a character device\)/ }, '/dev/zero made in its place is not read');
  rmSync(join(dir, 'etc/machine-id'));
  symlinkSync('/dev/zero', join(dir, 'etc/machine-id'));
  await t.rejects(readHostInfo(dir), { message: /machine-id: it is a symlink/ });
  rmSync(join(dir, 'etc/machine-id'));
  execFileSync('truncate', ['-s', '640M', join(dir, 'etc/machine-id')]);
  await t.rejects(readHostInfo(dir), { message: /machine-id: larger than 1024 bytes/ }, 'a 640 MB file is refused unread');
  rmSync(join(dir, 'etc/machine-id'));
  mkdirSync(join(dir, 'etc/drift'));
  symlinkSync(secret, join(dir, 'etc/drift/image.json'));
  await t.rejects(readHostInfo(dir), { message: /image stamp .*image\.json: it is a symlink/ });
});

t.test('the cloud instance id is read offline: cloud-init cache, then instance data, then the EC2 asset tag', async (t) => {
  const dir = root(t);
  const put = (rel: string, text: string): void => { mkdirSync(join(dir, rel, '..'), { recursive: true }); writeFileSync(join(dir, rel), text); };
  t.equal((await readHostInfo(dir)).instanceId, undefined, 'none of them: no id');
  put('sys/class/dmi/id/board_asset_tag', 'Default string\n');
  t.equal((await readHostInfo(dir)).instanceId, undefined, 'a vendor asset tag is not an instance id');
  put('sys/class/dmi/id/board_asset_tag', 'i-0123456789abcdef0\n');
  t.equal((await readHostInfo(dir)).instanceId, 'i-0123456789abcdef0', 'EC2 sets the asset tag');
  put('run/cloud-init/instance-data.json', JSON.stringify({ v1: { instance_id: 'i-0aaaaaaaaaaaaaaaa' } }));
  t.equal((await readHostInfo(dir)).instanceId, 'i-0aaaaaaaaaaaaaaaa', 'instance data before the asset tag');
  put('var/lib/cloud/data/instance-id', 'iid-datasource-none\n');
  t.equal((await readHostInfo(dir)).instanceId, 'i-0aaaaaaaaaaaaaaaa', 'cloud-init without a cloud is not an id');
  put('var/lib/cloud/data/instance-id', 'i-0bbbbbbbbbbbbbbbb\n');
  t.equal((await readHostInfo(dir)).instanceId, 'i-0bbbbbbbbbbbbbbbb', 'the cached id first');
  t.equal((await readHostInfo(dir, { instanceId: 'i-given' })).instanceId, 'i-given', 'an explicit id wins');
});

t.test('hostile instance id files are bounded and refused, never fatal', async (t) => {
  const dir = root(t);
  mkdirSync(join(dir, 'var/lib/cloud/data'), { recursive: true });
  mkdirSync(join(dir, 'run/cloud-init'), { recursive: true });
  writeFileSync(join(dir, 'var/lib/cloud/data/instance-id'), 'i-'.padEnd(10_000, 'a'));
  writeFileSync(join(dir, 'run/cloud-init/instance-data.json'), `{"v1":{"instance_id":"i-1; rm -rf /"}}`);
  t.equal((await readHostInfo(dir)).instanceId, undefined, 'too long, and not an id');
  rmSync(join(dir, 'var/lib/cloud/data/instance-id'));
  mkdirSync(join(dir, 'var/lib/cloud/data/instance-id'));
  writeFileSync(join(dir, 'run/cloud-init/instance-data.json'), '{not json');
  t.equal((await readHostInfo(dir)).instanceId, undefined, 'a folder and broken JSON: no id, no error');
});
