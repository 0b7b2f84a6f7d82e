import { GetAutomationExecutionCommand, SSMClient, StartAutomationExecutionCommand } from '@aws-sdk/client-ssm';
import type { ProviderConfig } from '../config.js';
import { ProviderError, type Provider, type ReplaceContext } from './contract.js';
import { awsError } from './aws-errors.js';

type SsmConfig = Extract<ProviderConfig, { kind: 'aws-ssm-automation' }>;

const DONE = new Set(['Success', 'CompletedWithSuccess']);
const FAILED = new Set(['Failed', 'TimedOut', 'Cancelled', 'Cancelling', 'Rejected', 'CompletedWithFailure']);

/**
 * SSM Automation: StartAutomationExecution of a configurable runbook (default
 * AWS-TerminateEC2Instance) with its parameters templated from the action, and
 * ClientToken = the action id, so a retry after a crash cannot start a second
 * execution; polled with GetAutomationExecution until Success or a failure status.
 */
export class SsmAutomationProvider implements Provider {
  readonly name = 'aws-ssm-automation';
  readonly requiresInstanceId = true;
  private readonly client: SSMClient;

  constructor(private readonly cfg: SsmConfig) {
    this.client = new SSMClient({ region: cfg.region, ...(cfg.endpoint ? { endpoint: cfg.endpoint } : {}), maxAttempts: 2 });
  }

  async replace(ctx: ReplaceContext): Promise<{ note: string }> {
    const a = ctx.action;
    if (!a.instanceId) throw new ProviderError('the host has no cloud instance id; the aws-ssm-automation provider needs one');
    let execId = typeof ctx.progress['executionId'] === 'string' ? ctx.progress['executionId'] : undefined;
    if (!execId) {
      await ctx.checkCancelled();
      const vars: Record<string, string> = { instanceId: a.instanceId, hostId: a.hostId, actionId: a.id };
      const parameters: Record<string, string[]> = {};
      for (const [k, vs] of Object.entries(this.cfg.parameters)) parameters[k] = vs.map((v) => v.replace(/\{\{(instanceId|hostId|actionId)\}\}/g, (_m, n: string) => vars[n] ?? ''));
      let r;
      try {
        r = await this.client.send(new StartAutomationExecutionCommand({ DocumentName: this.cfg.document, Parameters: parameters, ClientToken: a.id }));
      } catch (err) { throw awsError(`SSM StartAutomationExecution of ${this.cfg.document}`, err); }
      if (!r.AutomationExecutionId) throw new ProviderError('SSM StartAutomationExecution answered no AutomationExecutionId', { retryable: true });
      execId = r.AutomationExecutionId;
      await ctx.save({ executionId: execId }, execId);
    }
    const until = ctx.now() + this.cfg.deadline;
    for (;;) {
      let status: string;
      let reason = '';
      try {
        const r = await this.client.send(new GetAutomationExecutionCommand({ AutomationExecutionId: execId }));
        status = r.AutomationExecution?.AutomationExecutionStatus ?? 'Pending';
        reason = r.AutomationExecution?.FailureMessage ?? '';
      } catch (err) { throw awsError(`SSM GetAutomationExecution ${execId}`, err); }
      if (DONE.has(status)) return { note: `SSM automation ${this.cfg.document} execution ${execId}: ${status}` };
      if (FAILED.has(status)) throw new ProviderError(`SSM automation ${this.cfg.document} execution ${execId} ended ${status}${reason ? `: ${reason}` : ''}`);
      if (ctx.now() >= until) throw new ProviderError(`SSM automation execution ${execId} still ${status} after ${this.cfg.deadline} ms`, { retryable: true });
      await ctx.sleep(this.cfg.poll);
    }
  }
}
