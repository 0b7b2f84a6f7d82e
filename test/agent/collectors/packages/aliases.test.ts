import t from 'tap';
import { mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { addResolvedAliases } from '../../../../agent/collectors/packages/aliases.js';
import type { PathOwner } from '../../../../agent/collectors/contract.js';

t.test('owned paths listed through symlinked folders are owned where they resolve, inside the root', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'drift-aliases-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  await mkdir(join(root, 'usr', 'bin'), { recursive: true });
  await mkdir(join(root, 'usr', 'lib64'), { recursive: true });
  await mkdir(join(root, 'etc'));
  await symlink('usr/bin', join(root, 'bin'));
  await symlink('/usr/lib64', join(root, 'lib64'));  // absolute: must resolve inside the root, not on this host
  const coreutils: PathOwner = { owner: 'dpkg:coreutils', conffile: false };
  const libc: PathOwner = { owner: 'dpkg:libc6', conffile: false };
  const other: PathOwner = { owner: 'dpkg:other', conffile: false };
  const owners = new Map<string, PathOwner>([
    ['/bin/false', coreutils],
    ['/lib64/ld-linux-x86-64.so.2', libc],
    ['/etc/hosts', other],
    ['/bin/true', coreutils],
    ['/usr/bin/true', other],
  ]);
  addResolvedAliases(root, owners);
  t.equal(owners.get('/usr/bin/false'), coreutils, 'relative folder link');
  t.equal(owners.get('/usr/lib64/ld-linux-x86-64.so.2'), libc, 'absolute folder link, resolved in the root');
  t.equal(owners.get('/usr/bin/true'), other, 'a path already owned keeps its owner');
  t.equal(owners.size, 7, 'nothing else is added');
});
