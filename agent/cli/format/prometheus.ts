import type { Report } from '../../protocol/finding.js';
import { SEVERITIES } from '../../protocol/rules.js';

/**
 * Reports as a node_exporter textfile (Prometheus text exposition format 0.0.4), so a
 * host already scraped by Prometheus can alert on a `drift scan` run from a timer:
 * findings by severity, the scan time, unread paths and whether the baseline's
 * signature was verified. Every series is labelled with the target and the image.
 */
export function formatPrometheus(report: Report, now: Date = new Date()): string {
  return formatPrometheusMany([report], now);
}

/** Several reports (a fleet scan): one series per report and severity. */
export function formatPrometheusMany(reports: readonly Report[], now: Date = new Date()): string {
  const out: string[] = [];
  const family = (name: string, help: string, type: 'gauge', rows: Array<[Report, string, number]>): void => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [r, extra, value] of rows) out.push(`${name}{${labels(r)}${extra}} ${value}`);
  };
  family('drift_findings', 'Findings of the last drift scan, by severity.', 'gauge',
    reports.flatMap((r) => SEVERITIES.map((s): [Report, string, number] => [r, `,severity="${s}"`, r.summary.bySeverity[s]])));
  family('drift_last_scan_timestamp_seconds', 'When the last drift scan finished (Unix time).', 'gauge',
    reports.map((r): [Report, string, number] => [r, '', Math.floor(now.getTime() / 1000)]));
  family('drift_unread_paths', 'Paths the last drift scan could not read: drift there would go unseen.', 'gauge',
    reports.map((r): [Report, string, number] => [r, '', r.unread.length]));
  family('drift_baseline_verified', '1 when the baseline\'s signature was verified with a trusted key, else 0.', 'gauge',
    reports.map((r): [Report, string, number] => [r, '', r.baseline.signature.status === 'verified' ? 1 : 0]));
  return `${out.join('\n')}\n`;
}

function labels(r: Report): string {
  return `target="${labelValue(r.target)}",image="${labelValue(r.baseline.imageId)}"`;
}

/** Escape a label value as the exposition format requires (backslash, quote, newline); other controls dropped. */
export function labelValue(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n').replace(/[\u0000-\u0009\u000b-\u001f\u007f]/g, '');
}
