/**
 * Set up and tear down what bench/agentless.sh measures: a copy of the debootstrap
 * root with this checkout's drift installed, its baseline, and a real sshd on
 * 127.0.0.1 whose "/" is that root (the same harness as test/integration/ssh.test.ts).
 *
 * Usage: node dist/bench/agentless-setup.js up    → prints shell assignments (WORK, ROOT, PORT, KEY, KNOWN, BASELINE, SSHD_PID)
 *        node dist/bench/agentless-setup.js down WORK SSHD_PID
 */
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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
  // The single executable (npm run package), when built, as a baked image carries it: before the bake.
  const built = join(driftBin, '..', '..', 'out');
  if (existsSync(join(built, 'drift'))) for (const f of ['drift', 'rules', 'node_modules']) cpSync(join(built, f), join(root, 'opt', 'drift', f), { recursive: true });
  const baseline = join(work, 'baseline.json');
  const bake = spawnSync(process.execPath, [driftBin, 'baseline', '--root', root, '--image-id', 'bench', '--out', baseline, '--state-dir', join(work, 'state'), '--stamp', '--sections', 'packages,files'], { encoding: 'utf8' });
  if (bake.status !== 0) throw new Error(`baseline failed: ${bake.stderr}`);
  const sshd = await startSshd(root, join(work, 'sshd'));
  // Outlive this process: the same sshd, restarted detached (sshd cannot daemonize where /dev/null is
  // missing) on the same port and config, its log in a file; wait for its "listening" line (at most 10 s).
  await sshd.stop();
  const log = join(work, 'sshd', 'sshd.log');
  const out = openSync(log, 'w');
  const child = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', join(work, 'sshd', 'sshd_config')], { detached: true, stdio: ['ignore', 'ignore', out] });
  child.unref();
  for (let i = 0; i < 100 && !/Server listening/.test(readFileSync(log, 'utf8')); i++) await new Promise((r) => setTimeout(r, 100));
  if (!/Server listening/.test(readFileSync(log, 'utf8'))) throw new Error(`sshd did not start: ${readFileSync(log, 'utf8')}`);
  const pid = child.pid ?? 0;
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
