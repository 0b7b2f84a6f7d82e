import type { Severity } from '../../protocol/rules.js';
import { changeSymbol, judgedBy, SEVERITY_ORDER, summaryLine } from './common.js';
import { consequencePhrase, rolledOf, rollUp, summaryBlock } from './rollup.js';
import type { Report } from '../../protocol/finding.js';

/**
 * The report for a person at a terminal: a summary line, findings grouped by severity
 * (critical first) with their change symbol and explanation, the unified diff under a
 * content change, and the paths that could not be read. ANSI colour only when
 * `color` is true (see `useColor`).
 */
export function formatText(report: Report, color: boolean): string {
  const paint = (code: string, s: string): string => (color ? `\u001b[${code}m${s}\u001b[0m` : s);
  const severityStyle: Record<Severity, string> = { critical: '1;31', high: '31', medium: '33', low: '36' };
  const symbolStyle = { added: '32', removed: '31', modified: '33' } as const;
  const rolled = rollUp(report);
  const out: string[] = [paint('1', summaryLine(report)), ...summaryBlock(report, rolled, '  ')];

  for (const severity of SEVERITY_ORDER) {
    const findings = rolledOf(rolled, severity);
    if (findings.length === 0) continue;
    out.push('', paint(severityStyle[severity], `${severity.toUpperCase()} (${findings.length})`));
    for (const r of findings) {
      const f = r.finding;
      out.push(`  ${paint(symbolStyle[f.change], changeSymbol(f.change))} ${f.kind} ${f.key}`);
      out.push(`    ${f.explanation}`);
      out.push(`    ${paint('2', judgedBy(f))}`);
      const consequences = consequencePhrase(r);
      if (consequences !== null) out.push(`    ${consequences}`);
      if (f.diff !== undefined) {
        for (const line of f.diff.replace(/\n$/, '').split('\n')) out.push(`      ${paintDiffLine(line, paint)}`);
      }
    }
  }

  const unread = report.unread;
  if (unread.length > 0) {
    out.push('', paint('35', `UNREAD (${unread.length}): not compared, drift there would go unseen`));
    for (const u of unread) out.push(`  ${u.path}: ${u.reason}`);
  }
  return `${out.join('\n')}\n`;
}

function paintDiffLine(line: string, paint: (code: string, s: string) => string): string {
  if (line.startsWith('+++') || line.startsWith('---')) return paint('1', line);
  if (line.startsWith('@@')) return paint('36', line);
  if (line.startsWith('+')) return paint('32', line);
  if (line.startsWith('-')) return paint('31', line);
  return line;
}
