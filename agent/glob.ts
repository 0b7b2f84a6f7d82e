import picomatch from 'picomatch';
import { DriftError } from './protocol/errors.js';
// Types only from rules.js, so that loading the collector does not load zod (~45 ms).
import type { IgnoreRule, RuleSet, RuleSource, WatchRule } from './protocol/rules.js';

/**
 * The watch and ignore path globs of a RuleSet, compiled for the files collector.
 * Globs are picomatch globs over absolute paths with `dot: true` (the same options
 * the compare engine uses): `**` crosses folders, `{a,b}` alternates.
 *
 * Every glob has static base folders: the literal leading segments before the
 * first wildcard, with simple braces expanded (`/usr/{bin,sbin}/**` has the bases
 * `/usr/bin` and `/usr/sbin`). A path can match a glob only if it is one of its
 * bases or lies below one, which is what lets the collector walk only under the
 * bases and test each path against only the globs that can match it.
 */

const GLOB_OPTIONS = { dot: true } as const;

/** Characters that make a path segment a pattern rather than a literal name. */
const WILDCARD = /[*?[\]()!+@]/;

/** One compiled glob of a rule, with its position in the RuleSet (later rules win). */
export interface CompiledGlob<R> {
  readonly rule: R;
  /** Index of the rule in its list: when several watch rules match, the highest wins. */
  readonly index: number;
  readonly bases: readonly string[];
  readonly match: (path: string) => boolean;
}

/** Remove backslash escapes from a literal segment (`\*` names a file called `*`). */
function unescapeLiteral(segment: string): string {
  return segment.replace(/\\(.)/g, '$1');
}

/** Expand the non-nested braces of a segment that has no other wildcard. */
function expandBraces(segment: string): string[] | null {
  // A pattern the expansion does not understand returns null: the base stops
  // one folder higher, which walks more but never misses a path.
  let out = [''];
  let i = 0;
  while (i < segment.length) {
    const ch = segment[i];
    if (ch === '\\' && i + 1 < segment.length) {
      out = out.map((s) => s + segment[i + 1]);
      i += 2;
      continue;
    }
    if (ch === '{') {
      const close = segment.indexOf('}', i);
      const inner = close < 0 ? '' : segment.slice(i + 1, close);
      // Nested braces, ranges (`{1..3}`) and escapes inside braces are left to picomatch.
      if (close < 0 || inner.includes('{') || inner.includes('\\') || inner.includes('..') || !inner.includes(',')) return null;
      const alternatives = inner.split(',');
      out = out.flatMap((s) => alternatives.map((a) => s + a));
      i = close + 1;
      continue;
    }
    if (ch === '}' || ch === ',' || (ch !== undefined && WILDCARD.test(ch))) return null;
    out = out.map((s) => s + ch);
    i += 1;
  }
  return out;
}

/** Split an absolute glob into segments; empty segments (`//`) are dropped. */
function segmentsOf(glob: string): string[] {
  return glob.split('/').filter((s, i) => i === 0 || s !== '');
}

/**
 * The static base folders of an absolute glob, sorted and without duplicates:
 * `/etc/**` → [`/etc`], `/usr/{bin,sbin}/**` → [`/usr/bin`, `/usr/sbin`],
 * `/etc/machine-id` → [`/etc/machine-id`], `/**` → [`/`].
 */
export function globBases(glob: string): string[] {
  const segments = segmentsOf(glob).slice(1);
  let bases = [''];
  for (const segment of segments) {
    if (segment === '**' || WILDCARD.test(segment.replace(/\\./g, ''))) break;
    const expanded = segment.includes('{') ? expandBraces(segment) : [unescapeLiteral(segment)];
    if (!expanded) break;
    if (expanded.some((s) => s === '' || s === '.' || s === '..' || s.includes('/'))) break;
    bases = bases.flatMap((b) => expanded.map((e) => `${b}/${e}`));
  }
  return [...new Set(bases.map((b) => (b === '' ? '/' : b)))].sort();
}

/** True when `path` is `base` or lies below it. */
export function isUnder(path: string, base: string): boolean {
  return base === '/' || path === base || (path.startsWith(base) && path.charCodeAt(base.length) === 47);
}

