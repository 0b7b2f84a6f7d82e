import { REPORT_SCHEMA, type Finding, type Report, type SignatureCheck } from '../protocol/finding.js';
import type { Unread } from '../protocol/manifest.js';
import { SEVERITIES, type Severity } from '../protocol/rules.js';


/** What a report is built from. */
export interface ReportInput {
  /** Who was scanned: a hostname, a root folder, `ssh://host`. */
  target: string;
  /** The image the target is judged against, and what was checked of its signature (default: unverified). */
  baseline: { imageId: string; digest: string; signature?: SignatureCheck };
  /** From `compare`; findings whose action is `ignore` are dropped here. */
  findings: Finding[];
  /** The scanned manifest's `unread` list, kept so that a clean report does not hide blind spots. */
  unread: Unread[];
}

/** Build a `drift.report/v1`: summary counts every severity (zeros included). */
export function buildReport(input: ReportInput): Report {
  const findings = input.findings.filter((f) => f.action !== 'ignore');
  const bySeverity = Object.fromEntries(SEVERITIES.map((s) => [s, 0])) as Record<Severity, number>;
  for (const f of findings) bySeverity[f.severity] += 1;
  return {
    schema: REPORT_SCHEMA,
    target: input.target,
    baseline: { imageId: input.baseline.imageId, digest: input.baseline.digest, signature: input.baseline.signature ?? { status: 'unverified', keyId: null } },
    summary: { findings: findings.length, bySeverity },
    findings,
    unread: [...input.unread],
  };
}

/** diff(1)-style exit code of a report: 0 no findings, 1 findings (2, trouble, is the caller's). */
export function exitCodeOf(report: Pick<Report, 'summary'>): 0 | 1 {
  return report.summary.findings > 0 ? 1 : 0;
}

/** Severities from the most to the least severe, the order reports print them in. */
export const SEVERITIES_DESC: readonly Severity[] = [...SEVERITIES].reverse();
