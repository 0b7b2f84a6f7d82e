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

/**
 * Characters that a terminal or a Markdown viewer would act on rather than show:
 * C0 controls (ESC starts the sequences that clear a screen or retitle a window),
 * DEL, C1 controls (U+009B is a one-character CSI), the bidi controls that reorder
 * what follows (U+202A–U+202E, U+2066–U+2069, U+200E, U+200F, U+061C) and the
 * Unicode line and paragraph separators.
 */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const UNSAFE_BUT_TAB = /[\u0000-\u0008\u000a-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

function escapeUnsafe(c: string): string {
  switch (c) {
    case '\n': return '\\n';
    case '\r': return '\\r';
    case '\t': return '\\t';
    default: {
      const n = c.charCodeAt(0);
      return n < 0x100 ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u${n.toString(16).padStart(4, '0')}`;
    }
  }
}

/**
 * A string from a host (a path, a hostname, file content in a diff, an unread
 * reason, a rule file name) made safe to print for a person: every character of
 * UNSAFE shown as `\n`, `\r`, `\t`, `\xNN` (up to U+00FF) or `\uNNNN`, so `ESC[2J` in a file name
 * prints as `\x1b[2J` instead of clearing the findings above it. `keepTab`: leave
 * tabs as they are (diff lines, where a tab is content and harmless).
 */
export function visible(s: string, keepTab = false): string {
  return s.replace(keepTab ? UNSAFE_BUT_TAB : UNSAFE, escapeUnsafe);
}

/** `visible` for a text of several lines (an error message, a command's output): each line escaped, the line breaks kept. */
export function visibleLines(s: string): string {
  return s.split('\n').map((line) => visible(line)).join('\n');
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
