import { appendFile, chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeRoot } from '../e2e/helpers.js';
import { must } from './run.js';

/**
 * Roots for the first-boot tests: an image as a bake sees it (no machine-id yet, no
 * default user), and an instance of it after cloud-init's first boot (identity,
 * /etc/hosts, the default user `admin` with its group, sudoers line and SSH keys, and
 * cloud-init's instance data naming the launch keys).
 */

export const KEY_A = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA launch-key';
export const KEY_B = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB intruder';

/** An image root: makeRoot's files, account files, /etc/hosts and an empty sudoers.d. */
export async function makeImage(dir: string): Promise<string> {
  await makeRoot(dir, { machineId: 'uninitialized', hostname: 'localhost' });
  await writeFile(join(dir, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/bash\nsshd:x:100:65534::/run/sshd:/usr/sbin/nologin\n');
  await writeFile(join(dir, 'etc/group'), 'root:x:0:\nadm:x:4:\nsudo:x:27:\n');
  await writeFile(join(dir, 'etc/hosts'), '127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n');
  await mkdir(join(dir, 'etc/sudoers.d'), { recursive: true });
  await writeFile(join(dir, 'etc/sudoers.d/README'), '# files here are read by sudo\n');
  await mkdir(join(dir, 'home'), { recursive: true });
  return dir;
}

/** What first boot gives an instance. `metadataKeys: null` writes no instance data. */
export interface Boot {
  machineId: string;
  hostname: string;
  /** Lines of the default user's authorized_keys. */
  keys: string[];
  metadataKeys: string[] | null;
}

/** Copy `image` to `dir` and apply cloud-init's first boot to it. */
export async function bootInstance(image: string, dir: string, boot: Boot): Promise<string> {
  await must('cp', ['-a', `${image}/.`, dir]);
  await writeFile(join(dir, 'etc/machine-id'), `${boot.machineId}\n`);
  await writeFile(join(dir, 'etc/hostname'), `${boot.hostname}\n`);
  await writeFile(join(dir, 'etc/hosts'), `127.0.0.1 localhost\n127.0.1.1 ${boot.hostname}\n::1 localhost ip6-localhost ip6-loopback\n`);
  await appendFile(join(dir, 'etc/passwd'), 'admin:x:1000:1000:Debian:/home/admin:/bin/bash\n');
  const group = await readFile(join(dir, 'etc/group'), 'utf8');
  await writeFile(join(dir, 'etc/group'), `${group.replace('sudo:x:27:\n', 'sudo:x:27:admin\n')}admin:x:1000:\n`);
  await writeFile(join(dir, 'etc/sudoers.d/90-cloud-init-users'), '# Created by cloud-init v. 22.4.2 on Tue, 01 Dec 2026 00:00:00 +0000\n\n# User rules for admin\nadmin ALL=(ALL) NOPASSWD:ALL\n', { mode: 0o440 });
  await mkdir(join(dir, 'home/admin/.ssh'), { recursive: true });
  await writeFile(join(dir, 'home/admin/.ssh/authorized_keys'), `${boot.keys.join('\n')}\n`, { mode: 0o600 });
  await chmod(join(dir, 'home/admin/.ssh'), 0o700);
  await must('chown', ['-R', '1000:1000', join(dir, 'home/admin')]);
  if (boot.metadataKeys !== null) await writeInstanceData(dir, boot.metadataKeys);
  return dir;
}

/** cloud-init's instance-data.json with `v1.public_ssh_keys`. */
export async function writeInstanceData(dir: string, keys: string[]): Promise<void> {
  await mkdir(join(dir, 'run/cloud-init'), { recursive: true });
  const doc = { v1: { cloud_name: 'aws', instance_id: 'i-0123456789abcdef0', public_ssh_keys: keys }, ds: { meta_data: {} } };
  await writeFile(join(dir, 'run/cloud-init/instance-data.json'), JSON.stringify(doc, null, 1));
}
