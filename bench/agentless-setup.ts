/**
 * Set up and tear down what bench/agentless.sh measures: a copy of the debootstrap
 * root with this checkout's drift installed, its baseline, and a real sshd on
 * 127.0.0.1 whose "/" is that root (the same harness as test/integration/ssh.test.ts).
 *
 * Usage: node dist/bench/agentless-setup.js up    → prints shell assignments (WORK, ROOT, PORT, KEY, KNOWN, BASELINE, SSHD_PID)
 *        node dist/bench/agentless-setup.js down WORK SSHD_PID
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { copyRoot, debianMinbase } from '../test/helpers/debian.js';
import { installDrift, sshWorkDir, startSshd } from '../test/helpers/sshd.js';
import { driftBin } from '../test/helpers/paths.js';

const [cmd, ...args] = process.argv.slice(2);
if (cmd === 'up') {
  const work = sshWorkDir();
  const root = await copyRoot(debianMinbase, join(work, 'root'));
  writeFileSync(join(root, 'etc', 'machine-id'), '0123456789abcdef0123456789abcdef\n');
  installDrift(root);
  const baseline = join(work, 'baseline.json');
  const bake = spawnSync(process.execPath, [driftBin, 'baseline', '--root', root, '--image-id', 'bench', '--out', baseline, '--state-dir', join(work, 'state'), '--stamp', '--sections', 'packages,files'], { encoding: 'utf8' });
  if (bake.status !== 0) throw new Error(`baseline failed: ${bake.stderr}`);
  const sshd = await startSshd(root, join(work, 'sshd'));
  // Outlive this process: the same sshd, restarted as a daemon on the same port and config.
  await sshd.stop();
  const daemon = spawnSync('/usr/sbin/sshd', ['-f', join(work, 'sshd', 'sshd_config')], { encoding: 'utf8' });
  if (daemon.status !== 0) throw new Error(`sshd did not start as a daemon: ${daemon.stderr}`);
  // The daemon writes its pid file once it has detached: wait for it (at most 10 s).
  const pidFile = join(work, 'sshd', 'sshd.pid');
  for (let i = 0; i < 100 && !existsSync(pidFile); i++) await new Promise((r) => setTimeout(r, 100));
  const pid = Number(readFileSync(pidFile, 'utf8').trim());
  process.stdout.write(`WORK=${work}\nROOT=${root}\nPORT=${sshd.port}\nKEY=${sshd.clientKey}\nKNOWN=${sshd.knownHosts}\nBASELINE=${baseline}\nSSHD_PID=${pid}\n`);
  process.exit(0);
} else if (cmd === 'down' && args.length === 2) {
  const [work, pid] = args as [string, string];
  try { process.kill(Number(pid), 'SIGTERM'); } catch { /* already gone */ }
  if (work.startsWith('/var/cache/drift-tests/ssh-')) rmSync(work, { recursive: true, force: true });
} else {
  process.stderr.write('usage: agentless-setup.js up | down WORK SSHD_PID\n');
  process.exit(2);
}
