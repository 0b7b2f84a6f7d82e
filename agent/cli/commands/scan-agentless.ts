import { resolve } from 'node:path';
import { DriftError } from '../../protocol/errors.js';
import type { Report } from '../../protocol/finding.js';
import { BaselineSchema, REPORT_REQUEST_SCHEMA, type Baseline, type Manifest } from '../../protocol/manifest.js';
import { sortedJson } from '../../protocol/canonical.js';
import { AGENTLESS_SCHEMA, type AgentlessReport } from '../../protocol/wire.js';
import { baselineDigest, scopedRules } from '../../baseline.js';
import { checkBaseline, loadTrustedKeys } from '../../sign.js';
import { loadRuleSet } from '../../rules/load.js';
import { compareWithDrops } from '../../engine/compare.js';
import { buildReport, exitCodeOf } from '../../engine/report.js';
import { durationOption } from '../../units.js';
import { adminJson, readSecretFile } from '../../transport/client.js';
import { format, useColor, type FormatName } from '../format/index.js';
import { formatJunitMany } from '../format/junit.js';
import { formatPrometheusMany } from '../format/prometheus.js';
import { truncationNote, type VerdictTruncation } from '../format/verdict.js';
import { clientOptions, readJsonFile } from '../common.js';
import { newS3Client, newSsmClient, parseS3Location, scanOverSsm, type S3Location } from '../../remote/ssm.js';
import { collectOverSsh } from '../../remote/ssh.js';
import { readTargets, sweep, sweepTable, TARGETS_LIMITS, worstExit, type SweepResult, type SweepTarget } from '../../remote/sweep.js';

/**
 * `drift scan --ssm` and `drift scan --targets`: agentless scans. Loaded only when one
 * of these flags is given, so a local scan never loads the AWS SDK.
 */
export interface AgentlessOptions {
  ssm?: string;
  targets?: string;
  region?: string;
  endpoint?: string;
  ssmOutputS3?: string;
  s3Endpoint?: string;
  timeout?: string;
  concurrency?: string;
  baseline?: string[] | string;
  pubkey?: string[];
  trustDir: string;
  rules?: string[];
  collector?: string;
  adminTokenFile?: string;
  caFile?: string;
  format: string;
}

const DEFAULT_TIMEOUT_MS = 5 * 60_000;

/** Print a report decoded from a verdict, with its truncation said where the format can say it. */
function printReport(report: Report, truncated: VerdictTruncation | undefined, fmt: FormatName): string {
  const note = truncated ? truncationNote(truncated) : null;
  const color = useColor(process.stdout, process.env);
  if (fmt === 'json' && note && truncated) return sortedJson({ ...report, truncated });
  const out = format(report, { format: fmt, color });
  if (note && (fmt === 'text' || fmt === 'markdown')) return `${out}${fmt === 'markdown' ? '\n> ' : ''}${note}\n`;
  if (note) process.stderr.write(`drift: ${note}\n`);
  return out;
}

/** `drift scan --ssm INSTANCE_ID`: returns the exit code. */
export async function scanSsmCommand(opts: AgentlessOptions, fmt: FormatName): Promise<number> {
  if (opts.baseline !== undefined || opts.targets !== undefined) {
    throw new DriftError('DRIFT_ERR_USAGE', 'scan: --ssm runs the drift baked into the instance against its own baseline (/etc/drift/baseline.json); leave out --baseline and --targets');
  }
  const timeoutMs = opts.timeout ? durationOption(opts.timeout, '--timeout') : DEFAULT_TIMEOUT_MS;
  const r = await scanOverSsm(opts.ssm ?? '', { ...regionOpts(opts), ...s3Opts(opts), timeoutMs });
  process.stdout.write(printReport(r.verdict.report, r.verdict.truncated, fmt));
  return exitCodeOf(r.verdict.report);
}

function regionOpts(opts: AgentlessOptions): { region?: string; endpoint?: string } {
  return { ...(opts.region ? { region: opts.region } : {}), ...(opts.endpoint ? { endpoint: opts.endpoint } : {}) };
}

/** Where SSM writes the whole output (--ssm-output-s3), and another S3 endpoint. */
function s3Opts(opts: AgentlessOptions): { outputS3?: S3Location; s3Endpoint?: string } {
  if (opts.ssmOutputS3 === undefined) {
    if (opts.s3Endpoint !== undefined) throw new DriftError('DRIFT_ERR_USAGE', 'scan: --s3-endpoint goes with --ssm-output-s3');
    return {};
  }
  return { outputS3: parseS3Location(opts.ssmOutputS3), ...(opts.s3Endpoint ? { s3Endpoint: opts.s3Endpoint } : {}) };
}

