import t from 'tap';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { appendFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import {
  AutoScalingClient, CreateAutoScalingGroupCommand, CreateLaunchConfigurationCommand, DescribeAutoScalingGroupsCommand,
} from '@aws-sdk/client-auto-scaling';
import { makeRoot } from './helpers.js';
import { driftBin, repoRoot } from '../helpers/paths.js';
import { drift } from '../helpers/run.js';
import { haveMoto, MOTO_ENV, startMoto } from '../helpers/moto.js';
import { adminJson } from '../../agent/transport/client.js';

/**
 * Replace, never repair, end to end: a real collector process with a signed baseline,
 * a moto Auto Scaling group of five, five agents (one root each, the instance id in
 * each root), one drifted; `drift audit --once enforce` surges the group, an agent for
 * the new instance reports, and only a clean report lets the drifted instance go.
 */

Object.assign(process.env, MOTO_ENV);
const ADMIN = 'admin-token-for-the-enforce-test';

function startServer(args: string[]): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [driftBin, 'server', ...args], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let buf = '';
    child.stderr.resume();
    child.stdout.on('data', (b: Buffer) => {
      buf += b.toString();
      const m = /"msg":"listening".*?"address":"([^"]+)"/.exec(buf) ?? /"address":"([^"]+)".*?"msg":"listening"/.exec(buf);
      if (m) { child.stdout.removeAllListeners('data'); child.stdout.resume(); resolve({ child, url: m[1] as string }); }
    });
    child.once('exit', (code) => reject(new Error(`drift server exited ${code} before listening: ${buf}`)));
  });
}

type Tap = Parameters<Parameters<typeof t.test>[0]>[0];

async function scenario(t: Tap, newRootDrifted: boolean) {
  const dir = await mkdtemp(join(tmpdir(), 'drift-enforce-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const enroll = join(dir, 'enroll.secret');
  const admin = join(dir, 'admin.token');
  await writeFile(enroll, 'enroll-secret-for-the-enforce-test\n', { mode: 0o600 });
  await writeFile(admin, `${ADMIN}\n`, { mode: 0o600 });
  const { endpoint } = await startMoto(t);

  t.equal((await drift(['keygen', '--out', join(dir, 'bake')])).code, 0);
  const image = await makeRoot(join(dir, 'image'), { machineId: 'f'.repeat(32), hostname: 'bake' });
  const server = await startServer(['--listen', '127.0.0.1:0', '--db', join(dir, 'collector', 'drift.db'), '--state-dir', join(dir, 'collector'),
    '--enroll-secret-file', enroll, '--admin-token-file', admin, '--baseline-pubkey', join(dir, 'bake.pub')]);
  t.teardown(() => { if (server.child.exitCode === null) server.child.kill('SIGTERM'); });
  const bake = await drift(['baseline', '--root', image, '--image-id', 'img-1', '--sign-key', join(dir, 'bake.key'), '--out', join(dir, 'baseline.json'),
    '--stamp', '--state-dir', join(dir, 'bake-state'), '--push', server.url, '--admin-token-file', admin]);
  t.equal(bake.code, 0, bake.stderr);

  const asg = new AutoScalingClient({ endpoint, region: 'us-east-1' });
  await asg.send(new CreateLaunchConfigurationCommand({ LaunchConfigurationName: 'img-1', ImageId: 'ami-12c6146b', InstanceType: 't3.micro' }));
  await asg.send(new CreateAutoScalingGroupCommand({ AutoScalingGroupName: 'web', LaunchConfigurationName: 'img-1', MinSize: 1, MaxSize: 6, DesiredCapacity: 5, AvailabilityZones: ['us-east-1a'] }));
  const describe = async () => {
    const g = (await asg.send(new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: ['web'] }))).AutoScalingGroups?.[0];
    return { desired: g?.DesiredCapacity ?? 0, ids: (g?.Instances ?? []).map((i) => i.InstanceId as string).sort() };
  };
  const before = (await describe()).ids;
  t.equal(before.length, 5);

  /** A host of the image booted as `instanceId`: its own identity, the instance id where cloud-init caches it. */
  const boot = async (instanceId: string, n: number, drifted: boolean): Promise<void> => {
    const root = join(dir, 'hosts', instanceId);
    await mkdir(root, { recursive: true });
    await promisify(execFile)('cp', ['-a', `${image}/.`, root]);
    await writeFile(join(root, 'etc/machine-id'), `${String(n).padStart(2, '0')}`.padEnd(32, 'b') + '\n');
    await writeFile(join(root, 'etc/hostname'), `web-${n}\n`);
    await mkdir(join(root, 'var/lib/cloud/data'), { recursive: true });
    await writeFile(join(root, 'var/lib/cloud/data/instance-id'), `${instanceId}\n`);
    if (drifted) {
      await mkdir(join(root, 'usr/local/bin'), { recursive: true });
      await writeFile(join(root, 'usr/local/bin/backdoor'), '#!/bin/sh\nnc -l 4444\n', { mode: 0o755 });
      await appendFile(join(root, 'etc/ssh/sshd_config'), 'PermitRootLogin yes\n');
    }
    const r = await drift(['agent', '--once', '--collector', server.url, '--enroll-secret-file', enroll, '--root', root, '--state-dir', join(dir, 'agents', instanceId), '--splay', '0s']);
    t.equal(r.code, 0, `agent of ${instanceId}: ${r.stderr}`);
  };
  const drifted = before[2] as string;
  for (const [i, id] of before.entries()) await boot(id, i + 1, id === drifted);

  const settings = (mode: string) => stringify({
    collector: server.url, adminTokenFile: admin, mode, schedules: {},
    guards: { minReports: 1, minPersistMs: 0, minHealthy: 0.5, maxInFlightPerCohort: 1 },
    provider: { kind: 'aws-autoscaling', endpoint, region: 'us-east-1', strategy: 'surge', poll: '300ms', deadline: '2m' },
    report: { dir: join(dir, 'reports') },
  });
  const config = join(dir, 'audit.yaml');
  await writeFile(config, settings('enforce'));
  await writeFile(join(dir, 'dry.yaml'), settings('dry-run'));
  const dry = await drift(['audit', '--config', join(dir, 'dry.yaml'), '--once', 'enforce'], { env: MOTO_ENV });
  t.equal(dry.code, 0, dry.stderr);
  t.match(dry.stdout, new RegExp(`"msg":"dry-run: would replace","host":"[0-9a-f]+"`), 'the plan names the drifted host');
  t.equal((await describe()).desired, 5, 'a dry run touches nothing');

  // drift audit acts; the agent of the instance the group launches reports while it validates.
  const audit = drift(['audit', '--config', config, '--once', 'enforce'], { env: MOTO_ENV });
  let fresh: string | undefined;
  const until = Date.now() + 60_000;
  while (fresh === undefined && Date.now() < until) {
    const now = await describe();
    fresh = now.ids.find((id) => !before.includes(id));
    if (fresh === undefined) await new Promise((r) => setTimeout(r, 200));
  }
  if (fresh === undefined) throw new Error('the group was never surged');
  const surged = await describe();
  t.equal(surged.desired, 6, 'the group surged to 6');
  t.ok(surged.ids.includes(drifted), 'the drifted instance is still there while the new one validates');
  await boot(fresh, 6, newRootDrifted);
  const done = await audit;
  return { done, describe, before, drifted, fresh, server, dir };
}

