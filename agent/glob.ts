import { globMatcher } from './protocol/glob.js';
import { DriftError } from './protocol/errors.js';
// Types only from rules.js, so that loading the collector does not load zod (~45 ms).
import type { IgnoreRule, RuleSet, RuleSource, WatchRule } from './protocol/rules.js';

/**
 * The watch and ignore path globs of a RuleSet, compiled for the files collector.
 * Globs are rule globs over absolute paths, in the dialect of agent/protocol/glob.ts
 * (the one the compare engine uses): `**` crosses folders, `{a,b}` alternates.
 *
 * Every glob has static base folders: the literal leading segments before the
 * first wildcard, with simple braces expanded (`/usr/{bin,sbin}/**` has the bases
 * `/usr/bin` and `/usr/sbin`). A path can match a glob only if it is one of its
 * bases or lies below one, which is what lets the collector walk only under the
 * bases and test each path against only the globs that can match it.
 */

/** Characters that make a path segment a pattern rather than a literal name. */
const WILDCARD = /[*?[\]()!+@]/;

/** One compiled glob of a rule, with its position in the RuleSet (later rules win). */
export interface CompiledGlob<R> {
  readonly rule: R;
  /** Index of the rule in its list: when several watch rules match, the highest wins. */
  readonly index: number;
  readonly bases: readonly string[];
  readonly match: (path: string) => boolean;
  /**
   * False only when no path at or below folder `dir` can match: the walk need not
   * enter it (a glob for every home's `.ssh` has nothing below `/home/alice/Documents`).
   */
  readonly below: (dir: string) => boolean;
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

/** Most globs one pattern may expand into before expansion stops (the rest stays a pattern). */
const MAX_EXPANSIONS = 64;

/**
 * Expand the simple braces of a whole glob, including alternatives that span
 * folders or are empty: `/{usr/,}lib/x/**` → [`/usr/lib/x/**`, `/lib/x/**`],
 * `/{root,srv/www}/.ssh/**` → [`/root/.ssh/**`, `/srv/www/.ssh/**`]. Ranges and
 * escapes inside braces are left as they are; the expansions match
 * exactly the paths the original glob matches (an inner brace of a nested pair
 * expands first, which keeps the meaning).
 */
export function expandGlob(glob: string): string[] {
  let globs = [glob];
  for (;;) {
    let changed = false;
    const next: string[] = [];
    for (const g of globs) {
      const brace = simpleBrace(g);
      if (!brace || next.length + globs.length > MAX_EXPANSIONS) {
        next.push(g);
        continue;
      }
      changed = true;
      for (const alt of brace.alternatives) next.push(g.slice(0, brace.start) + alt + g.slice(brace.end + 1));
    }
    globs = next;
    if (!changed) return globs;
  }
}

/** The first `{a,b}` of a glob without nesting, ranges or escapes inside, or null. */
function simpleBrace(glob: string): { start: number; end: number; alternatives: string[] } | null {
  for (let i = 0; i < glob.length; i++) {
    const ch = glob[i];
    if (ch === '\\') { i++; continue; }
    if (ch !== '{') continue;
    const close = glob.indexOf('}', i);
    if (close < 0) return null;
    const inner = glob.slice(i + 1, close);
    if (inner.includes('{') || inner.includes('\\') || inner.includes('..') || !inner.includes(',')) continue;
    return { start: i, end: close, alternatives: inner.split(',') };
  }
  return null;
}

/**
 * The static base folders of an absolute glob, sorted and without duplicates:
 * `/etc/**` → [`/etc`], `/usr/{bin,sbin}/**` → [`/usr/bin`, `/usr/sbin`],
 * `/etc/machine-id` → [`/etc/machine-id`], `/**` → [`/`],
 * `/{root,srv/www}/.ssh/**` → [`/root/.ssh`, `/srv/www/.ssh`]; a wildcard stops the
 * base at the folder before it.
 */
export function globBases(glob: string): string[] {
  return [...new Set(expandGlob(glob).map(segmentBase))].sort();
}

function segmentBase(glob: string): string {
  const segments = segmentsOf(glob).slice(1);
  let bases = [''];
  for (const segment of segments) {
    if (segment === '**' || WILDCARD.test(segment.replace(/\\./g, ''))) break;
    const expanded = segment.includes('{') ? expandBraces(segment) : [unescapeLiteral(segment)];
    if (!expanded || expanded.length !== 1) break;
    const only = expanded[0] as string;
    if (only === '' || only === '.' || only === '..' || only.includes('/')) break;
    bases = bases.map((b) => `${b}/${only}`);
  }
  return bases[0] === '' || bases[0] === undefined ? '/' : bases[0];
}

/**
 * A test for "can anything at or below this folder match": each expansion of the
 * glob is compared segment by segment with the folder's path; a `**` segment
 * can match anything below, a segment that does not match rules the folder out.
 */
function compileBelow(glob: string): (dir: string) => boolean {
  const expanded = expandGlob(glob);
  // A `/` inside a group (`/srv/@(foo|bar/baz)/**`, a nested brace) cannot be
  // split into segments: such a glob may match below any folder under its bases,
  // so the walk enters them all and the full glob decides.
  if (expanded.some(hasSlashInGroup)) return () => true;
  const variants = expanded.map((g) => segmentsOf(g).slice(1).map((seg) => (seg === '**' ? null : globMatcher(seg))));
  return (dir: string): boolean => {
    const parts = dir === '/' ? [] : dir.slice(1).split('/');
    for (const segs of variants) {
      let ok = true;
      for (let i = 0; i < parts.length; i++) {
        const seg = segs[i];
        if (seg === null) return true;
        if (seg === undefined || !seg(parts[i] as string)) { ok = false; break; }
      }
      if (ok) return true;
    }
    return false;
  };
}

/** True when a `/` of the glob sits inside parentheses, braces or brackets. */
export function hasSlashInGroup(glob: string): boolean {
  let depth = 0;
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === '\\') { i++; continue; }
    if (c === '(' || c === '{' || c === '[') depth++;
    else if ((c === ')' || c === '}' || c === ']') && depth > 0) depth--;
    else if (c === '/' && depth > 0) return true;
  }
  return false;
}

/** True when `path` is `base` or lies below it. */
export function isUnder(path: string, base: string): boolean {
  return base === '/' || path === base || (path.startsWith(base) && path.charCodeAt(base.length) === 47);
}

function compile<R>(pattern: string, rule: R & { source?: RuleSource | undefined }, index: number, what: string): CompiledGlob<R> {
  if (!pattern.startsWith('/')) {
    const where = rule.source ? `${rule.source.file}:${rule.source.line}` : 'a rule made in code';
    throw new DriftError('DRIFT_ERR_RULES', `${where}: ${what} path "${pattern}" is not absolute; write it from the root, e.g. /etc/${pattern.replace(/^\.?\/*/, '')}`);
  }
  return { rule, index, bases: globBases(pattern), match: globMatcher(pattern), below: compileBelow(pattern) };
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

/** True when some candidate glob may match `dir` or a path below it (see CompiledGlob.below). */
export function anyBelow<R>(candidates: CompiledGlob<R>[], dir: string): boolean {
  for (const g of candidates) if (g.below(dir)) return true;
  return false;
}

/** True when any candidate glob matches `path`. */
export function anyMatch<R>(candidates: CompiledGlob<R>[], path: string): boolean {
  for (const g of candidates) if (g.match(path)) return true;
  return false;
}
