import { REPORT_SCHEMA, type Cause, type Drop, type Finding, type Report, type SignatureCheck } from '../protocol/finding.js';
import type { Unread } from '../protocol/manifest.js';
import { CHANGES, FINDING_KINDS, SEVERITIES, type Change, type FindingKind, type Severity } from '../protocol/rules.js';
import type { FirstBoot } from '../protocol/pins.js';


/** What a report is built from. */
export interface ReportInput {
  /** Who was scanned: a hostname, a root folder, `ssh://host`. */
  target: string;
  /** The image the target is judged against, and what was checked of its signature (default: unverified). */
  baseline: { imageId: string; digest: string; signature?: SignatureCheck };
  /** From `compare`; findings whose action is `ignore` are dropped here. */
  findings: Finding[];
  /** The scanned manifest's `unread` list, kept so that a clean report does not hide blind spots. */
  unread: Unread[];
  /** From `compareWithDrops`: what each rule dropped; the report carries it when given. */
  dropped?: Drop[];
  /** First-boot pinning of the target, where it applies (agent/engine/pins.ts). */
  firstBoot?: FirstBoot;
}

/**
 * Build a `drift.report/v1`: summary counts every severity and every kind and change
 * (zeros included), and each finding that follows from another one names it as `cause`.
 */
export function buildReport(input: ReportInput): Report {
  const findings = linkCauses(input.findings.filter((f) => f.action !== 'ignore'));
  const bySeverity = Object.fromEntries(SEVERITIES.map((s) => [s, 0])) as Record<Severity, number>;
  const byKind = Object.fromEntries(FINDING_KINDS.map((k) => [k, Object.fromEntries(CHANGES.map((c) => [c, 0]))])) as Record<FindingKind, Record<Change, number>>;
  for (const f of findings) {
    bySeverity[f.severity] += 1;
    byKind[f.kind][f.change] += 1;
  }
  const report: Report = {
    schema: REPORT_SCHEMA,
    target: input.target,
    baseline: { imageId: input.baseline.imageId, digest: input.baseline.digest, signature: input.baseline.signature ?? { status: 'unverified', keyId: null } },
    summary: { findings: findings.length, bySeverity, byKind },
    findings,
    unread: [...input.unread],
  };
  if (input.dropped) report.dropped = input.dropped.map((d) => ({ ...d }));
  if (input.firstBoot) report.firstBoot = { ...input.firstBoot };
  return report;
}

/**
 * Link consequences to their root cause (a copy of each finding, `cause` set or left out):
 *
 * - a file owned by a package (`owner` `dpkg:ncurses-bin` or `dpkg:libc6:amd64`) whose
 *   package has a finding follows from that package finding;
 * - a file added (removed) below a folder that was itself added (removed) follows from
 *   the topmost such folder, or from that folder's own cause.
 *
 * Only findings of the report are linked, so a consequence is never hidden behind a
 * cause the report does not show. Each finding costs a look-up per level of its path (paths are bounded by the manifest schema).
 */
export function linkCauses(findings: readonly Finding[]): Finding[] {
  const packages = new Map<string, string>();
  for (const f of findings) {
    if (f.kind !== 'package') continue;
    packages.set(f.key, f.key);
    const [manager, name] = f.key.split(':');
    const short = `${manager ?? ''}:${name ?? ''}`;
    if (!packages.has(short)) packages.set(short, f.key);
  }
  const files = new Map<string, Finding>();
  for (const f of findings) if (f.kind === 'file') files.set(f.key, f);

  const packageCause = (f: Finding): Cause | undefined => {
    if (f.kind !== 'file') return undefined;
    const owner = (f.before ?? f.after)?.owner;
    const key = owner === undefined ? undefined : packages.get(owner);
    return key === undefined ? undefined : { kind: 'package', key };
  };
  // Topmost file finding of a change at or above a path, memoised per path: a chain of
  // nested folders costs one look-up per folder, not one per folder and level.
  const memo = new Map<string, Finding | null>();
  const topAtOrAbove = (path: string, change: Change): Finding | null => {
    const chain: string[] = [];
    let above: Finding | null = null;
    for (let p = path; ;) {
      const known = memo.get(`${change}\u0000${p}`);
      if (known !== undefined) { above = known; break; }
      chain.push(p);
      const at = p.lastIndexOf('/');
      if (at <= 0) break;
      p = p.slice(0, at);
    }
    for (let i = chain.length - 1; i >= 0; i--) {
      const p = chain[i] as string;
      const here = files.get(p);
      if (above === null && here?.change === change) above = here;
      memo.set(`${change}\u0000${p}`, above);
    }
    return above;
  };
  const folderCause = (f: Finding): Finding | undefined => {
    if (f.kind !== 'file' || f.change === 'modified') return undefined;
    const at = f.key.lastIndexOf('/');
    return at > 0 ? (topAtOrAbove(f.key.slice(0, at), f.change) ?? undefined) : undefined;
  };
  return findings.map((f) => {
    const { cause: _stale, ...rest } = f;
    const own = packageCause(f);
    const folder = own ? undefined : folderCause(f);
    const cause = own ?? (folder ? (packageCause(folder) ?? { kind: 'file', key: folder.key }) : undefined);
    return (cause ? { ...rest, cause } : rest) as Finding;
  });
}

/** diff(1)-style exit code of a report: 0 no findings, 1 findings (2, trouble, is the caller's). */
export function exitCodeOf(report: Pick<Report, 'summary'>): 0 | 1 {
  return report.summary.findings > 0 ? 1 : 0;
}

/** Severities from the most to the least severe, the order reports print them in. */
export const SEVERITIES_DESC: readonly Severity[] = [...SEVERITIES].reverse();
