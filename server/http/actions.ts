import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { DriftError } from '../../agent/protocol/errors.js';
import { ACTION_STATES, guardCounts, LIMITS, type Action, type ActionState, type Ledger } from '../fleet/actions.js';
import { checkWindows, GuardPolicySchema, GUARDS, type GuardName } from '../fleet/guards.js';
import { HttpError } from './errors.js';
import { firstIssue } from './wire.js';

/**
 * The enforcement admin API (docs/api.md, "Actions"): the ledger's views, plan,
 * admit, state updates, cancel, pause/resume and breakers. The collector keeps the
 * ledger; `drift audit` and operators act through these routes with the admin token.
 * Nothing here calls a provider: the collector never holds the power to terminate.
 */

const text = (max: number = LIMITS.text) => z.string().min(1).max(max);
const hostIdText = z.string().min(1).max(256);

const PolicyBody = GuardPolicySchema.optional().superRefine((p, ctx) => {
  const bad = p ? checkWindows(p.windows) : null;
  if (bad) ctx.addIssue({ code: 'custom', message: bad, path: ['windows'] });
});

const PlanBody = z.strictObject({
  policy: PolicyBody,
  requireInstanceId: z.boolean().default(false),
});

const AdmitBody = z.strictObject({
  policy: PolicyBody,
  provider: text(LIMITS.provider).regex(/^[a-z0-9][a-z0-9-]*$/, 'a provider name like aws-autoscaling'),
  actor: text(64).default('operator'),
  requireInstanceId: z.boolean().default(false),
  hosts: z.array(hostIdText).min(1).max(100).optional(),
  reason: text().optional(),
  force: text().optional(),
});

const UpdateBody = z.strictObject({
  state: z.enum(ACTION_STATES),
  providerRef: text(LIMITS.ref).optional(),
  progress: z.unknown().optional(),
  error: text().optional(),
  attempt: z.boolean().optional(),
  note: text().optional(),
  owner: text(128).optional(),
  leaseMs: z.number().int().min(1000).max(3_600_000).optional(),
});

const CancelBody = z.strictObject({ reason: text() });
const PauseBody = z.strictObject({ paused: z.boolean(), reason: text().optional() });
const BreakerBody = z.strictObject({ cohort: text(300), reason: text(), actionId: text(64).optional() });

/** An action as the API answers it: times as RFC 3339. */
export function actionView(a: Action): Record<string, unknown> {
  const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());
  return { ...a, leaseUntil: iso(a.leaseUntil), createdAt: iso(a.createdAt), updatedAt: iso(a.updatedAt), startedAt: iso(a.startedAt), finishedAt: iso(a.finishedAt) };
}

function body<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const r = schema.safeParse(value ?? {});
  if (!r.success) throw new HttpError('DRIFT_ERR_USAGE', `${what} body is not valid: ${firstIssue(r.error)}; see docs/api.md`, 400);
  return r.data;
}

/** `drift_guard_blocks_total{guard}`, counted on admissions (plans are dry runs and count nothing). */
export class GuardBlocks {
  readonly counts = new Map<GuardName, number>();
  add(more: Map<GuardName, number>): void {
    for (const [g, n] of more) this.counts.set(g, (this.counts.get(g) ?? 0) + n);
  }
}

/**
 * The enforcement metrics: `drift_actions_total{provider,result}` read from the
 * ledger (so they survive a restart of the collector) and the guard blocks.
 */
