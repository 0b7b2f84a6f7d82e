import type { CoverageEntry, Drop, Finding, PinnedRef } from '../protocol/finding.js';
import type { FileEntry, Manifest, PackageEntry, PortEntry, ProcessEntry, Scope, Unread } from '../protocol/manifest.js';
import { FINDING_KINDS, type RuleSet } from '../protocol/rules.js';
import { PackedSection } from '../protocol/packed.js';
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
import { compileRules, ignoredBy, judge, type CompiledExpect, type CompiledRules } from './policy.js';
import { lineChanges } from './lines.js';

export { lineChanges };

/** A baseline's file entries: parsed, or packed as `drift scan` holds them (agent/protocol/packed.ts). */
export type BaselineFiles = Record<string, FileEntry> | PackedSection<FileEntry>;

/** A baseline as compare reads it: a manifest whose files may be packed, and its recorded scope. */
export type CompareBaseline = Omit<Manifest, 'files'> & { files?: BaselineFiles | undefined; scope?: Scope | undefined };

/** What `compare` judges: a host's manifest against its image's baseline, under rules. */
export interface CompareInput {
  /** With a recorded `scope`, its ignore and expect rules replace those of `rules` (see `rulesFor`). */
  baseline: CompareBaseline;
  manifest: Manifest;
  rules: RuleSet;
  /** First-boot pins to hold expected file changes to (agent/engine/pins.ts, `compareWithPins`). */
  firstBoot?: FirstBootJudge;
}

/** A file difference compare must report, with its note and, when it breaks a pin, the pin. */
export interface Held {
  d: FileDifference;
  note: string | null;
  pinned?: PinnedRef;
}

/** What compare asks of first-boot pinning (agent/engine/pins.ts's FirstBootCheck answers). */
export interface FirstBootJudge {
  /** The difference to report, or null when it is expected (and holds to its pin). */
  judge(d: FileDifference, verdict: ExpectVerdict): Held | null;
  /** Pinned paths that are back to the image's value, which compare sees no difference for. */
  unchanged(): Held[];
}

/** Findings, and how many differences each rule dropped on the way. */
export interface CompareResult {
  findings: Finding[];
  /** Sorted by count (most first), then rule; policy `ignore` drops included. */
  dropped: Drop[];
}

const scoped = new WeakMap<Scope, WeakMap<RuleSet, RuleSet>>();

/**
 * The rules a comparison uses: the baseline's recorded scope (watch, ignore,
 * expect and their variables: what the image was baked to watch) with the
 * operator's policy; `rules` as they are for a baseline without a scope. Cached
 * per (scope, rules) pair, so that a fleet compared against one baseline compiles once.
 */
export function rulesFor(baseline: CompareInput['baseline'], rules: RuleSet): RuleSet {
  const scope = baseline.scope;
  if (!scope) return rules;
  let byRules = scoped.get(scope);
  if (!byRules) scoped.set(scope, (byRules = new WeakMap()));
  let merged = byRules.get(rules);
  if (!merged) {
    merged = { vars: { ...scope.vars }, watch: scope.watch, ignore: scope.ignore, expect: scope.expect, policy: rules.policy };
    byRules.set(rules, merged);
  }
  return merged;
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
  return compareWithDrops(input).findings;
}