/** `drift scan --targets FILE`: a report per target, the summary table, the worst exit code. */
export async function scanTargetsCommand(opts: AgentlessOptions, fmt: FormatName): Promise<number> {
  const targets = await readTargets(resolve(opts.targets ?? ''));
  const concurrency = opts.concurrency === undefined ? 8 : Number(opts.concurrency);
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > TARGETS_LIMITS.concurrency) {
    throw new DriftError('DRIFT_ERR_USAGE', `scan: --concurrency must be a whole number from 1 to ${TARGETS_LIMITS.concurrency}, got ${JSON.stringify(opts.concurrency)}`);
  }
  if ((opts.collector === undefined) !== (opts.adminTokenFile === undefined)) {
    throw new DriftError('DRIFT_ERR_USAGE', 'scan: posting a sweep to a collector needs both --collector URL and --admin-token-file FILE');
  }
  const timeoutMs = opts.timeout ? durationOption(opts.timeout, '--timeout') : DEFAULT_TIMEOUT_MS;
  const files = opts.baseline === undefined ? [] : Array.isArray(opts.baseline) ? opts.baseline : [opts.baseline];
  const baselines = await loadSweepBaselines(targets, { files, pubkeys: opts.pubkey ?? [], trustDir: opts.trustDir, rules: opts.rules ?? [] });
  const results = await runSweep(targets, { concurrency, timeoutMs, ...regionOpts(opts), ...s3Opts(opts), baselines });
  if (opts.collector !== undefined && opts.adminTokenFile !== undefined) {
    const token = await readSecretFile(opts.adminTokenFile);
    await postSweep(results, opts.collector, token, await clientOptions(opts.caFile));
  }
  process.stdout.write(formatSweep(results, fmt));
  return worstExit(results);
}

/** Baselines for ssh targets (an ssm target uses the one baked into it), by image id. */
export interface SweepBaselines {
  byImage: Map<string, { baseline: Baseline; path: string; signature: ReturnType<typeof checkBaseline> }>;
  rules: Awaited<ReturnType<typeof loadRuleSet>>;
}

/** The baselines of a sweep's ssh:// targets (verified with the trusted keys); undefined when it has none. */
export async function loadSweepBaselines(targets: readonly SweepTarget[], o: { files: string[]; pubkeys: string[]; trustDir: string; rules: string[] }): Promise<SweepBaselines | undefined> {
  const files = o.files;
  if (!targets.some((t) => t.via === 'ssh')) {
    if (files.length > 0) throw new DriftError('DRIFT_ERR_USAGE', 'scan: --baseline is for ssh:// targets; an ssm:// target is judged against the baseline baked into it');
    return undefined;
  }
  if (files.length === 0) throw new DriftError('DRIFT_ERR_USAGE', 'scan: ssh:// targets need --baseline FILE (repeatable: the image id on a target\'s line picks one)');
  const keys = await loadTrustedKeys(o.pubkeys, resolve(o.trustDir));
  const byImage: SweepBaselines['byImage'] = new Map();
  for (const f of files) {
    const path = resolve(f);
    const baseline = await readJsonFile(path, BaselineSchema, 'baseline');
    byImage.set(baseline.host.image?.id ?? 'unknown', { baseline, path, signature: checkBaseline(baseline, keys, path) });
  }
  return { byImage, rules: await loadRuleSet(o.rules) };
}

