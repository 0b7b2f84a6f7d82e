import { z } from 'zod';
import { DriftError } from '../protocol/errors.js';
import type { Finding, Report } from '../protocol/finding.js';
import { UnreadSchema } from '../protocol/manifest.js';
import { FirstBootSchema } from '../protocol/pins.js';
import { CHANGES, FINDING_KINDS, ACTIONS, SEVERITIES } from '../protocol/rules.js';
import { fetchFleet, fetchHost, fetchHosts, type ClientOptions } from '../transport/client.js';
import { buildReport } from '../engine/report.js';
import { mapLimit } from '../limit.js';
import { plural, visible } from './format/common.js';

/**
 * The collector's view of hosts, turned into the same reports a local scan prints
 * (`drift scan --collector URL --host ID | --fleet`). The collector's answers are
 * parsed here, at the boundary, so a collector of another version fails clearly.
 */

export const RemoteFindingSchema = z.looseObject({
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
  /** How the host reports: its agent, or a sweep over ssh or ssm (absent from older collectors). */
  via: z.enum(['agent', 'ssh', 'ssm']).optional(),
});
export type HostSummary = z.infer<typeof HostSummarySchema>;

export const SignatureCheckSchema = z.object({ status: z.enum(['verified', 'unverified', 'unsigned']), keyId: z.string().nullable() });
const HostDetailSchema = HostSummarySchema.extend({
  findings: z.array(RemoteFindingSchema),
  baseline: z.object({ imageId: z.string(), digest: z.string(), signature: SignatureCheckSchema.optional() }).nullable(),
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
  // The collector checks signatures when it stores a baseline (its --baseline-pubkey);
  // unless it says so, this report cannot claim a verified baseline.
  const b = host.baseline;
  return buildReport({
    target: host.hostname ? `${host.hostname} (${host.id})` : host.id,
    baseline: b
      ? { imageId: b.imageId, digest: b.digest, signature: b.signature ?? { status: 'unverified', keyId: null } }
      : { imageId: host.imageId ?? 'unknown', digest: 'none', signature: { status: 'unsigned', keyId: null } },
    // The collector judged these with the same engine; fields past the Finding shape (firstSeen, lastSeen) ride along.
    findings: host.findings as unknown as Finding[],
    unread: host.unread,
    ...(host.firstBoot ? { firstBoot: host.firstBoot } : {}),
  });
}

export async function remoteHost(url: string, token: string, hostId: string, opts: ClientOptions = {}): Promise<HostDetail> {
  return parse(HostDetailSchema, await fetchHost(url, token, hostId, opts), `host ${hostId}`, url);
}

/** Every host's status line (`GET /v1/hosts`). */
export async function remoteHosts(url: string, token: string, opts: ClientOptions = {}): Promise<HostSummary[]> {
  return parse(z.array(HostSummarySchema), (await fetchHosts(url, token, opts)).hosts, 'a host list', url);
}

/**
 * The host an operator names: its host id, or else its hostname when exactly one host
 * has it. Several hosts of one name (a replaced host, clones) are listed, so the
 * operator can pick an id.
 */
export async function resolveHost(url: string, token: string, name: string, opts: ClientOptions = {}): Promise<HostDetail> {
  const hosts = await remoteHosts(url, token, opts);
  if (hosts.some((h) => h.id === name)) return remoteHost(url, token, name, opts);
  const named = hosts.filter((h) => h.hostname === name);
  const only = named[0];
  if (named.length === 1 && only) return remoteHost(url, token, only.id, opts);
  if (named.length === 0) {
    throw new DriftError('DRIFT_ERR_NOT_FOUND', `no host with id or hostname ${JSON.stringify(name)} on ${url}; drift hosts --collector ${url} lists them`);
  }
  const shown = named.slice(0, 20).map((h) => `  ${h.id}  image ${h.imageId ?? '(none)'}  ${h.status}  last seen ${h.lastSeen ?? 'never'}`);
  throw new DriftError('DRIFT_ERR_USAGE', `${plural(named.length, 'host')} on ${url} are named ${JSON.stringify(name)}; give one id with --host:\n${shown.join('\n')}${named.length > 20 ? `\n  … and ${named.length - 20} more` : ''}`);
}

/** Every host, the cohorts, and a report for each host with findings. */
export async function remoteFleet(url: string, token: string, opts: ClientOptions = {}): Promise<{ hosts: HostSummary[]; cohorts: CohortView[]; reports: Report[] }> {
  const hosts = await remoteHosts(url, token, opts);
  const cohorts = parse(z.array(CohortSchema), (await fetchFleet(url, token, opts)).cohorts, 'a fleet view', url);
  // A few requests at a time: one per drifted host, in the host list's order.
  const reports = await mapLimit(hosts.filter((h) => h.findings > 0), 8, async (h) => hostReport(await remoteHost(url, token, h.id, opts)));
  return { hosts, cohorts, reports };
}

/** The host table of `drift hosts` and of `drift scan --fleet`: one line per host, ids included. */
export function hostTable(hosts: readonly HostSummary[]): string[] {
  // A VIA column only when some host has no agent, so an all-agent fleet reads as before.
  const via = hosts.some((h) => h.via !== undefined && h.via !== 'agent');
  const header = ['HOST', 'ID', 'IMAGE', 'STATUS', 'FINDINGS', 'LAST SEEN', ...(via ? ['VIA'] : []), 'SNOWFLAKE'];
  const rows = hosts.map((h) => [
    oneLine(h.hostname || '-'), oneLine(h.id), oneLine(h.imageId ?? '-'), h.status, String(h.findings), h.lastSeen ?? 'never',
    ...(via ? [h.via ?? 'agent'] : []), h.snowflake ? h.snowflake.score.toFixed(2) : '-',
  ]);
  const widths = header.map((_, i) => Math.max(...[header, ...rows].map((r) => (r[i] ?? '').length)));
  return [header, ...rows].map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ').trimEnd());
}

/** A value from the collector on one line: control and bidi characters (a hostile hostname) escaped. */
function oneLine(s: string): string {
  return visible(s);
}

export const FLEET_SCHEMA = 'drift.fleet/v1';

/** A fleet view in a person's words: one paragraph per cohort. */
export function fleetSummary(hosts: HostSummary[], cohorts: CohortView[], markdown: boolean): string {
  const out: string[] = [];
  const byStatus = (s: HostSummary['status']): number => hosts.filter((h) => h.status === s).length;
  const head = `drift fleet: ${plural(hosts.length, 'host')}, ${byStatus('drifted')} drifted, ${byStatus('silent')} silent, ${byStatus('unknown-image')} of unknown image`;
  out.push(markdown ? `# ${head}` : head);
  if (!markdown && hosts.length > 0) out.push('', ...hostTable(hosts));
  for (const c of cohorts) {
    const name = `image ${c.imageId ?? '(none)'}${c.role ? `, role ${c.role}` : ''}`;
    out.push('', markdown ? `## ${name}: ${plural(c.hosts, 'host')}, ${c.drifted} drifted` : `${name}: ${plural(c.hosts, 'host')}, ${c.drifted} drifted`);
    for (const f of c.fleetWide) {
      out.push(`${markdown ? '- ' : '  '}fleet-wide: ${f.kind} ${f.change} ${f.key} on ${plural(f.hosts, 'host')} (${Math.round(f.share * 100)}%): ${f.recommendation}, not a reason to replace`);
    }
    for (const s of c.snowflakes) {
      out.push(`${markdown ? '- ' : '  '}snowflake: ${s.hostname} (${s.hostId}) score ${s.score.toFixed(2)}: ${s.why}`);
    }
  }
  return `${out.map((line) => visible(line)).join('\n')}\n`;
}
