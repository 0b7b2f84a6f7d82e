import { z } from 'zod';
import { DriftError } from '../../agent/protocol/errors.js';
import { adminJson } from '../../agent/transport/client.js';
import { ACTION_STATES, type ActionState } from '../fleet/actions.js';
import type { GuardPolicy } from '../fleet/guards.js';

/**
 * `drift audit`'s side of the ledger: the collector's admin API (docs/api.md,
 * "Actions"), every answer parsed at this boundary.
 */

const FindingKey = z.object({ kind: z.string(), key: z.string(), change: z.string() });

export const ActionWire = z.looseObject({
  id: z.string().min(1).max(64),
  hostId: z.string(),
  hostname: z.string(),
  instanceId: z.string().nullable(),
  cohort: z.string(),
  reason: z.string(),
  findings: z.array(FindingKey),
  provider: z.string(),
  actor: z.string(),
  forced: z.string().nullable(),
  state: z.enum(ACTION_STATES),
  attempts: z.number().int(),
  providerRef: z.string().nullable(),
  progress: z.unknown(),
  error: z.string().nullable(),
  owner: z.string().nullable(),
  leaseUntil: z.string().nullable(),
  createdAt: z.string(),
  startedAt: z.string().nullable(),
});
export type ActionWire = z.infer<typeof ActionWire>;

const Blocked = z.object({ hostId: z.string(), hostname: z.string(), cohort: z.string(), blocked: z.array(z.object({ guard: z.string(), why: z.string() })) });
export type BlockedWire = z.infer<typeof Blocked>;
const PlanWire = z.object({
  paused: z.boolean(),
  admit: z.array(z.object({ hostId: z.string(), hostname: z.string(), instanceId: z.string().nullable(), cohort: z.string(), reason: z.string(), findings: z.array(FindingKey) })),
  blocked: z.array(Blocked),
});
export type PlanWire = z.infer<typeof PlanWire>;
const Replacement = z.object({ state: z.enum(['waiting', 'clean', 'drifted']), hostId: z.string().nullable(), findings: z.array(FindingKey) });
export type ReplacementWire = z.infer<typeof Replacement>;

function parse<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  throw new DriftError('DRIFT_ERR_MANIFEST', `the collector answered ${what} this drift audit does not understand (${issue ? `${issue.path.join('.') || '(top)'}: ${issue.message}` : 'invalid'}); are both the same version?`);
}

export class LedgerClient {
  constructor(readonly url: string, private readonly token: string) {}

  private call(method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', path: string, body?: unknown): Promise<Record<string, unknown>> {
    return adminJson(method, this.url, path, this.token, body);
  }

  async plan(policy: GuardPolicy, requireInstanceId: boolean): Promise<PlanWire> {
    return parse(PlanWire, await this.call('POST', '/v1/actions/plan', { policy, requireInstanceId }), 'a plan');
  }

  async admit(policy: GuardPolicy, provider: string, requireInstanceId: boolean): Promise<{ admitted: ActionWire[]; blocked: BlockedWire[] }> {
    const r = await this.call('POST', '/v1/actions', { policy, provider, actor: 'audit', requireInstanceId });
    return { admitted: parse(z.array(ActionWire), r['admitted'], 'an admission'), blocked: parse(z.array(Blocked), r['blocked'], 'an admission') };
  }

  async list(states: readonly ActionState[]): Promise<ActionWire[]> {
    return parse(z.array(ActionWire), (await this.call('GET', `/v1/actions?state=${states.join(',')}&limit=1000`))['actions'], 'an action list');
  }

  async get(id: string): Promise<ActionWire> {
    return parse(ActionWire, await this.call('GET', `/v1/actions/${encodeURIComponent(id)}`), 'an action');
  }

  async update(id: string, change: { state: ActionState; providerRef?: string; progress?: unknown; error?: string; attempt?: boolean; note?: string; owner?: string; leaseMs?: number }): Promise<ActionWire> {
    return parse(ActionWire, await this.call('PATCH', `/v1/actions/${encodeURIComponent(id)}`, change), 'an action');
  }

  async replacement(id: string, instanceIds: readonly string[]): Promise<ReplacementWire> {
    const q = instanceIds.map((i) => `instance=${encodeURIComponent(i)}`).join('&');
    return parse(Replacement, await this.call('GET', `/v1/actions/${encodeURIComponent(id)}/replacement${q ? `?${q}` : ''}`), 'a replacement');
  }

  async verify(): Promise<{ verified: ActionWire[]; tripped: ActionWire[]; waiting: ActionWire[] }> {
    const r = await this.call('POST', '/v1/actions/verify', {});
    return { verified: parse(z.array(ActionWire), r['verified'], 'a verify pass'), tripped: parse(z.array(ActionWire), r['tripped'], 'a verify pass'), waiting: parse(z.array(ActionWire), r['waiting'], 'a verify pass') };
  }

  async openBreaker(cohort: string, reason: string, actionId: string): Promise<void> {
    await this.call('POST', '/v1/enforcement/breakers', { cohort, reason, actionId });
  }

  async enforcement(): Promise<{ paused: boolean; reason: string | null; breakers: { cohort: string; reason: string }[] }> {
    return parse(z.looseObject({ paused: z.boolean(), reason: z.string().nullable(), breakers: z.array(z.looseObject({ cohort: z.string(), reason: z.string() })) }),
      await this.call('GET', '/v1/enforcement'), 'the enforcement state');
  }

  async recent(limit: number): Promise<ActionWire[]> {
    return parse(z.array(ActionWire), (await this.call('GET', `/v1/actions?limit=${limit}`))['actions'], 'an action list');
  }
}
