import { diffLines } from 'diff';
import type { Finding } from '../protocol/finding.js';
import type { FileEntry, Manifest, PackageEntry, PortEntry, ProcessEntry } from '../protocol/manifest.js';
import { FINDING_KINDS, type RuleSet } from '../protocol/rules.js';
import {
  explainFile,
  explainPackage,
  explainPort,
  explainProcess,
  PackageIndex,
  type Difference,
  type Explained,
  type FileDifference,
} from './explain.js';
import { compileRules, isIgnored, judge, type CompiledExpect, type CompiledRules } from './policy.js';
import type { FirstBootCheck } from './pins.js';

/** What `compare` judges: a host's manifest against its image's baseline, under rules. */
export interface CompareInput {
  baseline: Manifest;
  manifest: Manifest;
  rules: RuleSet;
  /** First-boot pins to hold expected file changes to (agent/engine/pins.ts, `compareWithPins`). */
  firstBoot?: FirstBootCheck;
}

/**
 * Judge a manifest against its baseline. Pure and deterministic: findings sorted by
 * kind (package, file, process, port) then key (by code unit).
 *
 * - Only sections present in both manifests are compared: an absent section was
 *   not collected, which says nothing about drift.
 * - Ignore rules drop findings of their kind whose key matches (see `isIgnored`).
 * - Expect rules drop expected file findings; with `lines`, only when every added
 *   and removed line matches one of the regexes of the matching expect rules (see
 *   `checkExpectations`); otherwise the finding is reported and says why.
 * - With `firstBoot`, expected file changes are held to the host's first-boot pins
 *   (agent/engine/pins.ts).
 * - Policy sets severity, action and rule: the last matching rule wins.
 * - A process whose instance count alone changed is not a finding.
 *
 * Findings with action `ignore` are kept here (the caller may want to count them);
 * `buildReport` drops them.
 */
export function compare(input: CompareInput): Finding[] {
  const { baseline, manifest } = input;
  const compiled = compileRules(input.rules);
  const findings: Finding[] = [];
  let packageIndex: PackageIndex | undefined;
  const packages = (): PackageIndex => (packageIndex ??= new PackageIndex(baseline, manifest));

  const emit = <F extends Finding>(d: Difference<F['kind'], NonNullable<F['before']>>, explained: Explained, pinned?: Finding['pinned']): void => {
    const j = judge(compiled, d);
    const finding = { ...d, severity: j.severity, action: j.action, rule: j.rule, explanation: explained.explanation } as F;
    if (explained.diff !== undefined) finding.diff = explained.diff;
    if (pinned !== undefined) finding.pinned = pinned;
    findings.push(finding);
  };

  if (baseline.packages && manifest.packages) {
    for (const d of differences(baseline.packages, manifest.packages, packageChanges, 'package')) {
      if (isIgnored(compiled, 'package', d.key)) continue;
      emit(d, explainPackage(d));
    }
  }
  if (baseline.files && manifest.files) {
    for (const d of differences(baseline.files, manifest.files, fileChanges, 'file')) {
      if (isIgnored(compiled, 'file', d.key)) continue;
      const verdict = checkExpectations(compiled, d);
      const held = input.firstBoot ? input.firstBoot.judge(d, verdict) : verdict.expected ? null : { d, note: verdict.note };
      if (held) emit(held.d, explainFile(held.d, packages(), held.note), 'pinned' in held ? held.pinned : undefined);
    }
    for (const held of input.firstBoot?.unchanged() ?? []) emit(held.d, explainFile(held.d, packages(), held.note), held.pinned);
  }
  if (baseline.processes && manifest.processes) {
    for (const d of differences(baseline.processes, manifest.processes, processChanges, 'process')) {
      if (isIgnored(compiled, 'process', d.key)) continue;
      emit(d, explainProcess(d));
    }
  }
  if (baseline.ports && manifest.ports) {
    for (const d of differences(baseline.ports, manifest.ports, portChanges, 'port')) {
      if (isIgnored(compiled, 'port', d.key)) continue;
      emit(d, explainPort(d));
    }
  }

  const rank = new Map<string, number>(FINDING_KINDS.map((k, i) => [k, i]));
  return findings.sort((x, y) => {
    const byKind = (rank.get(x.kind) ?? 0) - (rank.get(y.kind) ?? 0);
    if (byKind !== 0) return byKind;
    return x.key < y.key ? -1 : x.key > y.key ? 1 : 0;
  });
}

