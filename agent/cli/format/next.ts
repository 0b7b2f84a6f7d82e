import type { Finding, Report } from '../../protocol/finding.js';
import { rollUp } from './rollup.js';
import { SEVERITY_ORDER, visible } from './common.js';
import { nameOf } from '../../engine/policy.js';

/**
 * "What to do next" after a scan (`drift scan --next-steps`, which `npm start` uses):
 * what the exit code means, how to see one finding in full, the exact site rule to
 * paste for a finding, and where the baseline is. Written for a person trying drift.
 */

/** How the scan was run, to print commands the person can paste. */
export interface NextContext {
  exitCode: number;
  baselinePath: string;
  /** The scan command as run, without --format, --next-steps and --finding (e.g. `npx drift scan --baseline ...`). */
  command: string;
  /** The site rule folder to suggest. */
  rulesDir: string;
}

/** A shell word: quoted unless it is plainly safe. */
export function shellWord(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Escape glob characters so that an ignore rule matches exactly this path. */
function literalGlob(s: string): string {
  return s.replace(/[\\*?[\]{}()!+@]/g, (c) => `\\${c}`);
}

/**
 * The YAML of a site policy rule that drops this finding (action ignore; its subject per
 * kind, see rules/README.md). A policy rule, not an ignore rule: what is watched, ignored
 * and expected comes from the baseline's scope, while the policy stays the operator's.
 */
export function ignoreRuleFor(f: Finding): string {
  const subject = f.kind === 'file' ? `path: ${JSON.stringify(literalGlob(f.key))}` : `name: ${JSON.stringify(literalGlob(nameOf(f.kind, f.key)))}`;
  return `policy:\n  - match: { kind: ${f.kind}, ${subject} }\n    severity: low\n    action: ignore`;
}

export function nextSteps(report: Report, ctx: NextContext): string {
  const out: string[] = ['', 'What next:'];
  const meaning = ctx.exitCode === 0 ? 'no drift' : ctx.exitCode === 1 ? 'drift found' : 'trouble';
  out.push(`  Exit code ${ctx.exitCode}: ${meaning} (as diff(1): 0 no drift, 1 drift found, 2 trouble), for scripts and CI.`);
  const sig = report.baseline.signature;
  out.push(`  The baseline is ${ctx.baselinePath} (image ${report.baseline.imageId}, ${sig.status === 'verified' ? `verified with key ${sig.keyId ?? '?'}` : sig.status}).`);
  if (sig.status !== 'verified') {
    out.push('  Sign it and verify by default: drift keygen --out bake, drift baseline --sign-key bake.key ..., and put bake.pub in /etc/drift/keys/.');
  }
  const first = SEVERITY_ORDER.flatMap((s) => rollUp(report).filter((r) => r.finding.severity === s))[0]?.finding;
  if (first) {
    out.push('  One finding in full (before, after, diff):',
      `    ${ctx.command} --finding ${shellWord(first.key)} --format json`);
    out.push(`  If it is not drift on this host, add a site rule: save this in ${ctx.rulesDir}/site.yaml`,
      `  (on a host, /etc/drift/rules.d/site.yaml) and scan with --rules ${shellWord(ctx.rulesDir)}; rules/README.md has the reference:`,
      ...ignoreRuleFor(first).split('\n').map((l) => `    ${l}`));
  }
  // The baseline's path and image, key ids and finding keys come from files a host can write.
  return `${out.map((line) => visible(line)).join('\n')}\n`;
}