/** `compare`, also counting the differences each ignore, expect and policy-ignore rule dropped. */
export function compareWithDrops(input: CompareInput): CompareResult {
  const { baseline, manifest } = input;
  const compiled = compileRules(rulesFor(baseline, input.rules));
  const findings: Finding[] = [];
  const drops = new Map<string, Drop>();
  const drop = (by: Drop['by'], ref: string | null): void => {
    const rule = ref ?? '(a rule made in code)';
    const k = `${by}\0${rule}`;
    const d = drops.get(k);
    if (d) d.count += 1;
    else drops.set(k, { rule, by, count: 1 });
  };
  const ignored = (kind: Finding['kind'], key: string): boolean => {
    const by = ignoredBy(compiled, kind, key);
    if (by === undefined) return false;
    drop('ignore', by);
    return true;
  };
  let packageIndex: PackageIndex | undefined;
  const packages = (): PackageIndex => (packageIndex ??= new PackageIndex(baseline, manifest));

  const emit = <F extends Finding>(d: Difference<F['kind'], NonNullable<F['before']>>, explained: Explained, pinned?: Finding['pinned']): void => {
    const j = judge(compiled, d);
    const finding = { ...d, severity: j.severity, action: j.action, rule: j.rule, explanation: explained.explanation } as F;
    if (explained.diff !== undefined) finding.diff = explained.diff;
    if (j.action === 'ignore') drop('policy', j.rule);
    if (pinned !== undefined) finding.pinned = pinned;
    findings.push(finding);
  };

  if (baseline.packages && manifest.packages) {
    for (const d of differences(baseline.packages, manifest.packages, packageChanges, 'package')) {
      if (ignored('package', d.key)) continue;
      emit(d, explainPackage(d));
    }
  }
  if (baseline.files && manifest.files) {
    const lost = coverageLoss(baseline.files, manifest.files, manifest.unread);
    for (const d of differences(baseline.files, manifest.files, fileChanges, 'file')) {
      if (ignored('file', d.key)) continue;
      // A removal under a path this scan could not read is a loss of sight, reported once for that path.
      if (d.change === 'removed' && lost.hidden.has(d.key)) continue;
      const verdict = checkExpectations(compiled, d);
      const held = input.firstBoot ? input.firstBoot.judge(d, verdict) : verdict.expected ? null : { d, note: verdict.note };
      if (held) emit(held.d, explainFile(held.d, packages(), held.note), 'pinned' in held ? held.pinned : undefined);
      else if (verdict.expected) drop('expect', verdict.by);
    }
    for (const held of input.firstBoot?.unchanged() ?? []) emit(held.d, explainFile(held.d, packages(), held.note), held.pinned);
    for (const c of lost.coverage) {
      if (ignored('file', c.key)) continue;
      emit<Extract<Finding, { kind: 'coverage' }>>(c, { explanation: explainCoverage(c) });
    }
  }
  if (baseline.processes && manifest.processes) {
    for (const d of differences(baseline.processes, manifest.processes, processChanges, 'process')) {
      if (ignored('process', d.key)) continue;
      emit(d, explainProcess(d));
    }
  }
  if (baseline.ports && manifest.ports) {
    for (const d of differences(baseline.ports, manifest.ports, portChanges, 'port')) {
      if (ignored('port', d.key)) continue;
      emit(d, explainPort(d));
    }
  }

  const rank = new Map<string, number>(FINDING_KINDS.map((k, i) => [k, i]));
  findings.sort((x, y) => {
    const byKind = (rank.get(x.kind) ?? 0) - (rank.get(y.kind) ?? 0);
    if (byKind !== 0) return byKind;
    return x.key < y.key ? -1 : x.key > y.key ? 1 : 0;
  });
  const dropped = [...drops.values()].sort((a, b) => b.count - a.count || (a.rule < b.rule ? -1 : a.rule > b.rule ? 1 : 0) || (a.by < b.by ? -1 : 1));
  return { findings, dropped };
}

type CoverageDifference = Difference<'coverage', CoverageEntry>;

/**
 * Where the baseline's files went out of sight: for each unread path of the
 * manifest (other than one that vanished, ENOENT, which is a removal), the baseline
 * paths at or below it that the manifest lacks, and a file at it whose content the
 * baseline hashed and this scan could not. `hidden` holds the baseline paths whose
 * "removed" finding the coverage finding replaces.
 */
