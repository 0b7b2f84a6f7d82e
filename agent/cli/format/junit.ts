import { judgedBy, summaryLine } from './common.js';
import { baselineLine } from './rollup.js';
import type { Report } from '../../protocol/finding.js';

/**
 * The report as JUnit XML for CI systems: one testsuite, one failing testcase per
 * finding (classname `drift.<kind>`, name `<change> <key>`, the explanation as the
 * failure message, the diff in the failure body), or one passing testcase when the
 * target is clean. Unread paths go to `<system-err>`. Everything is XML-escaped.
 */
export function formatJunit(report: Report): string {
  return formatJunitMany([report]);
}

/** Several reports (a fleet scan) as one JUnit document, one testsuite per report. */
export function formatJunitMany(reports: Report[]): string {
  const tests = reports.reduce((n, r) => n + Math.max(r.findings.length, 1), 0);
  const failures = reports.reduce((n, r) => n + r.findings.length, 0);
  const out: string[] = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="drift" tests="${tests}" failures="${failures}" errors="0">`,
    ...reports.flatMap(suiteLines),
    '</testsuites>',
  ];
  return `${out.join('\n')}\n`;
}

function suiteLines(report: Report): string[] {
  const n = report.findings.length;
  const suite = `drift ${report.target} against image ${report.baseline.imageId}`;
  const out: string[] = [`  <testsuite name="${attr(suite)}" tests="${Math.max(n, 1)}" failures="${n}" errors="0" skipped="0">`];
  if (n === 0) {
    out.push(`    <testcase classname="drift" name="${attr(`no drift on ${report.target}`)}"/>`);
  }
  for (const f of report.findings) {
    const body = [`${f.severity}: ${f.explanation}`, judgedBy(f), ...(f.diff !== undefined ? ['', f.diff.replace(/\n$/, '')] : [])].join('\n');
    out.push(
      `    <testcase classname="drift.${attr(f.kind)}" name="${attr(`${f.change} ${f.key}`)}">`,
      `      <failure type="${attr(f.severity)}" message="${attr(f.explanation)}">${text(body)}</failure>`,
      '    </testcase>',
    );
  }
  const err = [summaryLine(report), baselineLine(report), ...report.unread.map((u) => `unread: ${u.path}: ${u.reason}`)].join('\n');
  out.push(`    <system-err>${text(err)}</system-err>`, '  </testsuite>');
  return out;
}

// Characters XML 1.0 cannot carry at all (C0 controls but tab/LF/CR, lone surrogates,
// U+FFFE/U+FFFF) become U+FFFD rather than making the document invalid.
const INVALID_XML = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** Escape character data. */
export function text(s: string): string {
  return s.replace(INVALID_XML, '\uFFFD').replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Escape an attribute value (double-quoted); newlines and tabs kept as character references. */
export function attr(s: string): string {
  return text(s).replace(/"/g, '&quot;').replace(/'/g, '&apos;').replace(/\n/g, '&#10;').replace(/\r/g, '&#13;').replace(/\t/g, '&#9;');
}
