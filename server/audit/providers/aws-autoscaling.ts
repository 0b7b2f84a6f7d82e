import {
  AutoScalingClient, DescribeAutoScalingGroupsCommand, DescribeAutoScalingInstancesCommand, SetDesiredCapacityCommand,
  SetInstanceHealthCommand, TerminateInstanceInAutoScalingGroupCommand, type AutoScalingGroup,
} from '@aws-sdk/client-auto-scaling';
import type { ProviderConfig } from '../config.js';
import { ProviderError, type Provider, type ReplaceContext } from './contract.js';
import { awsError } from './aws-errors.js';

type AsgConfig = Extract<ProviderConfig, { kind: 'aws-autoscaling' }>;

/** Steps of a replacement, saved in the ledger before each side effect. */
interface Progress {
  step?: 'surging' | 'surged' | 'validated' | 'terminating' | 'terminated' | 'marking' | 'marked';
  group?: string;
  desiredBefore?: number;
  target?: number;
  /** Instance ids of the group before the replacement began. */
  before?: string[];
  /** Instances the group launched for the replacement. */
  newIds?: string[];
}

/**
 * EC2 Auto Scaling. Strategies:
 * - `surge` (default, the immutable order): SetDesiredCapacity to size + 1 within the
 *   group's maximum, wait for the new instance, validate it (it enrolls and reports
 *   clean), then TerminateInstanceInAutoScalingGroup with ShouldDecrementDesiredCapacity
 *   so the group returns to its size. A failed validation terminates nothing.
 * - `terminate-first`: terminate without decrement; the group launches the replacement.
 * - `set-unhealthy`: SetInstanceHealth Unhealthy; the group replaces it.
 * Progress is polled with DescribeAutoScalingGroups/DescribeAutoScalingInstances. The
 * capacity is set to an absolute target saved beforehand, so a resumed surge never
 * grows the group twice.
 */
export class AutoScalingProvider implements Provider {
  readonly name = 'aws-autoscaling';
  readonly requiresInstanceId = true;
  private readonly client: AutoScalingClient;

