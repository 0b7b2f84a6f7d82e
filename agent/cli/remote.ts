import { z } from 'zod';
import { DriftError } from '../protocol/errors.js';
import type { Finding, Report } from '../protocol/finding.js';
import { UnreadSchema } from '../protocol/manifest.js';
import { FirstBootSchema } from '../protocol/pins.js';
import { CHANGES, FINDING_KINDS, ACTIONS, SEVERITIES } from '../protocol/rules.js';
import { fetchFleet, fetchHost, fetchHosts } from '../transport/client.js';
import { buildReport } from '../engine/report.js';
import { mapLimit } from '../limit.js';
import { visible } from './format/common.js';

/**
 * The collector's view of hosts, turned into the same reports a local scan prints
 * (`drift scan --collector URL --host ID | --fleet`). The collector's answers are
 * parsed here, at the boundary, so a collector of another version fails clearly.
 */

const RemoteFindingSchema = z.looseObject({
  kind: z.enum(FINDING_KINDS),
  key: z.string(),
  change: z.enum(CHANGES),
  changed: z.array(z.string()),
  before: z.unknown(),
  after: z.unknown(),
  severity: z.enum(SEVERITIES),
  action: z.enum(ACTIONS),
  rule: z.string().nullable(),
  explanation: z.string(),
  diff: z.string().optional(),
});

const HostSummarySchema = z.looseObject({
  id: z.string(),
  hostname: z.string(),
  imageId: z.string().nullable(),
  status: z.enum(['clean', 'drifted', 'silent', 'unknown-image']),
  findings: z.number().int().nonnegative(),
  snowflake: z.object({ score: z.number() }).nullable(),
  lastSeen: z.string().nullable(),
});
export type HostSummary = z.infer<typeof HostSummarySchema>;

const HostDetailSchema = HostSummarySchema.extend({
  findings: z.array(RemoteFindingSchema),
  baseline: z.object({ imageId: z.string(), digest: z.string() }).nullable(),
  unread: z.array(UnreadSchema),
  /** Absent from collectors that predate first-boot pins. */
  firstBoot: FirstBootSchema.nullable().optional(),
});
export type HostDetail = z.infer<typeof HostDetailSchema>;

const FindingKeySchema = z.looseObject({ kind: z.string(), key: z.string(), change: z.string() });
const CohortSchema = z.looseObject({
  imageId: z.string().nullable(),
  role: z.string().nullable(),
  hosts: z.number(),
  drifted: z.number(),
  fleetWide: z.array(FindingKeySchema.extend({ hosts: z.number(), share: z.number(), recommendation: z.string() })),
  snowflakes: z.array(z.looseObject({ hostId: z.string(), hostname: z.string(), score: z.number(), why: z.string(), findings: z.array(FindingKeySchema) })),
});
export type CohortView = z.infer<typeof CohortSchema>;

function parse<T>(schema: z.ZodType<T>, value: unknown, what: string, url: string): T {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  throw new DriftError('DRIFT_ERR_MANIFEST', `${url} answered ${what} this drift does not understand (${issue ? `${issue.path.join('.') || '(top)'}: ${issue.message}` : 'invalid'}); is the collector the same version?`);
}

/** A host as the collector sees it, as a `drift.report/v1` report. */
export function hostReport(host: HostDetail): Report {
  return buildReport({
    target: host.hostname ? `${host.hostname} (${host.id})` : host.id,
    baseline: host.baseline ?? { imageId: host.imageId ?? 'unknown', digest: 'none' },
    // The collector judged these with the same engine; fields past the Finding shape (firstSeen, lastSeen) ride along.
    findings: host.findings as unknown as Finding[],
    unread: host.unread,
    ...(host.firstBoot ? { firstBoot: host.firstBoot } : {}),
  });
}

export async function remoteHost(url: string, token: string, hostId: string): Promise<HostDetail> {
  return parse(HostDetailSchema, await fetchHost(url, token, hostId), `host ${hostId}`, url);
}

/** Every host, the cohorts, and a report for each host with findings. */
export async function remoteFleet(url: string, token: string): Promise<{ hosts: HostSummary[]; cohorts: CohortView[]; reports: Report[] }> {
  const hosts = parse(z.array(HostSummarySchema), (await fetchHosts(url, token)).hosts, 'a host list', url);
  const cohorts = parse(z.array(CohortSchema), (await fetchFleet(url, token)).cohorts, 'a fleet view', url);
  // A few requests at a time: one per drifted host, in the host list's order.
  const reports = await mapLimit(hosts.filter((h) => h.findings > 0), 8, async (h) => hostReport(await remoteHost(url, token, h.id)));
  return { hosts, cohorts, reports };
}

export const FLEET_SCHEMA = 'drift.fleet/v1';

/** A fleet view in a person's words: one paragraph per cohort. */
export function fleetSummary(hosts: HostSummary[], cohorts: CohortView[], markdown: boolean): string {
  const out: string[] = [];
  const byStatus = (s: HostSummary['status']): number => hosts.filter((h) => h.status === s).length;
  const head = `drift fleet: ${hosts.length} hosts, ${byStatus('drifted')} drifted, ${byStatus('silent')} silent, ${byStatus('unknown-image')} of unknown image`;
  out.push(markdown ? `# ${head}` : head);
  for (const c of cohorts) {
    const name = `image ${c.imageId ?? '(none)'}${c.role ? `, role ${c.role}` : ''}`;
    out.push('', markdown ? `## ${name}: ${c.hosts} hosts, ${c.drifted} drifted` : `${name}: ${c.hosts} hosts, ${c.drifted} drifted`);
    for (const f of c.fleetWide) {
      out.push(`${markdown ? '- ' : '  '}fleet-wide: ${f.kind} ${f.change} ${f.key} on ${f.hosts} hosts (${Math.round(f.share * 100)}%): ${f.recommendation}, not a reason to replace`);
    }
    for (const s of c.snowflakes) {
      out.push(`${markdown ? '- ' : '  '}snowflake: ${s.hostname} (${s.hostId}) score ${s.score.toFixed(2)}: ${s.why}`);
    }
  }
  return `${out.map((line) => visible(line)).join('\n')}\n`;
}
