import t from 'tap';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  AutoScalingClient, CreateAutoScalingGroupCommand, CreateLaunchConfigurationCommand, DescribeAutoScalingGroupsCommand,
  DescribeAutoScalingInstancesCommand,
} from '@aws-sdk/client-auto-scaling';
import { enforcePass } from '../../../server/audit/passes.js';
import { haveMoto, MOTO_ENV, startMoto } from '../../helpers/moto.js';
import { auditWorld, MIN } from './helpers.js';

if (!haveMoto()) {
  t.fail('moto_server is not on PATH: install the moto Python package with its server extra (pip install "moto[server]"); test/setup.sh checks for it');
} else {
  Object.assign(process.env, MOTO_ENV);
}

const GUARDS = { minReports: 2, minPersistMs: 5 * MIN, minHealthy: 0.5, maxInFlightPerCohort: 1 };

async function group(endpoint: string, name: string, size: number, max: number) {
  const asg = new AutoScalingClient({ endpoint, region: 'us-east-1' });
  await asg.send(new CreateLaunchConfigurationCommand({ LaunchConfigurationName: `${name}-lc`, ImageId: 'ami-12c6146b', InstanceType: 't2.micro' }));
  await asg.send(new CreateAutoScalingGroupCommand({
    AutoScalingGroupName: name, LaunchConfigurationName: `${name}-lc`, MinSize: 1, MaxSize: max, DesiredCapacity: size, AvailabilityZones: ['us-east-1a'],
  }));
  const describe = async () => {
    const g = (await asg.send(new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: [name] }))).AutoScalingGroups?.[0];
    return { desired: g?.DesiredCapacity ?? 0, ids: (g?.Instances ?? []).map((i) => i.InstanceId as string).sort() };
  };
  return { describe, ids: (await describe()).ids };
}

/**
 * A fleet whose hosts are the group's instances, and a sleep that plays the agents of
 * instances the group launches: each new instance enrolls and reports (clean, or with
 * `newDrift`) the first time the provider waits.
 */
async function world(t: Parameters<typeof auditWorld>[0], endpoint: string, name: string, opts: { size: number; max: number; newDrift?: string[]; strategy?: string }) {
  const w = await auditWorld(t);
  const g = await group(endpoint, name, opts.size, opts.max);
  w.fleet.image('ami-1');
  const t0 = w.clock.now;
  g.ids.forEach((id) => w.fleet.enroll(id, 'ami-1', t0, id));
  for (const dt of [0, 10, 20]) g.ids.forEach((id, i) => w.fleet.report(id, t0 + dt * MIN, i === 2 ? ['/etc/ssh/sshd_config'] : []));
  w.clock.now = t0 + 20 * MIN;
  const drifted = g.ids[2] as string;
  const seenDesired: number[] = [];
  const d = await w.deps({
    mode: 'enforce', guards: GUARDS,
    provider: { kind: 'aws-autoscaling', endpoint, region: 'us-east-1', poll: '10s', deadline: '10m', ...(opts.strategy ? { strategy: opts.strategy } : {}) },
  });
  const known = new Set(g.ids);
  d.sleep = async (ms) => {
    w.clock.now += ms;
    const now = await g.describe();
    seenDesired.push(now.desired);
    for (const id of now.ids) {
      if (known.has(id)) continue;
      known.add(id);
      w.fleet.enroll(id, 'ami-1', w.clock.now, id);
      w.fleet.report(id, w.clock.now, opts.newDrift ?? []);
    }
  };
  return { w, g, d, drifted, seenDesired };
}

