import type { Severity } from '../../protocol/rules.js';
import { changeSymbol, firstBootLine, judgedBy, SEVERITY_ORDER, summaryLine, visible } from './common.js';
import { consequencePhrase, rolledOf, rollUp, summaryBlock } from './rollup.js';
import type { Report } from '../../protocol/finding.js';

/**
 * The report for a person at a terminal: a summary line, findings grouped by severity
 * (critical first) with their change symbol and explanation, the unified diff under a
 * content change, and the paths that could not be read. ANSI colour only when
 * `color` is true (see `useColor`). Every string from the host or a rule file is
 * printed through `visible`: control characters never reach the terminal.
 */
export function formatText(report: Report, color: boolean): string {
  const paint = (code: string, s: string): string => (color ? `\u001b[${code}m${s}\u001b[0m` : s);
  const severityStyle: Record<Severity, string> = { critical: '1;31', high: '31', medium: '33', low: '36' };
  const symbolStyle = { added: '32', removed: '31', modified: '33' } as const;
  const rolled = rollUp(report);
  const out: string[] = [paint('1', visible(summaryLine(report))), ...summaryBlock(report, rolled, '  ').map((l) => visible(l))];
  const firstBoot = firstBootLine(report);
  if (firstBoot !== null) out.push(paint('2', visible(firstBoot)));

  for (const severity of SEVERITY_ORDER) {
    const findings = rolledOf(rolled, severity);
    if (findings.length === 0) continue;
    out.push('', paint(severityStyle[severity], `${severity.toUpperCase()} (${findings.length})`));
    for (const r of findings) {
      const f = r.finding;
      out.push(`  ${paint(symbolStyle[f.change], changeSymbol(f.change))} ${visible(`${f.kind} ${f.key}`)}`);
      out.push(`    ${visible(f.explanation)}`);
      out.push(`    ${paint('2', visible(judgedBy(f)))}`);
      const consequences = consequencePhrase(r);
      if (consequences !== null) out.push(`    ${visible(consequences)}`);
      if (f.diff !== undefined) {
        for (const line of f.diff.replace(/\n$/, '').split('\n')) out.push(`      ${paintDiffLine(visible(line, true), paint)}`);
      }
    }
  }

  if (report.dropped && report.dropped.length > 0) {
    const total = report.dropped.reduce((n, d) => n + d.count, 0);
    out.push('', paint('2', `DROPPED BY RULES (${total} ${total === 1 ? 'difference' : 'differences'}, not reported)`));
    for (const d of report.dropped) out.push(`  ${d.count} by ${d.by} rule ${visible(d.rule)}`);
  }

  const unread = report.unread;
  if (unread.length > 0) {
    out.push('', paint('35', `UNREAD (${unread.length}): not compared, drift there would go unseen`));
    for (const u of unread) out.push(`  ${visible(`${u.path}: ${u.reason}`)}`);
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
