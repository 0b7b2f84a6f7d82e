import type { ActionWire, ReplacementWire } from '../ledger-client.js';

/**
 * One provider = one module behind this contract (aws-autoscaling,
 * aws-ssm-automation, command, webhook). A provider carries out one replacement from
 * start to finish, and must be safe to call again for the same action after a crash:
 * it saves its progress (through `save`) before each side effect and, when resumed,
 * reads it back and never repeats a step that took effect.
 */
export interface Provider {
  readonly name: string;
  /** True when it acts on a cloud instance id (hosts without one are held back by the `no-instance` guard). */
  readonly requiresInstanceId: boolean;
  /** Resolves when the replacement is done; throws ProviderError when it cannot be. */
  replace(ctx: ReplaceContext): Promise<{ note: string }>;
}

export interface ReplaceContext {
  action: ActionWire;
  /** What an earlier run saved ({} the first time). */
  progress: Readonly<Record<string, unknown>>;
  /** Persist progress in the ledger (and the provider's reference) before the next side effect. */
  save(progress: Record<string, unknown>, providerRef?: string): Promise<void>;
  /** How the new host of the cohort is doing (the collector's view). */
  replacement(instanceIds: readonly string[]): Promise<ReplacementWire>;
  /** Throws ProviderError('cancelled') when the action was cancelled in the ledger. */
  checkCancelled(): Promise<void>;
  now(): number;
  sleep(ms: number): Promise<void>;
  log(msg: string, fields?: Record<string, unknown>): void;
}

/**
 * A replacement that could not be done. `retryable` failures (timeouts, 5xx,
 * throttling, unreachable) are tried again within the retry budget; others fail the
 * action at once. `validation` failures (the new instance drifted or never reported
 * clean) also open the cohort's breaker: the image itself is suspect.
 */
export class ProviderError extends Error {
  readonly retryable: boolean;
  readonly validation: boolean;
  readonly cancelled: boolean;
  constructor(message: string, opts: { retryable?: boolean; validation?: boolean; cancelled?: boolean; cause?: unknown } = {}) {
    super(message, { cause: opts.cause });
    this.name = 'ProviderError';
    this.retryable = opts.retryable ?? false;
    this.validation = opts.validation ?? false;
    this.cancelled = opts.cancelled ?? false;
  }
}

/** The action as providers send it to the outside world (command stdin, webhook body). */
export function actionPayload(a: ActionWire): Record<string, unknown> {
  return {
    schema: 'drift.action/v1', id: a.id, hostId: a.hostId, hostname: a.hostname, instanceId: a.instanceId, cohort: a.cohort,
    reason: a.reason, findings: a.findings, actor: a.actor, forced: a.forced, attempts: a.attempts, createdAt: a.createdAt,
  };
}
