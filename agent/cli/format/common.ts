import type { Finding, Report } from '../../protocol/finding.js';
import type { Change, Severity } from '../../protocol/rules.js';

import { SEVERITIES_DESC } from '../../engine/report.js';

/** Severities from the most to the least severe: the order every format prints them in. */
export const SEVERITY_ORDER = SEVERITIES_DESC;

/** `+` added, `-` removed, `~` modified: the change symbol of a finding. */
export function changeSymbol(change: Change): string {
  switch (change) {
    case 'added': return '+';
    case 'removed': return '-';
    case 'modified': return '~';
    default: {
      const never: never = change;
      throw new TypeError(`unknown change ${String(never)}`);
    }
  }
}

/** Findings of one severity, in report order. */
export function findingsOf(report: Report, severity: Severity): Finding[] {
  return report.findings.filter((f) => f.severity === severity);
}

/** `3 findings (1 critical, 2 high)` or `no drift`. */
export function countPhrase(report: Report): string {
  const n = report.summary.findings;
  if (n === 0) return 'no drift';
  const parts = SEVERITY_ORDER.filter((s) => report.summary.bySeverity[s] > 0).map((s) => `${report.summary.bySeverity[s]} ${s}`);
  return `${n} ${n === 1 ? 'finding' : 'findings'} (${parts.join(', ')})`;
}

/** The one-line summary every human format starts with. */
export function summaryLine(report: Report): string {
  const n = report.summary.findings;
  const on = `on ${report.target} against image ${report.baseline.imageId}`;
  return n === 0 ? `drift: no drift ${on}` : `drift: ${countPhrase(report)} ${on}`;
}

/** `action replace, rule rules/base.yaml:12` (or `default policy`). */
export function judgedBy(f: Finding): string {
  return `action ${f.action}, ${f.rule ? `rule ${f.rule}` : 'default policy'}`;
}

/**
 * A path or text from a host as one line a terminal shows as it is: control
 * characters (newline, CR, ESC ...), U+2028 and U+2029 and backslashes escaped
 * (`\n`, `\r`, `\x1b`, `\u2028`), so that a file named `evil\n` can neither hide
 * nor forge a line of the report.
 */
export function escapeShown(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\\\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => {
    switch (c) {
      case '\\': return '\\\\';
      case '\n': return '\\n';
      case '\r': return '\\r';
      case '\t': return '\\t';
      default: {
        const code = c.charCodeAt(0);
        return code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
      }
    }
  });
}
