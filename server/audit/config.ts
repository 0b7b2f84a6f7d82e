import { readFile } from 'node:fs/promises';
import { CronTime } from 'cron';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { DriftError, errnoOf } from '../../agent/protocol/errors.js';
import { parseDuration } from '../config.js';
import { checkWindows, GuardPolicySchema } from '../fleet/guards.js';

/**
 * `drift audit --config FILE`: one YAML file, validated once here with exact
 * messages (file and key), then frozen. The provider credentials this daemon holds
 * (AWS through the SDK's usual chain, a webhook secret file) are never sent to the
 * collector.
 */

const duration = (what: string) => z.string().transform((s, ctx) => {
  try { return parseDuration(s, what); } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
    return z.NEVER;
  }
});
/**
 * A pass schedule (UTC): 5 cron fields (minute hour day month weekday), or 6 with a
 * seconds field first ("0/30 * * * * *" = every 30 s). Guard windows stay at 5 fields.
 */
const cron = z.string().min(1).max(100).superRefine((s, ctx) => {
  const n = s.trim().split(/\s+/).length;
  let bad: string | null;
  if (n === 5) bad = checkWindows([s]);
  else if (n === 6) {
    try { new CronTime(s, 'UTC'); bad = null; } catch (err) { bad = `schedule ${JSON.stringify(s)} is not a cron expression: ${(err as Error).message}`; }
  } else bad = `schedule ${JSON.stringify(s)} must be a 5-field cron expression (minute hour day month weekday), or 6 fields with seconds first, e.g. "*/5 * * * *" or "*/30 * * * * *"`;
  if (bad) ctx.addIssue({ code: 'custom', message: bad.replace(/^window/, 'schedule') });
});

/** Retries of a provider call that failed in a way worth retrying (timeout, 5xx, throttling). */
const RetrySchema = z.strictObject({
  attempts: z.number().int().min(1).max(20).default(3),
  backoff: duration('retry.backoff').prefault('5s'),
});

const CommandSchema = z.strictObject({
  kind: z.literal('command'),
  /** argv, no shell: argv[0] is run with the rest as arguments. */
  argv: z.array(z.string().min(1).max(4096)).min(1).max(64),
  timeout: duration('provider.timeout').prefault('10m'),
  /** Extra environment for the command (added to DRIFT_* and PATH). */
  env: z.record(z.string().regex(/^[A-Z_][A-Z0-9_]*$/), z.string().max(4096)).default({}),
});

const WebhookSchema = z.strictObject({
  kind: z.literal('webhook'),
  url: z.url({ protocol: /^https?$/ }),
  /** File holding the HMAC-SHA256 key (at least 16 characters). */
  secretFile: z.string().min(1),
  timeout: duration('provider.timeout').prefault('30s'),
});

const AsgSchema = z.strictObject({
  kind: z.literal('aws-autoscaling'),
  region: z.string().min(1).default('us-east-1'),
  /** Another endpoint than AWS's (a VPC endpoint, or an emulator in tests). */
  endpoint: z.url().optional(),
  /** surge: provision first, validate, then terminate with decrement. */
  strategy: z.enum(['surge', 'terminate-first', 'set-unhealthy']).default('surge'),
  /** Poll period of DescribeAutoScalingGroups while waiting. */
  poll: duration('provider.poll').prefault('15s'),
  /** How long a provision or a validation may take before the action fails. */
  deadline: duration('provider.deadline').prefault('30m'),
});

const SsmSchema = z.strictObject({
  kind: z.literal('aws-ssm-automation'),
  region: z.string().min(1).default('us-east-1'),
  endpoint: z.url().optional(),
  document: z.string().min(1).max(128).default('AWS-TerminateEC2Instance'),
  /** Runbook parameters; `{{instanceId}}`, `{{hostId}}`, `{{actionId}}` are replaced. */
  parameters: z.record(z.string().min(1).max(128), z.array(z.string().max(1024)).max(16)).default({ InstanceId: ['{{instanceId}}'] }),
  poll: duration('provider.poll').prefault('15s'),
  deadline: duration('provider.deadline').prefault('30m'),
});