function coverageLoss(before: BaselineFiles, after: Record<string, FileEntry>, unread: readonly Unread[]): { coverage: CoverageDifference[]; hidden: Set<string> } {
  const hidden = new Set<string>();
  const coverage: CoverageDifference[] = [];
  const reasons = new Map<string, string>();
  for (const u of unread) if (u.reason !== 'ENOENT' && !reasons.has(u.path)) reasons.set(u.path, u.reason);
  if (reasons.size === 0) return { coverage, hidden };
  const counts = new Map<string, number>();
  const packed = before instanceof PackedSection ? before : null;
  for (const key of packed ? packed.keys() : keysOf(before as Record<string, FileEntry>)) {
    const a = after[key];
    let at: string | undefined;
    if (a === undefined) {
      // The nearest unread ancestor (or the path itself); bounded by the path's depth.
      for (let p = key; ; p = p.slice(0, Math.max(1, p.lastIndexOf('/')))) {
        if (reasons.has(p)) { at = p; break; }
        if (p === '/' || !p.includes('/')) break;
      }
      if (at !== undefined) hidden.add(key);
    } else if (reasons.has(key) && a.sha256 === undefined && ((packed ? packed.entry(key) : (before as Record<string, FileEntry>)[key]) as FileEntry).sha256 !== undefined) {
      at = key;
    }
    if (at !== undefined) counts.set(at, (counts.get(at) ?? 0) + 1);
  }
  for (const [key, paths] of counts) {
    coverage.push({ kind: 'coverage', key, change: 'modified', changed: ['paths'], before: { paths }, after: { paths: 0, reason: reasons.get(key) as string } });
  }
  return { coverage, hidden };
}

/** `/etc/secret: could not be read (EACCES), which hides 12 paths the baseline recorded ...`. */
function explainCoverage(d: CoverageDifference): string {
  const n = d.before?.paths ?? 0;
  const what = n === 1 ? '1 path the baseline recorded' : `${n} paths the baseline recorded`;
  return `${d.key}: could not be read (${d.after?.reason ?? 'unknown reason'}), which hides ${what}; drift there would go unseen: restore access (permissions, mounts, the agent's capabilities) and scan again`;
}

/** Attribute names that differ between two entries of one key; empty when equal. */
type ChangesOf<T> = (before: T, after: T) => string[];

const NONE: string[] = [];

/** The keys of a section, by `for...in` (see `differences`). */
function* keysOf(section: Record<string, unknown>): Generator<string, void, undefined> {
  for (const key in section) yield key;
}

/**
 * Added, removed and modified keys between two sections. `for...in` rather than
 * `Object.keys`: no 100,000-element arrays to allocate, and measurably faster on
 * the dictionary-mode objects JSON.parse gives for large sections. Sections come
 * from JSON (plain objects without inherited enumerable keys). A packed baseline
 * section is walked in its order, and an entry whose canonical JSON equals the
 * collected one's (nearly all) is passed over without being parsed.
 */
