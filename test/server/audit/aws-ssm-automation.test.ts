import t from 'tap';
import { enforcePass } from '../../../server/audit/passes.js';
import { MOTO_ENV } from '../../helpers/moto.js';
import { startSsmServer, type SsmServer } from '../../helpers/ssm-server.js';
import { auditWorld, MIN, seedFleet } from './helpers.js';

Object.assign(process.env, MOTO_ENV);
const GUARDS = { minReports: 2, minPersistMs: 5 * MIN, minHealthy: 0.5, maxInFlightPerCohort: 5 };

async function setup(t: Parameters<typeof auditWorld>[0], drifted: Record<number, string[]>, provider: Record<string, unknown> = {}) {
  const ssm = await startSsmServer();
  t.teardown(() => ssm.close());
  const w = await auditWorld(t);
  seedFleet(w, 10, drifted);
  const d = await w.deps({
    mode: 'enforce', guards: GUARDS, retry: { attempts: 3, backoff: '1s' },
    provider: { kind: 'aws-ssm-automation', endpoint: ssm.endpoint, region: 'us-east-1', poll: '5s', deadline: '1m', ...provider },
  });
  return { ssm, w, d };
}

const executionsOf = (ssm: SsmServer, token: string) => [...ssm.executions.values()].filter((e) => e.token === token);

t.test('StartAutomationExecution with the action id as ClientToken, polled to Success; a failed runbook fails the action', async (t) => {
  const { ssm, w, d } = await setup(t, { 1: ['/etc/a'], 4: ['/etc/b'] }, { parameters: { InstanceId: ['{{instanceId}}'], AutomationAssumeRole: ['arn:aws:iam::1:role/drift'], Note: ['drift {{actionId}} {{hostId}}'] } });
  ssm.failFor.add('i-0004');
  const r = await enforcePass(d);
  const by = Object.fromEntries(r.done.map((a) => [a.hostId, a]));
  t.equal(by['h1']?.state, 'succeeded');
  t.equal(by['h4']?.state, 'failed');
  t.match(by['h4']?.error, /execution [\w-]+ ended Failed: Step fails when it is terminating the instance: UnauthorizedOperation/);
  const ex = executionsOf(ssm, by['h1']?.id ?? '');
  t.equal(ex.length, 1, 'one execution, keyed by the action id');
  t.same(ex[0]?.parameters, { InstanceId: ['i-0001'], AutomationAssumeRole: ['arn:aws:iam::1:role/drift'], Note: [`drift ${by['h1']?.id ?? ''} h1`] });
  t.equal(ex[0]?.document, 'AWS-TerminateEC2Instance');
  t.equal(w.ledger.get(by['h1']?.id ?? '')?.providerRef, ex[0]?.id);
  t.same(ssm.malformed, [], 'every request had the right target, content type, signature and shape');
});

t.test('throttling and 5xx are retried with the same ClientToken: one execution; a 4xx fails at once', async (t) => {
  const { ssm, d } = await setup(t, { 2: ['/etc/a'] });
  ssm.faults.push('throttle', 'throttle', '500', '500');
  const r = await enforcePass(d);
  t.equal(r.done[0]?.state, 'succeeded', r.done[0]?.error ?? '');
  t.ok((r.done[0]?.attempts ?? 0) >= 2, 'retried');
  t.equal(executionsOf(ssm, r.done[0]?.id ?? '').length, 1, 'never a second execution');

  const bad = await setup(t, { 3: ['/etc/a'] }, { document: 'No-Such-Document' });
  const r2 = await enforcePass(bad.d);
  t.equal(r2.done[0]?.state, 'failed');
  t.equal(r2.done[0]?.attempts, 1);
  t.match(r2.done[0]?.error, /SSM StartAutomationExecution of No-Such-Document failed: 400 AutomationDefinitionNotFoundException: document No-Such-Document not found/);
  t.equal(bad.ssm.executions.size, 0);
});

t.test('an execution that never finishes times out and is retried within limits, polling the same execution', async (t) => {
  const { ssm, d } = await setup(t, { 5: ['/etc/a'] });
  ssm.pollsToFinish = 1_000_000;
  const r = await enforcePass(d);
  t.equal(r.done[0]?.state, 'failed');
  t.match(r.done[0]?.error, /still InProgress after 60000 ms \(gave up after 3 attempt\(s\)\)/);
  t.equal(ssm.executions.size, 1, 'three attempts, one execution');
});