t.test('surge: the group grows to N+1, the new instance reports clean, only then the drifted one goes', { skip: !haveMoto() }, async (t) => {
  const { endpoint } = await startMoto(t);
  const { w, g, d, drifted, seenDesired } = await world(t, endpoint, 'web', { size: 5, max: 6 });
  const r = await enforcePass(d);
  t.same(r.done.map((a) => [a.hostId, a.state]), [[drifted, 'succeeded']]);
  t.ok(seenDesired.includes(6), 'the group was surged to 6 while the replacement validated');
  const after = await g.describe();
  t.equal(after.desired, 5, 'back to its size');
  t.equal(after.ids.length, 5);
  t.notOk(after.ids.includes(drifted), 'the drifted instance is gone');
  const fresh = after.ids.filter((id) => !g.ids.includes(id));
  t.equal(fresh.length, 1, 'one new instance in its place');
  const a = w.ledger.get(r.done[0]?.id ?? '');
  t.match(a?.progress, { step: 'terminated', group: 'web', desiredBefore: 5, target: 6, newIds: fresh });
  t.equal(a?.providerRef, `web/${drifted}`);
  const journal = w.ledger.events(a?.id ?? '');
  t.same(journal.map((e) => e.note.replace(/^(started by|step \w+|progress).*$/, '$1')).slice(0, -1),
    ['admitted: 1 finding(s) to replace for: file /etc/ssh/sshd_config modified', 'started by', 'progress', 'step surging', 'step surged', 'step validated', 'step terminating', 'step terminated'],
    'the journal tells the whole story, each step saved before it acts');
  t.match(journal.at(-1), { state: 'succeeded', note: /surged to 6, .* reported clean, .* terminated with decrement/ });
});

t.test('surge whose new instance drifts: nothing terminated, the action fails with the reason, the breaker opens', { skip: !haveMoto() }, async (t) => {
  const { endpoint } = await startMoto(t);
  const { w, g, d, drifted } = await world(t, endpoint, 'api', { size: 5, max: 6, newDrift: ['/etc/ssh/sshd_config'] });
  const r = await enforcePass(d);
  t.equal(r.done[0]?.state, 'failed');
  t.match(r.done[0]?.error, /aws-autoscaling: new instance i-\w+ \(host i-\w+\) reported drift: file \/etc\/ssh\/sshd_config modified; nothing terminated/);
  const after = await g.describe();
  t.ok(after.ids.includes(drifted), 'the drifted instance was not terminated');
  t.equal(after.ids.length, 6);
  t.match(w.ledger.breakers(), [{ cohort: 'ami-1|', reason: /failed validation/ }]);
});

t.test('a group at its maximum refuses a surge with the way out; terminate-first replaces without decrement', { skip: !haveMoto() }, async (t) => {
  const { endpoint } = await startMoto(t);
  const full = await world(t, endpoint, 'full', { size: 5, max: 5 });
  const r = await enforcePass(full.d);
  t.equal(r.done[0]?.state, 'failed');
  t.match(r.done[0]?.error, /group full is at its maximum size 5: a surge cannot add an instance; raise MaxSize or use strategy terminate-first/);
  t.equal(r.done[0]?.attempts, 1, 'a 4xx-like refusal is not retried');
  t.same((await full.g.describe()).ids, full.g.ids, 'nothing changed');

  const tf = await world(t, endpoint, 'tf', { size: 5, max: 5, strategy: 'terminate-first' });
  const r2 = await enforcePass(tf.d);
  t.equal(r2.done[0]?.state, 'succeeded', r2.done[0]?.error ?? '');
  const after = await tf.g.describe();
  t.equal(after.desired, 5);
  t.notOk(after.ids.includes(tf.drifted));
  t.equal(after.ids.filter((id) => !tf.g.ids.includes(id)).length, 1, 'the group launched the replacement itself');
});