function differences<K extends string, T>(
  before: Record<string, T> | PackedSection<T>,
  after: Record<string, T>,
  changesOf: ChangesOf<T>,
  kind: K,
): Array<Difference<K, T>> {
  const out: Array<Difference<K, T>> = [];
  const one = (key: string, b: T, a: T | undefined): void => {
    if (a === undefined) {
      out.push({ kind, key, change: 'removed', changed: [], before: b, after: null });
      return;
    }
    const changed = changesOf(b, a);
    if (changed.length > 0) out.push({ kind, key, change: 'modified', changed, before: b, after: a });
  };
  if (before instanceof PackedSection) {
    for (const key of before.keys()) {
      const a = after[key];
      if (a !== undefined && before.same(key, a)) continue;
      one(key, before.entry(key) as T, a);
    }
  } else {
    for (const key in before) one(key, before[key] as T, after[key]);
  }
  const has = before instanceof PackedSection ? (key: string) => before.has(key) : (key: string) => before[key] !== undefined;
  for (const key in after) {
    if (!has(key)) out.push({ kind, key, change: 'added', changed: [], before: null, after: after[key] as T });
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
 *
 * Attributes beyond the stat (`caps`, `acl`, `defaultAcl`, `xattrs`, `flags`) are
 * absent when a path has none, so absent on one side and present on the other is
 * a change; so is `nlink` of a regular file (absent: 1) and `device`. `mtime` is
 * compared where both sides have it, and listed only when the content did not
 * change (a content change explains a new mtime): alone, it says someone touched
 * the file.
 */
export function fileChanges(b: FileEntry, a: FileEntry): string[] {
  // The fast path: nearly every file of a host equals the image's.
  if (
    b.sha256 === a.sha256 && b.mode === a.mode && b.uid === a.uid && b.gid === a.gid && b.type === a.type &&
    b.size === a.size && b.target === a.target && (b.content === undefined || a.content === undefined || b.content === a.content) &&
    b.mtime === a.mtime && b.nlink === a.nlink && b.flags === a.flags && b.caps === a.caps && b.device === a.device &&
    b.acl === undefined && a.acl === undefined && b.defaultAcl === undefined && a.defaultAcl === undefined &&
    b.xattrs === undefined && a.xattrs === undefined
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
  if (b.caps !== a.caps) changed.push('caps');
  if (!sameList(b.acl, a.acl)) changed.push('acl');
  if (!sameList(b.defaultAcl, a.defaultAcl)) changed.push('defaultAcl');
  if (!sameRecord(b.xattrs, a.xattrs)) changed.push('xattrs');
  if (b.flags !== a.flags) changed.push('flags');
  if (b.type === 'file' && a.type === 'file' && (b.nlink ?? 1) !== (a.nlink ?? 1)) changed.push('nlink');
  if (b.device !== a.device) changed.push('device');
  if (changed.length === 0 || !changed.some((c) => MTIME_EXPLAINED_BY.has(c))) {
    if (both(b.mtime, a.mtime)) changed.push('mtime');
  }
  return changed;
}

/** Changes that explain a new mtime by themselves. */
const MTIME_EXPLAINED_BY = new Set(['type', 'target', 'size', 'sha256', 'content']);

function sameList(x: readonly string[] | undefined, y: readonly string[] | undefined): boolean {
  if (x === undefined || y === undefined) return x === y;
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

function sameRecord(x: Record<string, string> | undefined, y: Record<string, string> | undefined): boolean {
  if (x === undefined || y === undefined) return x === y;
  const keys = Object.keys(x);
  if (keys.length !== Object.keys(y).length) return false;
  return keys.every((k) => Object.hasOwn(y, k) && x[k] === y[k]);
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

/** Attributes a `lines` expectation speaks for: the content and what follows from it (a rewrite moves mtime). */
const CONTENT_ATTRS = new Set(['sha256', 'size', 'content', 'mtime']);
const MAX_LINES_NAMED = 5;

/**
 * Whether expect rules cover a file finding; when they match but do not cover it, why.
 * `by` names the rules that cover it; `pin` is false when a rule that covers it says
 * `pin: false` (it may change at every boot).
 */
export type ExpectVerdict = { expected: true; by: string | null; pin: boolean } | { expected: false; note: string | null };

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
    if (e.lines === undefined) return { expected: true, by: e.ref, pin: e.rule.pin !== false };
    (matching ??= []).push(e);
  }
  if (!matching) return { expected: false, note: null };
  const refs = [...new Set(matching.map((e) => e.ref ?? 'an expect rule'))].join(', ');
  const by = `the expectation at ${refs}`;

  const other = d.changed.filter((c) => !CONTENT_ATTRS.has(c));
  if (other.length > 0) return { expected: false, note: `${other.join(', ')} changed, which ${by} (lines only) does not cover` };
  // Rewritten with the same content: every line is as it was, so the lines hold.
  if (d.change === 'modified' && d.changed.every((c) => c === 'mtime')) return { expected: true, by: refs, pin: !matching.some((e) => e.rule.pin === false) };

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
  if (unexpected.length === 0) return { expected: true, by: refs, pin: !matching.some((e) => e.rule.pin === false) };
  const named = unexpected.slice(0, MAX_LINES_NAMED).map((l) => JSON.stringify(l)).join(', ');
  const more = unexpected.length > MAX_LINES_NAMED ? ` and ${unexpected.length - MAX_LINES_NAMED} more` : '';
  const what = unexpected.length === 1 ? 'line' : 'lines';
  return { expected: false, note: `${what} not expected by ${refs}: ${named}${more}` };
}