function compile<R>(pattern: string, rule: R & { source?: RuleSource }, index: number, what: string): CompiledGlob<R> {
  if (!pattern.startsWith('/')) {
    const where = rule.source ? `${rule.source.file}:${rule.source.line}` : 'a rule made in code';
    throw new DriftError('DRIFT_ERR_RULES', `${where}: ${what} path "${pattern}" is not absolute; write it from the root, e.g. /etc/${pattern.replace(/^\.?\/*/, '')}`);
  }
  return { rule, index, bases: globBases(pattern), match: picomatch(pattern, GLOB_OPTIONS) };
}

function byBase<R>(globs: CompiledGlob<R>[]): Map<string, CompiledGlob<R>[]> {
  const map = new Map<string, CompiledGlob<R>[]>();
  for (const g of globs) {
    for (const base of g.bases) {
      const list = map.get(base);
      if (list) list.push(g);
      else map.set(base, [g]);
    }
  }
  return map;
}

/**
 * The files collector's view of a RuleSet: where to walk, and which globs apply
 * where. Build it once per collection with `compilePathRules`.
 */
export interface PathRules {
  /** Folders (or single paths) to walk, minimal: none lies under another. */
  readonly walkRoots: readonly string[];
  /** Watch globs whose base is exactly this path (they become candidates from here down). */
  readonly watchAt: ReadonlyMap<string, CompiledGlob<WatchRule>[]>;
  /** Ignore globs whose base is exactly this path. */
  readonly ignoreAt: ReadonlyMap<string, CompiledGlob<IgnoreRule>[]>;
  /** Every proper ancestor folder of a watch base: the walk must go through these. */
  readonly aboveWatchBase: ReadonlySet<string>;
}

/**
 * Compile the watch globs and the `path` ignore globs of a RuleSet. Throws
 * DRIFT_ERR_RULES for a glob that is not absolute.
 */
export function compilePathRules(rules: RuleSet): PathRules {
  const watch = rules.watch.map((r, i) => compile(r.path, r, i, 'watch'));
  const ignore: CompiledGlob<IgnoreRule>[] = [];
  rules.ignore.forEach((r, i) => {
    if (r.path !== undefined) ignore.push(compile(r.path, r, i, 'ignore'));
  });
  const allBases = [...new Set(watch.flatMap((g) => g.bases))].sort();
  const walkRoots = allBases.filter((b) => !allBases.some((other) => other !== b && isUnder(b, other)));
  const aboveWatchBase = new Set<string>();
  for (const base of allBases) {
    for (let i = base.lastIndexOf('/'); i > 0; i = base.lastIndexOf('/', i - 1)) aboveWatchBase.add(base.slice(0, i));
    if (base !== '/') aboveWatchBase.add('/');
  }
  return { walkRoots, watchAt: byBase(watch), ignoreAt: byBase(ignore), aboveWatchBase };
}

/**
 * The candidate globs for the children of a folder, given the folder's own
 * candidates and the globs based exactly at `path`. Returns `inherited` itself
 * when nothing is added (no allocation on the hot path); keeps rule order.
 */
export function withBaseAt<R>(inherited: CompiledGlob<R>[], at: ReadonlyMap<string, CompiledGlob<R>[]>, path: string): CompiledGlob<R>[] {
  const added = at.get(path);
  if (!added) return inherited;
  const merged = [...new Set([...inherited, ...added])];
  merged.sort((a, b) => a.index - b.index);
  return merged;
}

/** The last candidate glob matching `path` (the last rule wins), or undefined. */
export function lastMatch<R>(candidates: CompiledGlob<R>[], path: string): CompiledGlob<R> | undefined {
  for (let i = candidates.length - 1; i >= 0; i--) {
    const g = candidates[i];
    if (g && g.match(path)) return g;
  }
  return undefined;
}

/** True when any candidate glob matches `path`. */
export function anyMatch<R>(candidates: CompiledGlob<R>[], path: string): boolean {
  for (const g of candidates) if (g.match(path)) return true;
  return false;
}
