import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { driftBin } from '../../helpers/paths.js';
import { run } from '../../helpers/run.js';

/**
 * Processes and ports of services, not sessions, on a real process tree: a PID,
 * mount, network and cgroup namespace of its own (so that the machine's other
 * processes and sockets stay out), whose PID 1 stands for init. A "build
 * pipeline" runs in it while the baseline is taken; a scan after it ended must
 * find nothing; a process re-parented to PID 1 listening on a port, and a
 * process placed in a system.slice unit's cgroup, must be found.
 */

// systemd's own v1 hierarchy where the machine has one (this one does), else the unified one.
const cgroupV1 = existsSync('/sys/fs/cgroup/systemd/cgroup.procs') ? '/sys/fs/cgroup/systemd' : '/sys/fs/cgroup';
const work = await mkdtemp(join(tmpdir(), 'drift-services-'));
const cg = join(cgroupV1, `drift-test-${process.pid}`);
const unit = join(cg, 'system.slice', 'drift-test-evil.service');
const started: ChildProcess[] = [];
const closed = new Set<ChildProcess>();
t.teardown(async () => {
  // Each command runs in a process group of its own, which its orphans keep; killing
  // the namespace's PID 1 kills every process left in it. Then the cgroups are empty.
  for (const c of started) {
    try { process.kill(-(c.pid as number), 'SIGKILL'); } catch { /* the group is gone */ }
  }
  for (const c of started) if (!closed.has(c)) await once(c, 'close');
  for (const dir of [unit, join(cg, 'system.slice'), cg]) await rmdir(dir).catch(() => undefined);
  await rm(work, { recursive: true, force: true });
});

const root = join(work, 'root');
await mkdir(join(root, 'etc'), { recursive: true });
await writeFile(join(root, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
await mkdir(unit, { recursive: true });

/** Start a command in its own process group; resolves once it printed `ready`. */
async function start(cmd: string, args: string[]): Promise<ChildProcess> {
  const child = spawn(cmd, args, { detached: true, stdio: ['ignore', 'pipe', 'inherit'] });
  started.push(child);
  child.on('close', () => closed.add(child));
  let out = '';
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on('data', (b: Buffer) => {
      out += b.toString();
      if (out.includes('ready')) resolve();
    });
    child.on('close', (code) => reject(new Error(`${cmd} ${args.join(' ')} exited ${code} before it was ready: ${out}`)));
  });
  return child;
}

// The namespace's init: a shell in the test cgroup that unshares and becomes PID 1.
const init = await start('sh', ['-c', `echo $$ > ${cg}/cgroup.procs && exec unshare --pid --fork --mount-proc --net --cgroup sh -c 'echo ready; exec sleep 3600'`]);
const children = (await readFile(`/proc/${init.pid}/task/${init.pid}/children`, 'utf8')).trim().split(/\s+/);
const nsInit = Number(children[0]);
const enter = (args: string[]): string[] => ['-t', String(nsInit), '-p', '-m', '-n', '-C', ...args];
const listener = (port: number): string => `require('node:net').createServer().listen(${port}, '0.0.0.0', () => console.log('ready'))`;

/** Run drift inside the namespace (its parent, nsenter, is outside: no service). */
const driftIn = (args: string[]) => run('nsenter', enter([process.execPath, driftBin, ...args]), { env: { ...process.env, NO_COLOR: '1' } });

const baseline = join(work, 'baseline.json');
const state = join(work, 'state');
const common = ['--root', root, '--proc', '/proc', '--state-dir', state, '--sections', 'processes,ports'];

t.test('a baseline taken while a build pipeline runs records none of it', async (t) => {
  // The pipeline: a shell, a pipe of sleep and cat, and a test server on an ephemeral port.
  const pipeline = await start('nsenter', enter(['sh', '-c', `sleep 3600 | cat & ${process.execPath} -e "${listener(0)}"`]));
  const b = await driftIn(['baseline', '--image-id', 'img', '--out', baseline, ...common]);
  t.equal(b.code, 0, b.stderr);
  const recorded = JSON.parse(await readFile(baseline, 'utf8')) as { processes: Record<string, unknown>; ports: Record<string, unknown> };
  t.same(Object.keys(recorded.processes), ['/usr/bin/sleep|root'], 'only PID 1 (init) is a service; the pipeline, the test server and drift itself are not');
  t.same(recorded.ports, {}, 'the test server\'s ephemeral port is not a service\'s');
  process.kill(-(pipeline.pid as number), 'SIGTERM');
  await once(pipeline, 'close');
  const scan = await driftIn(['scan', '--baseline', baseline, '--format', 'json', ...common]);
  t.equal(scan.code, 0, `no findings once the pipeline ended: ${scan.stdout}${scan.stderr}`);
});

t.test('a process re-parented to PID 1 and listening, and a process in a system.slice unit, are found', async (t) => {
  // `sh -c 'node ... &'` exits at once: node is orphaned and re-parented to the namespace's PID 1.
  await start('nsenter', enter(['sh', '-c', `${process.execPath} -e "${listener(4567)}" &`]));
  const orphan = await driftIn(['scan', '--baseline', baseline, '--format', 'json', ...common]);
  t.equal(orphan.code, 1, orphan.stderr);
  const found = (JSON.parse(orphan.stdout) as { findings: Array<{ kind: string; key: string; change: string }> }).findings.map((f) => `${f.kind} ${f.change} ${f.key}`);
  t.same(found, [`process added ${process.execPath}|root`, 'port added tcp:0.0.0.0:4567']);

  // A unit: started by nsenter (a parent outside the namespace, so PID 1 is not its
  // parent), in the cgroup systemd gives a system service.
  await start('nsenter', enter(['sh', '-c', `echo $$ > ${unit}/cgroup.procs && exec ${process.execPath} -e "${listener(4568)}"`]));
  const withUnit = await driftIn(['scan', '--baseline', baseline, '--format', 'json', ...common]);
  const keys = (JSON.parse(withUnit.stdout) as { findings: Array<{ kind: string; key: string }> }).findings.map((f) => `${f.kind} ${f.key}`);
  t.ok(keys.includes('port tcp:0.0.0.0:4568'), `the unit's port is found: ${keys.join(', ')}`);
});