t.test('one drifted host of five: surge to six, the new instance reports clean, then the drifted one is terminated', { skip: !haveMoto() && 'moto_server is not installed' }, async (t) => {
  const { done, describe, before, drifted, fresh, server } = await scenario(t, false);
  t.equal(done.code, 0, done.stderr);
  const end = await describe();
  t.equal(end.desired, 5);
  t.same(end.ids, [...before.filter((id) => id !== drifted), fresh].sort(), 'five instances, the new id in place of the old');
  const list = (await adminJson('GET', server.url, '/v1/actions', ADMIN))['actions'] as { id: string; state: string; instanceId: string; provider: string }[];
  t.match(list, [{ state: 'succeeded', instanceId: drifted, provider: 'aws-autoscaling' }]);
  const story = (await adminJson('GET', server.url, `/v1/actions/${list[0]?.id ?? ''}`, ADMIN))['events'] as { state: string; note: string }[];
  t.match(story.map((e) => e.note).join('\n'), /admitted: .*file \/etc\/ssh\/sshd_config modified[\s\S]*step surging[\s\S]*step surged[\s\S]*step validated[\s\S]*step terminating[\s\S]*step terminated[\s\S]*surged to 6/,
    'the ledger tells the whole story');
});

t.test('the new instance drifted the same way: nothing terminated, the action failed with the reason, the breaker open', { skip: !haveMoto() && 'moto_server is not installed' }, async (t) => {
  const { done, describe, drifted, server } = await scenario(t, true);
  t.equal(done.code, 1, 'an action of the pass failed');
  const end = await describe();
  t.ok(end.ids.includes(drifted), 'the drifted instance was not terminated');
  t.equal(end.ids.length, 6);
  const list = (await adminJson('GET', server.url, '/v1/actions', ADMIN))['actions'] as { state: string; error: string }[];
  t.match(list, [{ state: 'failed', error: /reported drift: .*; nothing terminated/ }]);
  const e = await adminJson('GET', server.url, '/v1/enforcement', ADMIN);
  t.match(e['breakers'], [{ cohort: 'img-1|', reason: /failed validation/ }]);
});
