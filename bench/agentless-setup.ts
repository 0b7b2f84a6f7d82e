/**
 * Set up and tear down what bench/agentless.sh measures: a copy of the debootstrap
 * root with this checkout's drift installed, its baseline, and a real sshd on
 * 127.0.0.1 whose "/" is that root (the same harness as test/integration/ssh.test.ts).
 *
 * Usage: node dist/bench/agentless-setup.js up [--addresses N] [--no-drift]
 *          → prints shell assignments (WORK, ROOT, PORT, KEY, KNOWN, BASELINE, SSHD_PID: comma-separated)
 *        node dist/bench/agentless-setup.js down WORK SSHD_PID
 * --addresses N: sshd listens on 127.0.0.1 … 127.0.0.N (same port), and KNOWN lists the host
 * key for each, so a sweep has N distinct targets (bench/sweep-ssh.sh). --no-drift: the root
 * has no drift installed (a host scanned agentless).
 */
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { copyRoot, debianMinbase } from '../test/helpers/debian.js';
import { installDrift, sshWorkDir, startSshd } from '../test/helpers/sshd.js';
import { driftBin } from '../test/helpers/paths.js';

const [cmd, ...args] = process.argv.slice(2);
if (cmd === 'up') {
  const at = args.indexOf('--addresses');
  const addresses = at >= 0 ? Number(args[at + 1]) : 1;
  if (!Number.isInteger(addresses) || addresses < 1 || addresses > 254) throw new Error('--addresses: 1 to 254');
  const withDrift = !args.includes('--no-drift');
  const work = sshWorkDir();
  const root = await copyRoot(debianMinbase, join(work, 'root'));
  writeFileSync(join(root, 'etc', 'machine-id'), '0123456789abcdef0123456789abcdef\n');
  if (withDrift) {
    installDrift(root);
    // The single executable (npm run package), when built, as a baked image carries it: before the bake.
    const built = join(driftBin, '..', '..', 'out');
    if (existsSync(join(built, 'drift'))) for (const f of ['drift', 'rules', 'node_modules']) cpSync(join(built, f), join(root, 'opt', 'drift', f), { recursive: true });
  }
  const baseline = join(work, 'baseline.json');
  const bake = spawnSync(process.execPath, [driftBin, 'baseline', '--root', root, '--image-id', 'bench', '--out', baseline, '--state-dir', join(work, 'state'), '--stamp', '--sections', 'packages,files'], { encoding: 'utf8' });
  if (bake.status !== 0) throw new Error(`baseline failed: ${bake.stderr}`);
  const sshd = await startSshd(root, join(work, 'sshd'));
  // Outlive this process: the same sshd, restarted detached (sshd cannot daemonize where /dev/null is
  // missing) on the same port and config, its log in a file; wait for its "listening" lines (at most 10 s).
  await sshd.stop();
  // One sshd per 16 addresses (OpenSSH's MAX_LISTEN_SOCKS), each with its own copy of the config.
  const config = readFileSync(join(work, 'sshd', 'sshd_config'), 'utf8');
  const pids: number[] = [];
  for (let first = 1; first <= addresses; first += 16) {
    const last = Math.min(addresses, first + 15);
    const listen = Array.from({ length: last - first + 1 }, (_, i) => `ListenAddress 127.0.0.${first + i}`).join('\n');
    const file = join(work, 'sshd', first === 1 ? 'sshd_config' : `sshd_config.${first}`);
    writeFileSync(file, config.replace(/^ListenAddress 127\.0\.0\.1$/m, listen).replace(/^PidFile (.*)$/m, `PidFile $1.${first}`));
    const log = join(work, 'sshd', `sshd.${first}.log`);
    const child = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', file], { detached: true, stdio: ['ignore', 'ignore', openSync(log, 'w')] });
    child.unref();
    const listening = (): number => readFileSync(log, 'utf8').split('Server listening').length - 1;
    for (let i = 0; i < 100 && listening() < last - first + 1; i++) await new Promise((r) => setTimeout(r, 100));
    if (listening() < last - first + 1) throw new Error(`sshd did not start: ${readFileSync(log, 'utf8')}`);
    pids.push(child.pid ?? 0);
  }
  writeFileSync(sshd.knownHosts, Array.from({ length: addresses }, (_, i) => `[127.0.0.${i + 1}]:${sshd.port} ${sshd.hostKeyPub}\n`).join(''), { mode: 0o600 });
  process.stdout.write(`WORK=${work}\nROOT=${root}\nPORT=${sshd.port}\nKEY=${sshd.clientKey}\nKNOWN=${sshd.knownHosts}\nBASELINE=${baseline}\nSSHD_PID=${pids.join(',')}\n`);
  process.exit(0);
} else if (cmd === 'down' && args.length === 2) {
  const [work, pids] = args as [string, string];
  for (const pid of pids.split(',')) {
    try { process.kill(Number(pid), 'SIGTERM'); } catch { /* already gone */ }
  }
  if (work.startsWith('/var/cache/drift-tests/ssh-')) rmSync(work, { recursive: true, force: true });
} else {
  process.stderr.write('usage: agentless-setup.js up | down WORK SSHD_PID\n');
  process.exit(2);
}
