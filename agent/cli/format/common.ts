import type { Finding, Report } from '../../protocol/finding.js';
import type { Change, Severity } from '../../protocol/rules.js';

import { SEVERITIES_DESC } from '../../engine/report.js';

export { visible, visibleLines } from './visible.js';

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

/**
 * What first-boot pinning says about the target, or null where it does not apply:
 * when its first-boot values were pinned, and whether the default user's SSH keys
 * were verified against the instance's metadata or pinned on trust.
 */
export function firstBootLine(report: Report): string | null {
  const fb = report.firstBoot;
  if (!fb) return null;
  const pins = `first boot pinned ${fb.pinnedAt} (${fb.pins} path${fb.pins === 1 ? '' : 's'})`;
  const who = fb.user ?? 'the default user';
  switch (fb.keys) {
    case 'verified': return `${pins}; SSH keys of ${who} verified against the instance's metadata`;
    case 'trust': return `${pins}; SSH keys of ${who} pinned on trust, not verified: no instance metadata was readable`;
    case null: return pins;
    default: {
      const never: never = fb.keys;
      throw new TypeError(`unknown key source ${String(never)}`);
    }
  }
}

/** `action replace, rule rules/base.yaml:12` (or `default policy`). */
export function judgedBy(f: Finding): string {
  return `action ${f.action}, ${f.rule ? `rule ${f.rule}` : 'default policy'}`;
}

/** `1 host`, `2 hosts`: a count with its noun in the right number (`plural(1, 'process', 'processes')`). */
export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** The explanation without the key it starts with, for formats that print the key next to it. */
export function explanationOf(f: Finding): string {
  for (const prefix of [`${f.key}: `, `${f.key} `]) {
    if (f.explanation.startsWith(prefix)) return f.explanation.slice(prefix.length);
  }
  return f.explanation;
}