/** Attribute names that differ between two entries of one key; empty when equal. */
type ChangesOf<T> = (before: T, after: T) => string[];

const NONE: string[] = [];

/**
 * Added, removed and modified keys between two sections. `for...in` rather than
 * `Object.keys`: no 100,000-element arrays to allocate, and measurably faster on
 * the dictionary-mode objects JSON.parse gives for large sections. Sections come
 * from JSON (plain objects without inherited enumerable keys).
 */
function differences<K extends string, T>(
  before: Record<string, T>,
  after: Record<string, T>,
  changesOf: ChangesOf<T>,
  kind: K,
): Array<Difference<K, T>> {
  const out: Array<Difference<K, T>> = [];
  for (const key in before) {
    const b = before[key] as T;
    const a = after[key];
    if (a === undefined) {
      out.push({ kind, key, change: 'removed', changed: [], before: b, after: null });
      continue;
    }
    const changed = changesOf(b, a);
    if (changed.length > 0) out.push({ kind, key, change: 'modified', changed, before: b, after: a });
  }
  for (const key in after) {
    if (before[key] === undefined) out.push({ kind, key, change: 'added', changed: [], before: null, after: after[key] as T });
  }
  return out;
}

function packageChanges(b: PackageEntry, a: PackageEntry): string[] {
  if (b.version === a.version && b.source === a.source) return NONE;
  const changed: string[] = [];
  if (b.version !== a.version) changed.push('version');
  if (b.source !== a.source) changed.push('source');
  return changed;
}

/**
 * File attributes in the order findings list them. `size`, `sha256`, `target` and
 * `content` are compared only where both sides have them (content is kept only for
 * some paths, and a rule may start or stop keeping it). `owner`/`conffile` are
 * package metadata, reported through the package findings, not here.
 */
export function fileChanges(b: FileEntry, a: FileEntry): string[] {
  // The fast path: nearly every file of a host equals the image's.
  if (
    b.sha256 === a.sha256 && b.mode === a.mode && b.uid === a.uid && b.gid === a.gid && b.type === a.type &&
    b.size === a.size && b.target === a.target && (b.content === undefined || a.content === undefined || b.content === a.content)
  ) {
    return NONE;
  }
  const changed: string[] = [];
  const both = <V>(x: V | undefined, y: V | undefined): boolean => x !== undefined && y !== undefined && x !== y;
  if (b.type !== a.type) changed.push('type');
  if (b.target !== a.target && (b.type === 'symlink' || a.type === 'symlink')) changed.push('target');
  if (b.mode !== a.mode) changed.push('mode');
  if (b.uid !== a.uid) changed.push('uid');
  if (b.gid !== a.gid) changed.push('gid');
  if (both(b.size, a.size)) changed.push('size');
  if (both(b.sha256, a.sha256)) changed.push('sha256');
  if (both(b.content, a.content)) changed.push('content');
  return changed;
}

/** A count change alone is not drift: worker pools grow and shrink. */
function processChanges(b: ProcessEntry, a: ProcessEntry): string[] {
  const changed: string[] = [];
  if (b.exeSha256 !== undefined && a.exeSha256 !== undefined && b.exeSha256 !== a.exeSha256) changed.push('exeSha256');
  if (b.deleted !== a.deleted) changed.push('deleted');
  if ((b.replaced ?? false) !== (a.replaced ?? false)) changed.push('replaced');
  return changed.length ? changed : NONE;
}

/** A port whose process could not be found on one side has not changed process. */
function portChanges(b: PortEntry, a: PortEntry): string[] {
  return b.process !== undefined && a.process !== undefined && b.process !== a.process ? ['process'] : NONE;
}

