import t from 'tap';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import {
  AutoScalingClient, CreateAutoScalingGroupCommand, CreateLaunchConfigurationCommand, DescribeAutoScalingGroupsCommand,
} from '@aws-sdk/client-auto-scaling';
import { driftBin } from '../../helpers/paths.js';
import { drift } from '../../helpers/run.js';
import { haveMoto, MOTO_ENV, startMoto } from '../../helpers/moto.js';
import { startSsmServer } from '../../helpers/ssm-server.js';
import { ADMIN, auditWorld, MIN, seedFleet } from './helpers.js';

Object.assign(process.env, MOTO_ENV);
const GUARDS = { minReports: 2, minPersistMs: 5 * MIN, minHealthy: 0.5, maxInFlightPerCohort: 1 };

function writeConfig(dir: string, url: string, provider: Record<string, unknown>): string {
  const token = join(dir, 'admin.token');
  writeFileSync(token, `${ADMIN}\n`, { mode: 0o600 });
  const file = join(dir, 'audit.yaml');
  writeFileSync(file, stringify({ collector: url, adminTokenFile: token, mode: 'enforce', schedules: {}, guards: GUARDS, provider, report: { dir: join(dir, 'reports') } }));
  return file;
}

/** Start `drift audit --once enforce` and SIGKILL it when `killWhen` resolves; resolves with how it ended. */
function auditKilledWhen(config: string, killWhen: Promise<void>): Promise<{ signal: string | null; stdout: string }> {
  const child = spawn(process.execPath, [driftBin, 'audit', '--config', config, '--once', 'enforce'], { env: { ...process.env, ...MOTO_ENV }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  child.stdout.on('data', (b: Buffer) => { stdout += b.toString(); });
  child.stderr.resume();
  void killWhen.then(() => child.kill('SIGKILL'));
  return new Promise((resolve) => child.on('exit', (_code, signal) => resolve({ signal, stdout })));
}

t.test('kill -9 between started and succeeded (SSM): the restart polls the same execution, never starts a second', async (t) => {
  const ssm = await startSsmServer();
  t.teardown(() => ssm.close());
  ssm.pollsToFinish = 3;
  const w = await auditWorld(t);
  seedFleet(w, 10, { 6: ['/etc/sudoers'] });
  const config = writeConfig(w.dir, w.url, { kind: 'aws-ssm-automation', endpoint: ssm.endpoint, region: 'us-east-1', poll: '100ms', deadline: '1m' });
  const polled = new Promise<void>((resolve) => { ssm.onRequest = (target) => { if (target === 'AmazonSSM.GetAutomationExecution') resolve(); }; });
  const first = await auditKilledWhen(config, polled);
  t.equal(first.signal, 'SIGKILL', 'the daemon was killed mid-action');
  const [mid] = w.ledger.list();
  t.equal(mid?.state, 'started');
  t.match(mid?.progress, { executionId: /^[\w-]+$/ }, 'the execution id was saved before polling');

  ssm.onRequest = undefined;
  const again = await drift(['audit', '--config', config, '--once', 'enforce'], { env: MOTO_ENV });
  t.equal(again.code, 0, again.stderr);
  t.match(again.stdout, /"msg":"resuming action"/);
  const [done] = w.ledger.list();
  t.equal(done?.state, 'succeeded');
  t.equal(done?.id, mid?.id, 'the same action, completed once');
  t.equal(ssm.requests.filter((r) => r.target === 'AmazonSSM.StartAutomationExecution').length, 1, 'one StartAutomationExecution in all');
  t.equal(ssm.executions.size, 1, 'one execution for the token');
  t.match(w.ledger.events(done?.id ?? '').map((e) => e.note).join('\n'), /resumed by drift audit \(aws-ssm-automation\) from its saved progress/);
});

t.test('kill -9 after the surge (Auto Scaling): the restart validates and terminates, the group surged once', { skip: !haveMoto() && 'moto_server is not installed' }, async (t) => {
  const { endpoint } = await startMoto(t);
  const asg = new AutoScalingClient({ endpoint, region: 'us-east-1' });
  await asg.send(new CreateLaunchConfigurationCommand({ LaunchConfigurationName: 'lc', ImageId: 'ami-12c6146b', InstanceType: 't2.micro' }));
  await asg.send(new CreateAutoScalingGroupCommand({ AutoScalingGroupName: 'web', LaunchConfigurationName: 'lc', MinSize: 1, MaxSize: 8, DesiredCapacity: 5, AvailabilityZones: ['us-east-1a'] }));
  const describe = async () => {
    const g = (await asg.send(new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: ['web'] }))).AutoScalingGroups?.[0];
    return { desired: g?.DesiredCapacity ?? 0, ids: (g?.Instances ?? []).map((i) => i.InstanceId as string).sort() };
  };
  const before = (await describe()).ids;
  const w = await auditWorld(t);
  w.fleet.image('ami-1');
  const t0 = w.clock.now;
  before.forEach((id) => w.fleet.enroll(id, 'ami-1', t0, id));
  for (const dt of [0, 10, 20]) before.forEach((id, i) => w.fleet.report(id, t0 + dt * MIN, i === 1 ? ['/etc/sudoers'] : []));
  w.clock.now = t0 + 20 * MIN;
  const drifted = before[1] as string;
  const config = writeConfig(w.dir, w.url, { kind: 'aws-autoscaling', endpoint, region: 'us-east-1', poll: '200ms', deadline: '2m' });

  // The event: the ledger records step "surged" (saved right after SetDesiredCapacity took effect).
  const surged = new Promise<void>((resolve, reject) => {
    const started = Date.now();
    const check = (): void => {
      const a = w.ledger.list()[0];
      if ((a?.progress as { step?: string } | null)?.step === 'surged') { resolve(); return; }
      if (Date.now() - started > 60_000) { reject(new Error('the audit never surged the group')); return; }
      setTimeout(check, 20);
    };
    check();
  });
  const first = await auditKilledWhen(config, surged);
  t.equal(first.signal, 'SIGKILL');
  const mid = await describe();
  t.equal(mid.desired, 6, 'surged to 6 before the kill');
  t.ok(mid.ids.includes(drifted), 'nothing terminated yet');

  // The new instance's agent reports clean.
  const fresh = mid.ids.filter((id) => !before.includes(id));
  t.equal(fresh.length, 1);
  w.fleet.enroll(fresh[0] as string, 'ami-1', w.clock.now, fresh[0]);
  w.fleet.report(fresh[0] as string, w.clock.now, []);

  const again = await drift(['audit', '--config', config, '--once', 'enforce'], { env: MOTO_ENV });
  t.equal(again.code, 0, again.stderr);
  const end = await describe();
  t.equal(end.desired, 5, 'back to 5: surged once, decremented once');
  t.same(end.ids, [...before.filter((id) => id !== drifted), fresh[0] as string].sort(), 'exactly the drifted instance replaced by the new one');
  const [a] = w.ledger.list();
  t.equal(a?.state, 'succeeded');
  t.match(a?.progress, { step: 'terminated', target: 6, desiredBefore: 5 });
});
