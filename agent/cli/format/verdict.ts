import { gunzipSync, gzipSync } from 'node:zlib';
import { z } from 'zod';
import { canonicalJson } from '../../protocol/canonical.js';
import { DriftError } from '../../protocol/errors.js';
import { REPORT_SCHEMA, type Finding, type Report } from '../../protocol/finding.js';
import { ManifestSchema, UnreadSchema, type Manifest } from '../../protocol/manifest.js';
import { FirstBootSchema } from '../../protocol/pins.js';
import { CHANGES, FINDING_KINDS, SEVERITIES } from '../../protocol/rules.js';
import { RemoteFindingSchema, SignatureCheckSchema } from '../remote.js';
import { SEVERITY_ORDER } from './common.js';

/**
 * `drift scan --format verdict`: a scan's report as one line that fits in what AWS
 * Systems Manager returns of a command's output (24,000 characters):
 * `drift.verdict/v1 <base64 of gzip of canonical JSON>`. The JSON is
 * `{ schema, report, truncated, manifest? }`: the report's summary always counts every
 * finding (so the exit code and counts stay exact); when the whole does not fit, the
 * manifest is left out first, then file contents and diffs are cut, then the least
 * severe findings and the unread list are dropped, and `truncated` says how many of
 * each. The manifest rides along only when everything fits with it. A whole verdict
 * (`--whole-verdict`, for SSM output written to S3) is never cut.
 */
export const VERDICT_SCHEMA = 'drift.verdict/v1';
/** The hard cap of the printed line, newline included: SSM keeps 24,000 characters. */
export const VERDICT_MAX_CHARS = 23_500;
/** The most a verdict may inflate to when read: more is refused as a gzip bomb. */
export const VERDICT_MAX_INFLATED = 16 * 1024 * 1024;
const PREFIX = `${VERDICT_SCHEMA} `;
/** Diff text kept per finding when diffs must be cut. */
const DIFF_CUT = 400;

/** What a verdict left out to fit; all zero / false when nothing was. */
export interface VerdictTruncation {
  manifest: boolean;
  findings: number;
  diffs: number;
  unread: number;
}

export interface Verdict {
  schema: typeof VERDICT_SCHEMA;
  report: Report;
  truncated: VerdictTruncation;
  manifest?: Manifest;
}

function line(v: Verdict): string {
  return `${PREFIX}${gzipSync(canonicalJson(v), { level: 9 }).toString('base64')}\n`;
}

/** A finding without the bulk a verdict can lose: file content and a long diff. */
function slim(f: Finding): { finding: Finding; cut: boolean } {
  const copy = { ...f } as Finding & { before: unknown; after: unknown };
  let cut = false;
  for (const side of ['before', 'after'] as const) {
    const v = copy[side];
    if (v !== null && typeof v === 'object' && 'content' in v) {
      const { content: _dropped, ...rest } = v as Record<string, unknown>;
      copy[side] = rest;
      cut = true;
    }
  }
  if (copy.diff !== undefined && copy.diff.length > DIFF_CUT) {
    copy.diff = `${copy.diff.slice(0, DIFF_CUT)}\n… (diff truncated to fit the verdict)`;
    cut = true;
  }
  return { finding: copy as Finding, cut };
}

/** The verdict line of a report, at most VERDICT_MAX_CHARS characters. */
export function formatVerdict(report: Report, manifest?: Manifest, maxChars = VERDICT_MAX_CHARS): string {
  const none: VerdictTruncation = { manifest: false, findings: 0, diffs: 0, unread: 0 };
  if (manifest) {
    const whole = line({ schema: VERDICT_SCHEMA, report, truncated: none, manifest });
    if (whole.length <= maxChars) return whole;
  }
  const truncated = { ...none, manifest: manifest !== undefined };
  let out = line({ schema: VERDICT_SCHEMA, report, truncated });
  if (out.length <= maxChars) return out;
  // Most severe first, so what is dropped is the least severe.
  const rank = (f: Finding): number => SEVERITY_ORDER.indexOf(f.severity);
  const slimmed = report.findings.map(slim);
  const findings = slimmed.map((s) => s.finding).sort((a, b) => rank(a) - rank(b));
  const diffs = slimmed.filter((s) => s.cut).length;
  const attempt = (keep: number, unread: number): string => line({
    schema: VERDICT_SCHEMA,
    report: { ...report, findings: findings.slice(0, keep), unread: report.unread.slice(0, unread) },
    truncated: { manifest: truncated.manifest, diffs, findings: findings.length - keep, unread: report.unread.length - unread },
  });
  out = attempt(findings.length, report.unread.length);
  if (out.length <= maxChars) return out;
  // The unread list is capped at 200 entries before findings go; then the most findings that fit.
  const unread = Math.min(report.unread.length, 200);
  let lo = 0;
  let hi = findings.length;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (attempt(mid, unread).length <= maxChars) lo = mid;
    else hi = mid - 1;
  }
  out = attempt(lo, unread);
  if (out.length <= maxChars) return out;
  out = attempt(0, 0);
  if (out.length <= maxChars) return out;
  throw new DriftError('DRIFT_ERR_TOO_LARGE', `scan: even without findings the verdict is ${out.length} characters, over ${maxChars}; the target name or the baseline's fields are too long`);
}