/** Attributes a `lines` expectation speaks for: the content and what follows from it. */
const CONTENT_ATTRS = new Set(['sha256', 'size', 'content']);
const MAX_LINES_NAMED = 5;

/**
 * Whether expect rules cover a file finding; when they match but do not cover it, why.
 * `pin` is false when a rule that covers it says `pin: false` (it may change at every boot).
 */
export type ExpectVerdict = { expected: true; pin: boolean } | { expected: false; note: string | null };

/**
 * Expect rules matching a file finding: its path matches `path` (after `${var}`
 * substitution) and its change equals `change` when given.
 *
 * - A matching rule without `lines` expects the finding.
 * - Otherwise the `lines` of all matching rules are pooled: the finding is expected
 *   when its content is known (both sides of a modification; the after side of an
 *   added file, the before side of a removed one), nothing but content changed,
 *   and every added and removed line matches one of the regexes. Content kept as
 *   `names` compares the same way; a sha256 change with equal content lines proves
 *   nothing, so it is reported.
 * - The note names the rules and the unexpected lines (or why nothing could be checked).
 */
export function checkExpectations(compiled: CompiledRules, d: FileDifference): ExpectVerdict {
  let matching: CompiledExpect[] | undefined;
  for (const e of compiled.expect) {
    if (e.change !== undefined && e.change !== d.change) continue;
    if (!e.path(d.key)) continue;
    if (e.lines === undefined) return { expected: true, pin: e.rule.pin !== false };
    (matching ??= []).push(e);
  }
  if (!matching) return { expected: false, note: null };
  const refs = [...new Set(matching.map((e) => e.ref ?? 'an expect rule'))].join(', ');
  const by = `the expectation at ${refs}`;

  const other = d.changed.filter((c) => !CONTENT_ATTRS.has(c));
  if (other.length > 0) return { expected: false, note: `${other.join(', ')} changed, which ${by} (lines only) does not cover` };

  const before = d.change === 'added' ? '' : d.before?.content;
  const after = d.change === 'removed' ? '' : d.after?.content;
  if (before === undefined || after === undefined) {
    return { expected: false, note: `content not recorded, so ${by} cannot be checked` };
  }
  const { added, removed } = lineChanges(before, after);
  if (d.change === 'modified' && added.length === 0 && removed.length === 0) {
    return { expected: false, note: `content changed beyond the recorded lines, so ${by} cannot prove it expected` };
  }
  const patterns = matching.flatMap((e) => e.lines ?? []);
  const fits = (line: string): boolean => patterns.some((re) => re.test(line));
  const unexpected = [...removed.filter((l) => !fits(l)).map((l) => `-${l}`), ...added.filter((l) => !fits(l)).map((l) => `+${l}`)];
  if (unexpected.length === 0) return { expected: true, pin: !matching.some((e) => e.rule.pin === false) };
  const named = unexpected.slice(0, MAX_LINES_NAMED).map((l) => JSON.stringify(l)).join(', ');
  const more = unexpected.length > MAX_LINES_NAMED ? ` and ${unexpected.length - MAX_LINES_NAMED} more` : '';
  const what = unexpected.length === 1 ? 'line' : 'lines';
  return { expected: false, note: `${what} not expected by ${refs}: ${named}${more}` };
}

/** Lines added and removed between two texts (a line diff, so a moved line counts). */
export function lineChanges(before: string, after: string): { added: string[]; removed: string[] } {
  // A missing newline at the end is not a line change.
  const nl = (s: string): string => (s === '' || s.endsWith('\n') ? s : `${s}\n`);
  const added: string[] = [];
  const removed: string[] = [];
  for (const part of diffLines(nl(before), nl(after))) {
    if (!part.added && !part.removed) continue;
    const lines = part.value.split('\n');
    if (lines[lines.length - 1] === '') lines.pop();
    (part.added ? added : removed).push(...lines);
  }
  return { added, removed };
}