t.test('set-unhealthy marks the instance Unhealthy; a group that launches nothing fails the action without blaming the image', { skip: !haveMoto() }, async (t) => {
  const { endpoint } = await startMoto(t);
  const su = await world(t, endpoint, 'su', { size: 5, max: 5, strategy: 'set-unhealthy' });
  const r = await enforcePass(su.d);
  const asg = new AutoScalingClient({ endpoint, region: 'us-east-1' });
  // What moto can show: the health mark, through both read APIs, and that nothing else changed.
  const [inst] = (await asg.send(new DescribeAutoScalingInstancesCommand({ InstanceIds: [su.drifted] }))).AutoScalingInstances ?? [];
  t.match(inst, { InstanceId: su.drifted, AutoScalingGroupName: 'su' });
  t.match(inst?.HealthStatus, /^unhealthy$/i, `DescribeAutoScalingInstances: the drifted instance is marked Unhealthy (${String(inst?.HealthStatus)})`);
  const g = (await asg.send(new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: ['su'] }))).AutoScalingGroups?.[0];
  t.equal(g?.Instances?.find((i) => i.InstanceId === su.drifted)?.HealthStatus, 'Unhealthy', 'DescribeAutoScalingGroups: the same mark');
  t.same(g?.Instances?.filter((i) => i.InstanceId !== su.drifted).map((i) => i.HealthStatus), ['Healthy', 'Healthy', 'Healthy', 'Healthy'], 'only the drifted instance was marked');
  const after = await su.g.describe();
  t.equal(after.desired, 5, 'the desired capacity was not touched');
  t.same(after.ids, su.g.ids, 'moto replaces nothing: the group still holds the same five instances');
  t.ok(su.seenDesired.length > 0 && su.seenDesired.every((n) => n === 5), 'the capacity stayed 5 at every poll');

  // The wait for a replacement ends at the deadline, recorded in the ledger with its reason.
  t.equal(r.done[0]?.state, 'failed');
  t.match(r.done[0]?.error, /^aws-autoscaling: group su launched no new instance within 600000 ms; check its activity history \(capacity, quotas, launch template\)$/);
  t.equal(r.done[0]?.attempts, 1, 'not retried: the mark is made and a second one would change nothing');
  const a = su.w.ledger.get(r.done[0]?.id ?? '');
  t.match(a, { state: 'failed', hostId: su.drifted, instanceId: su.drifted, provider: 'aws-autoscaling', providerRef: `su/${su.drifted}` });
  t.match(a?.progress, { group: 'su', desiredBefore: 5, step: 'marked' });
  t.same([...((a?.progress as { before?: string[] } | undefined)?.before ?? [])].sort(), su.g.ids, 'the group\'s instances before the mark, saved to tell the replacement apart');
  t.notOk((a?.progress as { newIds?: unknown } | undefined)?.newIds, 'no replacement instance recorded');
  const journal = su.w.ledger.events(a?.id ?? '');
  t.same(journal.map((e) => e.state), ['planned', 'started', 'started', 'started', 'started', 'failed']);
  t.same(journal.map((e) => e.note.replace(/^(started by|step \w+|progress).*$/, '$1')).slice(1, 5), ['started by', 'progress', 'step marking', 'step marked'],
    'the mark is saved as a step before and after SetInstanceHealth, so a resumed action never marks twice');
  t.same(su.w.ledger.breakers(), [], 'no breaker: the image is not at fault');
});

t.test('5xx and throttling from Auto Scaling: retried within limits, then failed with the reason, nothing done twice', async (t) => {
  const hits: string[] = [];
  const srv = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => { body += c.toString(); });
    req.on('end', () => {
      hits.push(new URLSearchParams(body).get('Action') ?? '?');
      if (hits.length % 2 === 1) { res.writeHead(503).end('<html>busy</html>'); return; }
      res.writeHead(400, { 'content-type': 'text/xml' }).end('<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>1</RequestId></ErrorResponse>');
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => srv.close(() => r())));
  Object.assign(process.env, MOTO_ENV);
  const w = await auditWorld(t);
  w.fleet.image('ami-1');
  const t0 = w.clock.now;
  for (let i = 0; i < 4; i++) w.fleet.enroll(`i-${i}`, 'ami-1', t0, `i-${i}`);
  for (const dt of [0, 10]) for (let i = 0; i < 4; i++) w.fleet.report(`i-${i}`, t0 + dt * MIN, i === 0 ? ['/etc/x'] : []);
  w.clock.now = t0 + 10 * MIN;
  const d = await w.deps({
    mode: 'enforce', guards: GUARDS, retry: { attempts: 3, backoff: '1s' },
    provider: { kind: 'aws-autoscaling', endpoint: `http://127.0.0.1:${(srv.address() as AddressInfo).port}`, region: 'us-east-1' },
  });
  const r = await enforcePass(d);
  t.equal(r.done[0]?.state, 'failed');
  t.equal(r.done[0]?.attempts, 3, 'three attempts, as configured');
  t.match(r.done[0]?.error, /aws-autoscaling: Auto Scaling DescribeAutoScalingInstances failed: (400 Throttling: Rate exceeded|503 .*) \(gave up after 3 attempt\(s\)\)/);
  t.ok(hits.every((h) => h === 'DescribeAutoScalingInstances'), 'never got past the first read: nothing was changed');
});