const severityCounts = z.object(Object.fromEntries(SEVERITIES.map((s) => [s, z.number().int().nonnegative()])) as Record<(typeof SEVERITIES)[number], z.ZodNumber>);
const changeCounts = z.object(Object.fromEntries(CHANGES.map((c) => [c, z.number().int().nonnegative()])) as Record<(typeof CHANGES)[number], z.ZodNumber>);
const ReportSchema = z.object({
  schema: z.literal(REPORT_SCHEMA),
  target: z.string().max(4096),
  baseline: z.object({ imageId: z.string().max(256), digest: z.string().max(128), signature: SignatureCheckSchema }),
  summary: z.object({
    findings: z.number().int().nonnegative(),
    bySeverity: severityCounts,
    byKind: z.object(Object.fromEntries(FINDING_KINDS.map((k) => [k, changeCounts])) as Record<(typeof FINDING_KINDS)[number], typeof changeCounts>),
  }),
  findings: z.array(RemoteFindingSchema).max(100_000),
  unread: z.array(UnreadSchema).max(100_000),
  dropped: z.array(z.object({ rule: z.string().max(4096), by: z.enum(['ignore', 'expect', 'policy']), count: z.number().int().nonnegative() })).max(10_000).optional(),
  firstBoot: FirstBootSchema.optional(),
});
const VerdictSchema = z.object({
  schema: z.literal(VERDICT_SCHEMA),
  report: ReportSchema,
  truncated: z.object({ manifest: z.boolean(), findings: z.number().int().nonnegative(), diffs: z.number().int().nonnegative(), unread: z.number().int().nonnegative() }),
  manifest: ManifestSchema.optional(),
});

/** The bounds of a whole verdict read from S3: the object's size, and what it may inflate to. */
export const WHOLE_VERDICT_LIMITS = Object.freeze({ maxChars: 64 * 1024 * 1024, maxInflated: 256 * 1024 * 1024 });

/**
 * Read a verdict line printed by a drift on another machine (hostile input): at most
 * `maxChars` characters (SSM's 24,000 by default), base64 only, inflating to at most
 * `maxInflated` bytes (VERDICT_MAX_INFLATED by default), and valid against the
 * verdict's schema. `where` names the source in errors.
 */
export function parseVerdict(text: string, where: string, limits: { maxChars?: number; maxInflated?: number } = {}): Verdict {
  const maxChars = limits.maxChars ?? 24_000;
  const maxInflated = limits.maxInflated ?? VERDICT_MAX_INFLATED;
  const bad = (why: string): DriftError => new DriftError('DRIFT_ERR_MANIFEST', `${where}: ${why}`);
  if (text.length > maxChars) throw bad(`output is ${text.length} characters, more than a verdict's ${maxChars}`);
  const at = text.indexOf(PREFIX);
  if (at < 0) throw bad(`output holds no ${VERDICT_SCHEMA} line; is the drift there older than --format verdict?`);
  const b64 = text.slice(at + PREFIX.length).split('\n', 1)[0]?.trim() ?? '';
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) throw bad('verdict is not base64');
  let json: string;
  try {
    json = gunzipSync(Buffer.from(b64, 'base64'), { maxOutputLength: maxInflated }).toString('utf8');
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') throw bad(`verdict inflates to more than ${maxInflated} bytes; refused`);
    throw bad(`verdict is not gzip (${(err as Error).message})`);
  }
  if (jsonTooDeep(json, VERDICT_MAX_DEPTH)) throw bad(`verdict nests JSON deeper than ${VERDICT_MAX_DEPTH} levels; refused`);
  let data: unknown;
  try { data = JSON.parse(json); } catch (err) { throw bad(`verdict is not JSON (${(err as Error).message})`); }
  const r = VerdictSchema.safeParse(data);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw bad(`verdict fails ${VERDICT_SCHEMA} at ${issue ? `${issue.path.join('.') || '(top)'}: ${issue.message}` : '?'}`);
  }
  const v = r.data;
  const verdict: Verdict = { schema: VERDICT_SCHEMA, report: v.report as unknown as Report, truncated: v.truncated };
  if (v.manifest) verdict.manifest = v.manifest;
  return verdict;
}

/** The deepest a verdict nests (verdict, manifest, files, entry, acl, entry: far below). */
const VERDICT_MAX_DEPTH = 32;

/** Whether JSON text nests deeper than `max`, found without parsing (so without recursion). */
function jsonTooDeep(text: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) { if (++depth > max) return true; }
    else if (c === 0x7d || c === 0x5d) depth--;
  }
  return false;
}

/** One line saying what a verdict left out, or null when it is whole. */
export function truncationNote(t: VerdictTruncation): string | null {
  const parts: string[] = [];
  if (t.findings > 0) parts.push(`${t.findings} least severe findings left out`);
  if (t.unread > 0) parts.push(`${t.unread} unread paths left out`);
  if (t.diffs > 0) parts.push(`file contents and diffs cut in ${t.diffs} findings`);
  if (parts.length === 0) return null;
  return `truncated: the verdict had to fit in SSM's 24,000 characters of output: ${parts.join('; ')} (the summary counts every finding; --ssm-output-s3 reads it whole)`;
}