  constructor(private readonly cfg: AsgConfig) {
    this.client = new AutoScalingClient({ region: cfg.region, ...(cfg.endpoint ? { endpoint: cfg.endpoint } : {}), maxAttempts: 2 });
  }

  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try { return await fn(); } catch (err) { throw awsError(`Auto Scaling ${what}`, err); }
  }

  private async group(name: string): Promise<AutoScalingGroup> {
    const r = await this.call('DescribeAutoScalingGroups', () => this.client.send(new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: [name] })));
    const g = r.AutoScalingGroups?.[0];
    if (!g) throw new ProviderError(`Auto Scaling group ${name} no longer exists`);
    return g;
  }

  async replace(ctx: ReplaceContext): Promise<{ note: string }> {
    const instanceId = ctx.action.instanceId;
    if (!instanceId) throw new ProviderError('the host has no cloud instance id; the aws-autoscaling provider needs one');
    let p: Progress = { ...(ctx.progress as Progress) };
    const save = async (next: Progress): Promise<void> => { p = next; await ctx.save({ ...next }, next.group ? `${next.group}/${instanceId}` : undefined); };

    if (!p.group) {
      const r = await this.call('DescribeAutoScalingInstances', () => this.client.send(new DescribeAutoScalingInstancesCommand({ InstanceIds: [instanceId] })));
      const inst = r.AutoScalingInstances?.[0];
      if (!inst?.AutoScalingGroupName) throw new ProviderError(`instance ${instanceId} is in no Auto Scaling group; replace it another way (command or ssm provider)`);
      const g = await this.group(inst.AutoScalingGroupName);
      await save({ group: inst.AutoScalingGroupName, desiredBefore: g.DesiredCapacity ?? 0, before: (g.Instances ?? []).map((i) => i.InstanceId ?? '').filter(Boolean) });
    }
    const group = p.group as string;
    switch (this.cfg.strategy) {
      case 'surge': return this.surge(ctx, instanceId, group, () => p, save);
      case 'terminate-first': return this.thenReplace(ctx, instanceId, group, () => p, save, 'terminate');
      case 'set-unhealthy': return this.thenReplace(ctx, instanceId, group, () => p, save, 'unhealthy');
      default: {
        const never: never = this.cfg.strategy;
        throw new ProviderError(`unknown strategy ${String(never)}`);
      }
    }
  }

  private async surge(ctx: ReplaceContext, instanceId: string, group: string, p: () => Progress, save: (n: Progress) => Promise<void>): Promise<{ note: string }> {
    if (p().step === undefined) {
      const g = await this.group(group);
      const target = (p().desiredBefore ?? g.DesiredCapacity ?? 0) + 1;
      if (target > (g.MaxSize ?? 0)) {
        throw new ProviderError(`group ${group} is at its maximum size ${g.MaxSize ?? 0}: a surge cannot add an instance; raise MaxSize or use strategy terminate-first`);
      }
      await ctx.checkCancelled();
      await save({ ...p(), step: 'surging', target });
    }
    if (p().step === 'surging') {
      const target = p().target as number;
      await this.call('SetDesiredCapacity', () => this.client.send(new SetDesiredCapacityCommand({ AutoScalingGroupName: group, DesiredCapacity: target, HonorCooldown: false })));
      ctx.log('surged', { group, desired: target });
      await save({ ...p(), step: 'surged' });
    }
    if (p().step === 'surged') {
      const newIds = await this.waitForNew(ctx, group, p().before ?? [], instanceId);
      await this.validate(ctx, newIds);
      await save({ ...p(), step: 'validated', newIds });
    }
    if (p().step === 'validated') {
      await ctx.checkCancelled();
      await save({ ...p(), step: 'terminating' });
    }
    if (p().step === 'terminating') {
      await this.terminate(group, instanceId, true);
      await save({ ...p(), step: 'terminated' });
    }
    await this.waitGone(ctx, group, instanceId);
    return { note: `group ${group}: surged to ${p().target ?? '?'}, ${(p().newIds ?? []).join(', ')} reported clean, ${instanceId} terminated with decrement` };
  }

  private async thenReplace(ctx: ReplaceContext, instanceId: string, group: string, p: () => Progress, save: (n: Progress) => Promise<void>, how: 'terminate' | 'unhealthy'): Promise<{ note: string }> {
    if (p().step === undefined) {
      await ctx.checkCancelled();
      await save({ ...p(), step: how === 'terminate' ? 'terminating' : 'marking' });
    }
    if (p().step === 'terminating' || p().step === 'marking') {
      if (how === 'terminate') await this.terminate(group, instanceId, false);
      else await this.call('SetInstanceHealth', () => this.client.send(new SetInstanceHealthCommand({ InstanceId: instanceId, HealthStatus: 'Unhealthy', ShouldRespectGracePeriod: false })));
      await save({ ...p(), step: how === 'terminate' ? 'terminated' : 'marked' });
    }
    if (p().step === 'terminated' || p().step === 'marked') {
      const newIds = await this.waitForNew(ctx, group, p().before ?? [], instanceId);
      await this.validate(ctx, newIds);
      await save({ ...p(), step: 'validated', newIds });
    }
    return { note: `group ${group}: ${instanceId} ${how === 'terminate' ? 'terminated (no decrement)' : 'set Unhealthy'}, replacement ${(p().newIds ?? []).join(', ')} reported clean` };
  }

  /** Terminate unless the instance already left the group (a resumed action whose call took effect). */
  private async terminate(group: string, instanceId: string, decrement: boolean): Promise<void> {
    const g = await this.group(group);
    if (!(g.Instances ?? []).some((i) => i.InstanceId === instanceId)) return;
    await this.call('TerminateInstanceInAutoScalingGroup', () => this.client.send(new TerminateInstanceInAutoScalingGroupCommand({ InstanceId: instanceId, ShouldDecrementDesiredCapacity: decrement })));
  }

  /** Instances of the group that were not there before, InService; waits up to the deadline. */
  private async waitForNew(ctx: ReplaceContext, group: string, before: readonly string[], old: string): Promise<string[]> {
    const known = new Set([...before, old]);
    const until = ctx.now() + this.cfg.deadline;
    for (;;) {
      const g = await this.group(group);
      const fresh = (g.Instances ?? []).filter((i) => i.InstanceId && !known.has(i.InstanceId) && i.LifecycleState === 'InService').map((i) => i.InstanceId as string);
      if (fresh.length > 0) return fresh;
      // Not the image's fault (capacity, quotas, launch template): no breaker.
      if (ctx.now() >= until) throw new ProviderError(`group ${group} launched no new instance within ${this.cfg.deadline} ms; check its activity history (capacity, quotas, launch template)`);
      await ctx.checkCancelled();
      await ctx.sleep(this.cfg.poll);
    }
  }

  /** Wait until one of the new instances has enrolled and reported clean; a drifted one fails validation. */
  private async validate(ctx: ReplaceContext, newIds: readonly string[]): Promise<void> {
    const until = ctx.now() + this.cfg.deadline;
    for (;;) {
      const r = await ctx.replacement(newIds);
      if (r.state === 'clean') { ctx.log('replacement validated', { host: r.hostId, instances: newIds }); return; }
      if (r.state === 'drifted') {
        throw new ProviderError(`new instance ${newIds.join(', ')} (host ${r.hostId ?? '?'}) reported drift: ${r.findings.slice(0, 3).map((f) => `${f.kind} ${f.key} ${f.change}`).join('; ')}; nothing terminated`, { validation: true });
      }
      if (ctx.now() >= until) throw new ProviderError(`new instance ${newIds.join(', ')} did not report clean within ${this.cfg.deadline} ms; nothing terminated`, { validation: true });
      await ctx.checkCancelled();
      await ctx.sleep(this.cfg.poll);
    }
  }

  private async waitGone(ctx: ReplaceContext, group: string, instanceId: string): Promise<void> {
    const until = ctx.now() + this.cfg.deadline;
    for (;;) {
      const g = await this.group(group);
      const inst = (g.Instances ?? []).find((i) => i.InstanceId === instanceId);
      if (!inst || (inst.LifecycleState ?? '').startsWith('Terminat')) return;
      if (ctx.now() >= until) throw new ProviderError(`instance ${instanceId} is still ${inst.LifecycleState ?? 'in the group'} after ${this.cfg.deadline} ms`, { retryable: true });
      await ctx.sleep(this.cfg.poll);
    }
  }
}