/** Scan every target of a sweep; what `drift audit`'s sweep pass runs too. */
export async function runSweep(targets: readonly SweepTarget[], o: { concurrency: number; timeoutMs: number; region?: string; endpoint?: string; outputS3?: S3Location; s3Endpoint?: string; baselines?: SweepBaselines | undefined }): Promise<SweepResult[]> {
  let client: ReturnType<typeof newSsmClient> | undefined;
  let s3: ReturnType<typeof newS3Client> | undefined;
  const ssmClient = (): ReturnType<typeof newSsmClient> => (client ??= newSsmClient(o));
  const s3Client = (): ReturnType<typeof newS3Client> | undefined => (o.outputS3 ? (s3 ??= newS3Client(o)) : undefined);
  try {
    return await sweep(targets, o.concurrency, async (t) => {
      switch (t.via) {
        case 'ssm': {
          const r = await scanOverSsm(t.instanceId, { ...o, timeoutMs: o.timeoutMs }, ssmClient(), s3Client());
          return { report: r.verdict.report, truncated: r.verdict.truncated, ...(r.verdict.manifest ? { manifest: r.verdict.manifest } : {}) };
        }
        case 'ssh': {
          const b = o.baselines;
          const picked = b ? (t.imageId !== undefined ? b.byImage.get(t.imageId) : b.byImage.size === 1 ? [...b.byImage.values()][0] : undefined) : undefined;
          if (!b || !picked) throw new DriftError('DRIFT_ERR_USAGE', `line ${t.line}: no baseline for ${t.text}: give its image id on its line and a --baseline of that image`);
          const rules = scopedRules(picked.baseline, b.rules, picked.path);
          const manifest = await collectOverSsh(t.ssh, { timeoutMs: o.timeoutMs }, { rules });
          const { findings, dropped } = compareWithDrops({ baseline: picked.baseline, manifest, rules: b.rules });
          const report = buildReport({
            target: t.text,
            baseline: { imageId: picked.baseline.host.image?.id ?? 'unknown', digest: baselineDigest(picked.baseline), signature: picked.signature },
            findings, unread: manifest.unread, dropped,
          });
          return { report, manifest };
        }
        default: {
          const never: never = t;
          throw new TypeError(`unknown target ${String(never)}`);
        }
      }
    });
  } finally {
    client?.destroy();
    s3?.destroy();
  }
}

/** The collector's host id of an agentless target: its scheme and address, never a machine-id an agent may enroll with. */
export function agentlessHostId(t: Pick<SweepResult, 'target' | 'via'>): string {
  return `${t.via}:${t.target.replace(/^(ssh|ssm):\/\//, '')}`;
}

/**
 * Post each whole manifest as its host's report (`POST /v1/agentless/reports`, admin
 * token). A target without a whole manifest (an ssm verdict that could not carry it,
 * or an error) is not posted, and `posted` says why.
 */
export async function postSweep(results: SweepResult[], collector: string, token: string, client: Awaited<ReturnType<typeof clientOptions>>): Promise<void> {
  for (const r of results) {
    if (!r.manifest) {
      r.posted = r.status === 'error' ? 'no: scan failed' : `no: manifest did not fit in SSM's 24,000-character output (${NOT_POSTED_FIX})`;
      continue;
    }
    const hostId = agentlessHostId(r);
    const body: AgentlessReport = { schema: AGENTLESS_SCHEMA, via: r.via, report: envelope(r.manifest, hostId) };
    try {
      await adminJson('POST', collector, '/v1/agentless/reports', token, body, client);
      r.posted = 'yes';
      r.hostId = hostId;
    } catch (err) {
      r.posted = `no: ${err instanceof Error ? err.message.slice(0, 300) : String(err)}`;
    }
  }
}

/** What to do when an ssm manifest did not fit in SSM's output. */
export const NOT_POSTED_FIX = 'use --ssm-output-s3 s3://BUCKET/PREFIX';

function envelope(m: Manifest, hostId: string): AgentlessReport['report'] {
  return { schema: REPORT_REQUEST_SCHEMA, seq: Date.now(), collectedAt: m.collectedAt, hostId, host: m.host, digests: m.digests, manifest: m };
}

/** A sweep in one format: the reports, then the table (text, markdown); one object (json); the reports (junit, prometheus). */
export function formatSweep(results: readonly SweepResult[], fmt: FormatName): string {
  const reports = results.flatMap((r) => (r.report ? [r.report] : []));
  switch (fmt) {
    case 'json':
      return sortedJson({
        schema: 'drift.sweep/v1',
        exit: worstExit(results),
        targets: results.map((r) => ({
          target: r.target, via: r.via, line: r.line, status: r.status, exit: r.exit,
          report: r.report ?? null, truncated: r.truncated ?? null, error: r.error ?? null, posted: r.posted ?? null, hostId: r.hostId ?? null,
        })),
      });
    case 'junit':
      return formatJunitMany(reports);
    case 'prometheus':
      return formatPrometheusMany(reports);
    case 'text':
    case 'markdown': {
      const parts = results.flatMap((r) => (r.report ? [printReportQuiet(r.report, r.truncated, fmt)] : []));
      const table = sweepTable(results);
      return [...parts, fmt === 'markdown' ? `\`\`\`\n${table}\`\`\`\n` : table].join('\n');
    }
    default: {
      const never: never = fmt;
      throw new TypeError(`unknown format ${String(never)}`);
    }
  }
}

function printReportQuiet(report: Report, truncated: VerdictTruncation | undefined, fmt: 'text' | 'markdown'): string {
  const note = truncated ? truncationNote(truncated) : null;
  const out = format(report, { format: fmt, color: useColor(process.stdout, process.env) });
  return note ? `${out}${note}\n` : out;
}
