import { changeSymbol, countPhrase, explanationOf, firstBootLine, judgedBy, SEVERITY_ORDER, visible } from './common.js';
import { consequencePhrase, rolledOf, rollUp, summaryBlock } from './rollup.js';
import type { Report } from '../../protocol/finding.js';

/**
 * The report as GitHub-flavoured Markdown (a pull-request comment, a ticket): a
 * heading, a summary table of every severity, a section per severity with findings,
 * diffs in ```diff fences, and the unread paths. Control characters from the host
 * are shown escaped (see `visible`), in code spans, fences and text alike.
 */
export function formatMarkdown(report: Report): string {
  const out: string[] = [
    `# drift report: ${escapeText(report.target)}`,
    '',
    `${capitalize(countPhrase(report))} on ${code(report.target)} against image ${code(report.baseline.imageId)} (baseline ${code(report.baseline.digest)}).`,
    '',
    '| severity | findings |',
    '| --- | ---: |',
    ...SEVERITY_ORDER.map((s) => `| ${s} | ${report.summary.bySeverity[s]} |`),
  ];
  const rolled = rollUp(report);
  out.push('', ...summaryBlock(report, rolled, '- ').map((l) => (l === '' ? l : escapeText(l))));
  for (const severity of SEVERITY_ORDER) {
    const findings = rolledOf(rolled, severity);
    if (findings.length === 0) continue;
    out.push('', `## ${capitalize(severity)} (${findings.length})`, '');
    for (const r of findings) {
      const f = r.finding;
      out.push(`- ${code(changeSymbol(f.change))} **${f.change}** ${f.kind} ${code(f.key)}: ${escapeText(explanationOf(f))} _(${escapeText(judgedBy(f))})_`);
      const consequences = consequencePhrase(r);
      if (consequences !== null) out.push(`  - ${escapeText(consequences)}`);
      if (f.diff !== undefined) {
        const fence = '`'.repeat(Math.max(3, longestRun(f.diff, '`') + 1));
        out.push('', `  ${fence}diff`, ...f.diff.replace(/\n$/, '').split('\n').map((l) => `  ${visible(l, true)}`), `  ${fence}`, '');
      }
    }
  }
  const firstBoot = firstBootLine(report);
  if (firstBoot !== null) out.push('', `## First boot`, '', escapeText(firstBoot));
  const unread = report.unread;
  if (unread.length > 0) {
    out.push('', `## Unread (${unread.length})`, '', 'Not compared: drift there would go unseen.', '');
    for (const u of unread) out.push(`- ${code(u.path)}: ${escapeText(u.reason)}`);
  }
  return `${out.join('\n').replace(/\n{3,}/g, '\n\n')}\n`;
}

const capitalize = (s: string): string => s.charAt(0).toUpperCase() + s.slice(1);

function longestRun(s: string, ch: string): number {
  let best = 0;
  let run = 0;
  for (const c of s) {
    run = c === ch ? run + 1 : 0;
    if (run > best) best = run;
  }
  return best;
}

/** An inline code span that survives backticks inside it (CommonMark: a longer fence). */
function code(raw: string): string {
  const s = visible(raw);
  const fence = '`'.repeat(longestRun(s, '`') + 1);
  const pad = s.startsWith('`') || s.endsWith('`') ? ' ' : '';
  return `${fence}${pad}${s}${pad}${fence}`;
}

/** Backslash-escape what Markdown would read as markup (emphasis, links, HTML, tables). */
function escapeText(s: string): string {
  return visible(s).replace(/[\\`*_[\]<>|#]/g, (c) => `\\${c}`).replace(/\n/g, ' ');
}