export function renderActionMetrics(ledger: Ledger, blocks: GuardBlocks): string {
  const out = ['# HELP drift_actions_total Replacement actions in the ledger, by provider and result (their state).', '# TYPE drift_actions_total counter'];
  const esc = (s: string): string => s.replace(/["\\\n]/g, '_');
  for (const c of ledger.counts()) out.push(`drift_actions_total{provider="${esc(c.provider)}",result="${c.state}"} ${c.n}`);
  out.push('# HELP drift_guard_blocks_total Candidates a guard held back at admission, by guard.', '# TYPE drift_guard_blocks_total counter');
  for (const g of GUARDS) out.push(`drift_guard_blocks_total{guard="${g}"} ${blocks.counts.get(g) ?? 0}`);
  return `${out.join('\n')}\n`;
}

export function registerActionRoutes(app: FastifyInstance, deps: {
  ledger: Ledger;
  admin: (req: FastifyRequest) => Promise<void>;
  now: () => number;
  blocks: GuardBlocks;
}): void {
  const { ledger, admin, now } = deps;
  const opts = { onRequest: admin };
  const found = (id: string): Action => {
    const a = ledger.get(id);
    if (!a) throw new HttpError('DRIFT_ERR_NOT_FOUND', `no action ${id}; list them with GET /v1/actions`);
    return a;
  };
  const asHttp = (err: unknown): never => {
    if (err instanceof DriftError && !(err instanceof HttpError)) {
      throw new HttpError(err.code, err.message, err.code === 'DRIFT_ERR_TOO_LARGE' ? 413 : err.status, { cause: err });
    }
    throw err;
  };

  app.get<{ Querystring: { state?: string; host?: string; limit?: string } }>('/v1/actions', opts, async (req) => {
    const states = req.query.state ? req.query.state.split(',') : [];
    for (const s of states) {
      if (!(ACTION_STATES as readonly string[]).includes(s)) throw new HttpError('DRIFT_ERR_USAGE', `state ${JSON.stringify(s)} is not one of ${ACTION_STATES.join(', ')}`, 400);
    }
    const limit = req.query.limit === undefined ? 100 : Number(req.query.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > LIMITS.list) throw new HttpError('DRIFT_ERR_USAGE', `limit must be an integer from 1 to ${LIMITS.list}`, 400);
    const list = ledger.list({ states: states as ActionState[], ...(req.query.host ? { hostId: req.query.host } : {}), limit });
    return { actions: list.map(actionView) };
  });

  app.get<{ Params: { id: string } }>('/v1/actions/:id', opts, async (req) => {
    const a = found(req.params.id);
    return { ...actionView(a), events: ledger.events(a.id).map((e) => ({ ...e, at: new Date(e.at).toISOString() })) };
  });

  app.post('/v1/actions/plan', opts, async (req) => {
    const b = body(PlanBody, req.body, 'plan');
    return ledger.plan(now(), b.policy ?? GuardPolicySchema.parse({}), b.requireInstanceId);
  });

  app.post('/v1/actions', opts, async (req) => {
    const b = body(AdmitBody, req.body, 'admit');
    try {
      const r = ledger.admit(now(), {
        policy: b.policy ?? GuardPolicySchema.parse({}), provider: b.provider, actor: b.actor, requireInstanceId: b.requireInstanceId,
        ...(b.hosts ? { hosts: b.hosts } : {}), ...(b.reason !== undefined ? { reason: b.reason } : {}), ...(b.force !== undefined ? { force: b.force } : {}),
      });
      deps.blocks.add(guardCounts(r.blocked));
      return { admitted: r.admitted.map(actionView), blocked: r.blocked };
    } catch (err) { return asHttp(err); }
  });

  app.patch<{ Params: { id: string } }>('/v1/actions/:id', opts, async (req) => {
    const b = body(UpdateBody, req.body, 'update');
    found(req.params.id);
    try {
      return actionView(ledger.update(now(), req.params.id, {
        state: b.state, ...(b.providerRef !== undefined ? { providerRef: b.providerRef } : {}), ...(b.progress !== undefined ? { progress: b.progress } : {}),
        ...(b.error !== undefined ? { error: b.error } : {}), ...(b.attempt !== undefined ? { attempt: b.attempt } : {}), ...(b.note !== undefined ? { note: b.note } : {}),
        ...(b.owner !== undefined ? { owner: b.owner } : {}), ...(b.leaseMs !== undefined ? { leaseMs: b.leaseMs } : {}),
      }));
    } catch (err) { return asHttp(err); }
  });

  app.post<{ Params: { id: string } }>('/v1/actions/:id/cancel', opts, async (req) => {
    const b = body(CancelBody, req.body, 'cancel');
    found(req.params.id);
    try { return actionView(ledger.cancel(now(), req.params.id, b.reason)); } catch (err) { return asHttp(err); }
  });

  app.get<{ Params: { id: string }; Querystring: { instance?: string | string[] } }>('/v1/actions/:id/replacement', opts, async (req) => {
    found(req.params.id);
    const q = req.query.instance;
    const instances = q === undefined ? [] : Array.isArray(q) ? q : [q];
    if (instances.length > 100 || instances.some((i) => i.length > 128)) throw new HttpError('DRIFT_ERR_USAGE', 'at most 100 instance ids of at most 128 characters', 400);
    return ledger.replacement(req.params.id, instances);
  });

  app.post('/v1/actions/verify', opts, async () => {
    const v = ledger.verify(now());
    return { verified: v.verified.map(actionView), tripped: v.tripped.map(actionView), waiting: v.waiting.map(actionView) };
  });

  const enforcement = () => {
    const p = ledger.paused();
    return {
      paused: p.paused, reason: p.reason, updatedAt: p.updatedAt === 0 ? null : new Date(p.updatedAt).toISOString(),
      breakers: ledger.breakers().map((b) => ({ ...b, openedAt: new Date(b.openedAt).toISOString() })),
    };
  };
  app.get('/v1/enforcement', opts, async () => enforcement());
  app.put('/v1/enforcement', opts, async (req) => {
    const b = body(PauseBody, req.body, 'enforcement');
    ledger.setPaused(now(), b.paused, b.reason ?? null);
    return enforcement();
  });
  app.post('/v1/enforcement/breakers', opts, async (req) => {
    const b = body(BreakerBody, req.body, 'breaker');
    ledger.openBreaker(now(), b.cohort, b.reason, b.actionId ?? null);
    return enforcement();
  });
  app.delete<{ Params: { cohort: string } }>('/v1/enforcement/breakers/:cohort', opts, async (req) => {
    if (!ledger.closeBreaker(req.params.cohort)) throw new HttpError('DRIFT_ERR_NOT_FOUND', `no open breaker for cohort ${req.params.cohort}; GET /v1/enforcement lists them`);
    return enforcement();
  });
}
