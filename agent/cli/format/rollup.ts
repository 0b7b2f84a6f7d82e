import type { Finding, Report } from '../../protocol/finding.js';
import { CHANGES, FINDING_KINDS, SEVERITIES, type Severity } from '../../protocol/rules.js';
import { SEVERITY_ORDER, plural, visible } from './common.js';

/**
 * Roll-ups and the one-screen summary of the human formats (text, markdown): a
 * finding that follows from another (`cause`, set by buildReport) is printed under
 * its cause instead of on its own, so a removed package reads as one finding that
 * lists its files. JSON keeps every finding, linked by `cause`.
 */

/** A finding printed on its own, with the findings that follow from it. */
export interface Rolled {
  finding: Finding;
  consequences: Finding[];
}

/** Consequences listed by key under their cause before the rest is only counted. */
export const CONSEQUENCES_SHOWN = 10;
/** The worst findings the summary names. */
export const WORST_SHOWN = 5;

const keyOf = (f: { kind: string; key: string }): string => `${f.kind}\u0000${f.key}`;

/**
 * The report's findings rolled up under their causes, in report order. A consequence
 * judged more severe than its cause (a setuid binary in a new folder) stays a finding
 * of its own: rolling it up would hide it under a milder heading.
 */
export function rollUp(report: Report): Rolled[] {
  const roots = new Map<string, Rolled>();
  for (const f of report.findings) if (!f.cause) roots.set(keyOf(f), { finding: f, consequences: [] });
  const out: Rolled[] = [];
  for (const f of report.findings) {
    const parent = f.cause ? roots.get(keyOf(f.cause)) : undefined;
    if (parent && rank(f.severity) <= rank(parent.finding.severity)) parent.consequences.push(f);
    else out.push(roots.get(keyOf(f)) ?? { finding: f, consequences: [] });
  }
  return out;
}

const rank = (s: Severity): number => SEVERITIES.indexOf(s);

/** The rolled-up findings whose cause has this severity (consequences ride with their cause). */
export function rolledOf(rolled: readonly Rolled[], severity: Severity): Rolled[] {
  return rolled.filter((r) => r.finding.severity === severity);
}

/** `and 11 files it owned: /usr/bin/clear, … (and 1 more)` — one line, keys shown as they are. */
export function consequencePhrase(r: Rolled): string | null {
  const n = r.consequences.length;
  if (n === 0) return null;
  const what = r.finding.kind === 'package'
    ? `${plural(n, 'file')} it owned ${r.finding.change === 'removed' ? 'went with it' : r.finding.change === 'added' ? 'came with it' : 'changed with it'}`
    : `${plural(n, 'path')} ${r.finding.change === 'added' ? 'below it came with it' : 'below it went with it'}`;
  const shown = r.consequences.slice(0, CONSEQUENCES_SHOWN).map((c) => `${c.change === 'added' ? '+' : c.change === 'removed' ? '-' : '~'}${visible(c.key)}`);
  const more = n > CONSEQUENCES_SHOWN ? `, and ${n - CONSEQUENCES_SHOWN} more (--format json lists every one)` : '';
  return `${what}: ${shown.join(', ')}${more}`;
}

/** `verified by key 0123…`, `signed by key 0123…, not verified`, `unsigned`. */
export function signaturePhrase(report: Report): string {
  const sig = report.baseline.signature;
  switch (sig.status) {
    case 'verified': return `signature verified (key ${sig.keyId ?? '?'})`;
    case 'unverified': return sig.keyId ? `signature NOT verified (signed by key ${sig.keyId}; no trusted key here)` : 'signature NOT verified here';
    case 'unsigned': return 'UNSIGNED';
    default: {
      const never: never = sig.status;
      throw new TypeError(`unknown signature status ${String(never)}`);
    }
  }
}

/** `baseline sha256:… of image ami-1: signature verified (key …)`: what the report was judged against. */
export function baselineLine(report: Report): string {
  return `baseline ${report.baseline.digest} of image ${visible(report.baseline.imageId)}: ${signaturePhrase(report)}`;
}

/** `package: 1 removed · file: 11 removed, 1 modified`: counts by kind and change, non-zero only. */
export function kindCounts(report: Report): string[] {
  const lines: string[] = [];
  for (const kind of FINDING_KINDS) {
    const counts = report.summary.byKind[kind];
    const parts = CHANGES.filter((c) => counts[c] > 0).map((c) => `${counts[c]} ${c}`);
    if (parts.length > 0) lines.push(`${kind}: ${parts.join(', ')}`);
  }
  return lines;
}

/** The worst rolled-up findings: by severity, then report order; at most WORST_SHOWN. */
export function worst(rolled: readonly Rolled[]): Rolled[] {
  const out: Rolled[] = [];
  for (const s of SEVERITY_ORDER) {
    for (const r of rolled) {
      if (out.length === WORST_SHOWN) return out;
      if (r.finding.severity === s) out.push(r);
    }
  }
  return out;
}

/**
 * The one-screen summary that opens the text and markdown reports (after the summary
 * line): the baseline and its signature, counts by kind and change, the worst findings.
 */
export function summaryBlock(report: Report, rolled: readonly Rolled[], bullet: string): string[] {
  const out = [baselineLine(report)];
  if (report.summary.findings === 0) return out;
  out.push('', ...kindCounts(report).map((l) => `${bullet}${l}`));
  out.push('', `worst ${rolled.length > WORST_SHOWN ? `${WORST_SHOWN} of ${rolled.length}` : ''}`.trimEnd() + ':');
  for (const r of worst(rolled)) {
    const extra = r.consequences.length > 0 ? ` (and ${r.consequences.length} following from it)` : '';
    out.push(`${bullet}${r.finding.severity} ${r.finding.change} ${r.finding.kind} ${visible(r.finding.key)}${extra}`);
  }
  return out;
}