export const ProviderConfigSchema = z.discriminatedUnion('kind', [CommandSchema, WebhookSchema, AsgSchema, SsmSchema]);
export type ProviderConfig = z.infer<typeof ProviderConfigSchema>;

export const PASSES = ['enforce', 'verify', 'silent', 'report', 'sweep'] as const;
export type PassName = (typeof PASSES)[number];

export const AuditFileSchema = z.strictObject({
  collector: z.url({ protocol: /^https?$/ }),
  adminTokenFile: z.string().min(1),
  /** dry-run (the default) plans and reports; enforce admits and acts. */
  mode: z.enum(['dry-run', 'enforce']).default('dry-run'),
  /** Cron expressions (UTC) per pass; a pass without one runs only with --once. */
  schedules: z.strictObject({
    enforce: cron.optional(), verify: cron.optional(), silent: cron.optional(), report: cron.optional(), sweep: cron.optional(),
  }).default({ enforce: '*/5 * * * *', verify: '*/5 * * * *', silent: '*/15 * * * *', report: '0 * * * *' }),
  guards: GuardPolicySchema.default(GuardPolicySchema.parse({})),
  provider: ProviderConfigSchema,
  retry: RetrySchema.default(RetrySchema.parse({})),
  silent: z.strictObject({
    /** The agents' report interval, and how many of them without a report make a host silent. */
    interval: duration('silent.interval').prefault('5m'),
    multiple: z.number().min(1).max(1000).default(3),
  }).default({ interval: 300_000, multiple: 3 }),
  report: z.strictObject({
    dir: z.string().min(1).default('/var/lib/drift-audit/reports'),
    /** POSTs `{ text }` (Slack-compatible) with the summary. */
    webhook: z.url({ protocol: /^https?$/ }).optional(),
  }).default({ dir: '/var/lib/drift-audit/reports' }),
  /** The sweep pass: agentless targets scanned and their whole manifests posted to the collector. */
  sweep: z.strictObject({
    /** One target per line: ssh://[user@]host[:port] or ssm://i-…, an optional image id, # comments. */
    targets: z.string().min(1),
    concurrency: z.number().int().min(1).max(64).default(8),
    /** The most one target may take. */
    timeout: duration('sweep.timeout').prefault('5m'),
    region: z.string().min(1).optional(),
    endpoint: z.url().optional(),
    /** The baseline ssh:// targets are compared with (an ssm:// target uses the one baked into it). */
    baseline: z.string().min(1).optional(),
  }).optional(),
}).superRefine((c, ctx) => {
  if (c.schedules.sweep !== undefined && c.sweep === undefined) {
    ctx.addIssue({ code: 'custom', path: ['sweep'], message: 'schedules.sweep is set, but there is no sweep: { targets: FILE } to sweep' });
  }
});
export type AuditConfig = Readonly<z.infer<typeof AuditFileSchema>>;

/** Parse a config document (already read); `where` names the file in messages. */
export function parseAuditConfig(data: unknown, where: string): AuditConfig {
  const r = AuditFileSchema.safeParse(data ?? {});
  if (!r.success) {
    const issue = r.error.issues[0];
    const key = issue?.path.join('.') || '(top)';
    const what = issue?.code === 'unrecognized_keys' ? `${key}: unknown key ${issue.keys.join(', ')}` : `${key}: ${issue?.message ?? 'invalid'}`;
    throw new DriftError('DRIFT_ERR_CONFIG', `${where}: ${what}; see README "Enforcement" for an example`);
  }
  return Object.freeze(r.data);
}

export async function loadAuditConfig(path: string): Promise<AuditConfig> {
  let text: string;
  try { text = await readFile(path, 'utf8'); } catch (err) {
    throw new DriftError('DRIFT_ERR_CONFIG', `cannot read audit config ${path}: ${errnoOf(err)}`, { cause: err });
  }
  if (text.length > 1024 * 1024) throw new DriftError('DRIFT_ERR_CONFIG', `${path}: larger than 1 MiB; an audit config is a page of YAML`);
  let data: unknown;
  try { data = parseYaml(text, { maxAliasCount: 100 }); } catch (err) {
    throw new DriftError('DRIFT_ERR_CONFIG', `${path}: not valid YAML: ${(err as Error).message}`, { cause: err });
  }
  return parseAuditConfig(data, path);
}
