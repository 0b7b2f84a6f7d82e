import { readdir, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node as YamlNode } from 'yaml';
import type { z } from 'zod';
import { DriftError, errnoOf } from '../protocol/errors.js';
import { readFileChecked, unreadableWhy } from '../hash.js';

/** Largest rule file read (the shipped rules are a few KiB each). */
export const RULE_FILE_MAX_BYTES = 1024 * 1024;
import {
  emptyRuleSet,
  ExpectRuleSchema,
  IgnoreRuleSchema,
  PolicyRuleSchema,
  RuleFileSchema,
  WatchRuleSchema,
  type RuleSet,
} from '../protocol/rules.js';
import { bundledLibDir } from '../bundle.js';
import { broadness, globProblem } from './glob.js';
import { findVarRefs, substituteVars, VAR_NAME } from '../protocol/vars.js';

/** One thing wrong in a rule file, at 1-based `line` and `col` (0:0 when it concerns the whole file). */
export interface Problem {
  file: string;
  line: number;
  col: number;
  message: string;
}

/** Options of `loadRuleSet` and `checkRules`. */
export interface LoadOptions {
  /** Read the shipped `rules/` folder before the given ones (default true). */
  shipped?: boolean;
}

/** What `checkRules` found: every problem, and how many files and rules it read. */
export interface CheckResult {
  problems: Problem[];
  files: number;
  rules: number;
}

/**
 * The folder of shipped rule files. It sits at the package root, three levels above
 * the compiled `dist/agent/rules/load.js`, both in the repository and in an
 * installed package. The single executable finds them beside itself: `/usr/lib/drift/rules`
 * for `/usr/bin/drift` (see `libDirOf`).
 */
export function shippedRulesDir(): string {
  const lib = bundledLibDir();
  if (lib !== null) return join(lib, 'rules');
  return resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'rules');
}

/** `file:line:col: message`, the one way problems are printed. */
export function formatProblem(p: Problem): string {
  return `${p.file}:${p.line}:${p.col}: ${p.message}`;
}

/**
 * The rule files to read, in merge order: for each folder (the shipped one first
 * unless `shipped: false`) its `*.yaml` and `*.yml` files sorted by name in byte
 * order, dotfiles left out. A path naming a file is taken as it is. A folder that
 * does not exist is refused with DRIFT_ERR_RULES; an empty folder adds nothing.
 */
export async function listRuleFiles(dirs: readonly string[], opts: LoadOptions = {}): Promise<string[]> {
  const all = opts.shipped === false ? [...dirs] : [shippedRulesDir(), ...dirs];
  const files: string[] = [];
  for (const dir of all) {
    let isDir: boolean;
    try {
      isDir = (await stat(dir)).isDirectory();
    } catch (err) {
      throw new DriftError('DRIFT_ERR_RULES', `rules folder ${dir} cannot be read (${errnoOf(err)}); create it or leave it out`, { cause: err });
    }
    if (!isDir) {
      files.push(dir);
      continue;
    }
    const names = (await readdir(dir)).filter((n) => !n.startsWith('.') && /\.ya?ml$/.test(n));
    names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (const n of names) files.push(join(dir, n));
  }
  return files;
}

/** One rule file read and checked on its own; cross-file checks wait for `mergeRuleFiles`. */
export interface ParsedRuleFile {
  file: string;
  /** The file's rules with their sources; empty sections when the file is empty. */
  rules: RuleSet;
  /** Problems found in this file alone. */
  problems: Problem[];
  /** Strings that use `${var}`, checked once every file's vars are known. */
  deferred: Deferred[];
}

/** A string of an expect rule to check after variable substitution. */
interface Deferred {
  at: { file: string; line: number; col: number };
  /** The key the string belongs to, for messages (`path`, `lines`). */
  key: string;
  text: string;
  as: 'glob' | 'regex';
  /** Expect paths without lines: whether a broad glob is acknowledged; null when breadth is not checked. */
  broadOk: boolean | null;
}

type Path = readonly (string | number)[];

/**
 * Parse and check one rule file's text (pure: no I/O). Reports YAML syntax errors,
 * duplicate keys, a top level that is not a mapping, every schema violation, bad
 * globs, ignore rules that do not name exactly one subject, empty policy matches,
 * and misplaced or malformed variables, each at its line and column.
 */
export function parseRuleFile(file: string, text: string): ParsedRuleFile {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  const problems: Problem[] = [];
  const deferred: Deferred[] = [];
  const rules = emptyRuleSet();
  const at = (offset: number): { file: string; line: number; col: number } => {
    const { line, col } = lc.linePos(offset);
    return { file, line, col };
  };
  const report = (offset: number, message: string): void => { problems.push({ ...at(offset), message }); };

  let fatal = false;
  for (const e of doc.errors) {
    if (e.code === 'DUPLICATE_KEY') {
      report(e.pos[0], `duplicate key "${keyText(text, e.pos)}" (each key may appear once in a mapping)`);
    } else {
      fatal = true;
      report(e.pos[0], `YAML syntax error: ${firstLine(e.message)}`);
    }
  }
  if (fatal) return { file, rules, problems, deferred };

  const top = doc.contents;
  if (top === null || (isScalar(top) && top.value === null)) return { file, rules, problems, deferred };
  if (!isMap(top)) {
    report(rangeStart(top), `a rule file must be a mapping with keys ${keysOf(RuleFileSchema).join(', ')}; got ${describeNode(top)}`);
    return { file, rules, problems, deferred };
  }

  const data: unknown = doc.toJS();
  const parsed = RuleFileSchema.safeParse(data);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) problems.push(...issueProblems(doc, issue, at));
  }

  const obj = data as Record<string, unknown>;
  const posOf = (path: Path): number => {
    const n = nodeIn(doc, path);
    return n ? rangeStart(n) : rangeStart(top);
  };

  // A string outside expect rules must not use variables, and must be a valid glob.
  const checkGlob = (path: Path, label: string, opts: { absolute?: 'path' | 'exe' }): void => {
    const value = getPath(obj, path);
    if (typeof value !== 'string' || value === '') return;
    if (value.includes('${')) {
      report(posOf(path), `${label}: variables like "\${name}" are substituted in expect rules only (path, lines), got "${value}"`);
      return;
    }
    const bad = globProblem(value);
    if (bad) report(posOf(path), `${label} is not a valid glob: ${bad}, got "${value}"`);
    else if (opts.absolute === 'path' && !value.startsWith('/')) {
      report(posOf(path), `${label} must be an absolute path glob (starting with /), got "${value}"${value.startsWith('**') ? ` (write "/${value}" for a name at any depth)` : ''}`);
    } else if (opts.absolute === 'exe' && !value.startsWith('/') && !value.startsWith('**') && !value.startsWith('*')) {
      report(posOf(path), `${label} is matched against the executable path of a process and must start with / (e.g. /usr/sbin/sshd), got "${value}"`);
    }
  };

  const vars = obj['vars'];
  if (vars && typeof vars === 'object' && !Array.isArray(vars)) {
    for (const [name, value] of Object.entries(vars)) {
      if (!VAR_NAME.test(name)) {
        report(posOfKey(doc, ['vars'], name) ?? posOf(['vars']), `variable name "${name}" is not allowed (letters, digits and _, not starting with a digit)`);
      }
      if (typeof value === 'string') rules.vars[name] = value;
    }
  }

  // The checks below read raw items, so that a rule with a bad severity still has
  // its empty match reported; only items valid on their own join the rule set.
  forEachItem(obj, 'watch', (i) => {
    checkGlob(['watch', i, 'path'], 'path', { absolute: 'path' });
  }, WatchRuleSchema, (i, rule) => rules.watch.push({ ...rule, source: at(posOf(['watch', i])) }));

  forEachItem(obj, 'ignore', (i, raw) => {
    const subjects = (['path', 'process', 'package', 'port'] as const).filter((k) => raw[k] !== undefined);
    if (subjects.length !== 1) {
      report(posOf(['ignore', i]), subjects.length === 0
        ? 'an ignore rule names exactly one of path, process, package, port; this one names none'
        : `an ignore rule names exactly one of path, process, package, port; this one names ${subjects.join(' and ')} (write one rule for each)`);
    }
    checkGlob(['ignore', i, 'path'], 'path', { absolute: 'path' });
    checkGlob(['ignore', i, 'process'], 'process', { absolute: 'exe' });
    checkGlob(['ignore', i, 'package'], 'package', {});
    checkGlob(['ignore', i, 'port'], 'port', {});
    for (const k of subjects) {
      const value = raw[k];
      if (typeof value === 'string') checkBroad(['ignore', i], raw, broadness(k, value), `ignore ${k} "${value}"`);
    }
  }, IgnoreRuleSchema, (i, rule) => rules.ignore.push({ ...rule, source: at(posOf(['ignore', i])) }));

  forEachItem(obj, 'expect', (i, raw) => {
    checkVarSyntax(['expect', i, 'path'], 'path', 'glob', raw['lines'] === undefined ? raw['broad'] === true : null);
    const lines = raw['lines'];
    if (Array.isArray(lines)) {
      if (lines.length === 0) {
        report(posOf(['expect', i, 'lines']), 'lines must list at least one regular expression (leave lines out to expect any content)');
      }
      lines.forEach((_, j) => checkVarSyntax(['expect', i, 'lines', j], 'lines', 'regex'));
    }
  }, ExpectRuleSchema, (i, rule) => rules.expect.push({ ...rule, source: at(posOf(['expect', i])) }));

  forEachItem(obj, 'policy', (i, raw) => {
    const m = raw['match'];
    if (m === null || typeof m !== 'object' || Array.isArray(m)) return;
    const match = m as Record<string, unknown>;
    if (match['kind'] === undefined && match['change'] === undefined && match['path'] === undefined && match['name'] === undefined && match['gains'] === undefined && match['only'] === undefined) {
      report(posOf(['policy', i, 'match']), 'match must name at least one of kind, change, path, name, gains, only (an empty match would judge every finding)');
    }
    if (match['gains'] !== undefined && match['kind'] !== undefined && match['kind'] !== 'file') {
      report(posOf(['policy', i, 'match', 'gains']), `gains matches files only, but this match has kind: ${String(match['kind'])}`);
    }
    if (match['path'] !== undefined && match['kind'] !== undefined && match['kind'] !== 'file') {
      report(posOf(['policy', i, 'match', 'path']), `path matches files only, but this match has kind: ${String(match['kind'])} (use name for packages, processes and ports)`);
    }
    if (match['name'] !== undefined && match['kind'] === 'file') {
      report(posOf(['policy', i, 'match', 'name']), 'name matches packages, processes and ports, but this match has kind: file (use path for files)');
    }
    checkGlob(['policy', i, 'match', 'path'], 'path', { absolute: 'path' });
    checkGlob(['policy', i, 'match', 'name'], 'name', {});
    const named = ['kind', 'change', 'path', 'name', 'gains'].some((k) => match[k] !== undefined);
    if (raw['action'] === 'ignore' && named) {
      const kind = typeof match['kind'] === 'string' ? match['kind'] : undefined;
      const path = match['path'];
      const name = match['name'];
      let broad: string | null;
      if (typeof path === 'string') broad = broadness('path', path);
      else if (typeof name === 'string') broad = broadness(kind === 'process' ? 'process' : kind === 'port' ? 'port' : 'package', name);
      else broad = match['gains'] !== undefined ? null : `every ${kind ?? ''}${kind ? ' ' : ''}finding${match['change'] !== undefined ? ` of change ${String(match['change'])}` : ''}`;
      checkBroad(['policy', i], raw, broad, 'this policy rule (action ignore)');
    }
  }, PolicyRuleSchema, (i, rule) => rules.policy.push({ ...rule, source: at(posOf(['policy', i])) }));

  return { file, rules, problems, deferred };

  // A rule that drops everything, or everything under a top-level folder, must say so.
  function checkBroad(path: Path, raw: Record<string, unknown>, broad: string | null, what: string): void {
    if (broad === null || raw['broad'] === true) return;
    report(posOf(path), `${what} drops ${broad}, which blinds drift to all of it; narrow it, or add "broad: true" to acknowledge that it must be so`);
  }

  // Syntax of `${...}` now; whether each name is defined once all files are read.
  // `broadOk`: for an expect path without lines, whether a broad glob is acknowledged (null: not checked).
  function checkVarSyntax(path: Path, key: string, as: 'glob' | 'regex', broadOk: boolean | null = null): void {
    const value = getPath(obj, path);
    if (typeof value !== 'string') return;
    const { refs, unclosedAt } = findVarRefs(value);
    let ok = true;
    if (unclosedAt !== null) {
      report(posOf(path), `${key}: "\${" without its closing "}" in "${value}"`);
      ok = false;
    }
    for (const r of refs) {
      if (!VAR_NAME.test(r.name)) {
        report(posOf(path), `${key}: "\${${r.name}}" is not a variable reference (names are letters, digits and _)`);
        ok = false;
      }
    }
    if (ok) deferred.push({ at: at(posOf(path)), key, text: value, as, broadOk });
  }
}

/**
 * Merge parsed files in order (lists concatenated, `vars` merged with later files
 * winning) and run the checks that need the merged variables: every `${name}` is
 * defined, expect paths are valid globs and expect lines valid regular
 * expressions once substituted.
 */
export function mergeRuleFiles(files: readonly ParsedRuleFile[]): { ruleSet: RuleSet; problems: Problem[] } {
  const ruleSet = emptyRuleSet();
  const problems: Problem[] = files.flatMap((f) => f.problems);
  for (const f of files) {
    Object.assign(ruleSet.vars, f.rules.vars);
    ruleSet.watch.push(...f.rules.watch);
    ruleSet.ignore.push(...f.rules.ignore);
    ruleSet.expect.push(...f.rules.expect);
    ruleSet.policy.push(...f.rules.policy);
  }
  const defined = Object.keys(ruleSet.vars).sort();
  for (const d of files.flatMap((f) => f.deferred)) {
    let ok = true;
    for (const r of findVarRefs(d.text).refs) {
      if (!Object.hasOwn(ruleSet.vars, r.name)) {
        problems.push({ ...d.at, message: `${d.key}: undefined variable "\${${r.name}}" (defined: ${defined.length ? defined.join(', ') : 'none'}; define it under vars:)` });
        ok = false;
      }
    }
    if (!ok) continue;
    const text = substituteVars(d.text, ruleSet.vars, d.as);
    if (d.as === 'regex') {
      try {
        new RegExp(text);
      } catch (err) {
        // V8 says "Invalid regular expression: /src/: reason"; keep the reason, show the pattern as written.
        const msg = err instanceof Error ? err.message : String(err);
        const why = msg.slice(msg.lastIndexOf(': ') + 2);
        problems.push({ ...d.at, message: `lines: ${JSON.stringify(d.text)} is not a valid regular expression (${why})` });
      }
    } else {
      const bad = globProblem(text);
      if (bad) problems.push({ ...d.at, message: `${d.key} is not a valid glob: ${bad}, got "${d.text}"` });
      else if (d.broadOk === false && broadness('path', text) !== null) {
        problems.push({ ...d.at, message: `expect path "${d.text}" (without lines) drops ${broadness('path', text) ?? ''}, which blinds drift to all of it; narrow it, or add "broad: true" to acknowledge that it must be so` });
      } else if (!text.startsWith('/')) {
        problems.push({ ...d.at, message: `${d.key} must be an absolute path glob (starting with /), got "${d.text}"${text.startsWith('**') ? ` (write "/${d.text}" for a name at any depth)` : ''}` });
      }
    }
  }
  const order = new Map(files.map((f, i) => [f.file, i]));
  problems.sort((a, b) => (order.get(a.file) ?? 0) - (order.get(b.file) ?? 0) || a.line - b.line || a.col - b.col);
  return { ruleSet, problems };
}

/** Count of rules (watch, ignore, expect and policy entries) in a rule set. */
export function countRules(rules: RuleSet): number {
  return rules.watch.length + rules.ignore.length + rules.expect.length + rules.policy.length;
}

/**
 * Read and check every rule file of `dirs` (after the shipped folder unless
 * `shipped: false`), reporting every problem, not just the first. Throws
 * DRIFT_ERR_RULES only for a folder that does not exist.
 */
export async function checkRules(dirs: readonly string[], opts: LoadOptions = {}): Promise<CheckResult> {
  const { parsed } = await readAll(dirs, opts);
  const { ruleSet, problems } = mergeRuleFiles(parsed);
  return { problems, files: parsed.length, rules: countRules(ruleSet) };
}

/**
 * The merged rule set of the shipped folder (unless `shipped: false`) and `dirs`,
 * in that order. Every rule keeps the `source` it was written at. Throws
 * DRIFT_ERR_RULES listing every problem as `file:line:col: message`.
 */
export async function loadRuleSet(dirs: readonly string[], opts: LoadOptions = {}): Promise<RuleSet> {
  const { parsed } = await readAll(dirs, opts);
  const { ruleSet, problems } = mergeRuleFiles(parsed);
  if (problems.length > 0) {
    const n = problems.length;
    throw new DriftError('DRIFT_ERR_RULES',
      `${n} problem${n === 1 ? '' : 's'} in rule files (fix them, then check with \`drift rules check\`):\n${problems.map(formatProblem).join('\n')}`);
  }
  return ruleSet;
}

async function readAll(dirs: readonly string[], opts: LoadOptions): Promise<{ parsed: ParsedRuleFile[] }> {
  const files = await listRuleFiles(dirs, opts);
  const parsed: ParsedRuleFile[] = [];
  for (const file of files) {
    let text: string;
    try {
      // No-follow, non-blocking, regular files only and bounded: a FIFO, a symlink or a
      // huge file in a rule folder is a problem to report, not a read that hangs.
      text = readFileChecked(file, RULE_FILE_MAX_BYTES, { checkPath: false }).toString('utf8');
    } catch (err) {
      parsed.push({ file, rules: emptyRuleSet(), deferred: [], problems: [{ file, line: 0, col: 0, message: `cannot read the file: ${unreadableWhy(errnoOf(err), RULE_FILE_MAX_BYTES)}` }] });
      continue;
    }
    parsed.push(parseRuleFile(file, text));
  }
  return { parsed };
}

// ---- helpers over the YAML tree and zod issues ----

type At = (offset: number) => { file: string; line: number; col: number };

/** Turn one zod issue into problems placed on the offending node. */
function issueProblems(doc: Document, issue: z.core.$ZodIssue, at: At): Problem[] {
  const path = issue.path.filter((p): p is string | number => typeof p !== 'symbol');
  const node = nodeIn(doc, path);
  const where = node ? rangeStart(node) : 0;
  const label = labelOf(path);
  const last = path[path.length - 1];
  // zod reports a missing key as a bad value of undefined; say what is missing, at its mapping.
  if (issue.code !== 'unrecognized_keys' && !node && typeof last === 'string') {
    const parent = nodeIn(doc, path.slice(0, -1));
    if (isMap(parent) && !parent.has(last)) {
      return [{ ...at(rangeStart(parent)), message: `missing key "${last}"${requiredHint(path)}` }];
    }
  }
  switch (issue.code) {
    case 'unrecognized_keys': {
      const allowed = keysOf(schemaAt(path)).join(', ');
      return issue.keys.map((k) => ({
        ...at(posOfKey(doc, path, k) ?? where),
        message: `unknown key "${k}" (allowed: ${allowed})`,
      }));
    }
    case 'invalid_type': {
      if (!node) return [{ ...at(where), message: `${label} must be ${typeName(issue.expected)}, got nothing` }];
      if (last === 'content' && path[0] === 'watch') {
        return [{ ...at(where), message: `content must be true, false or "names", got ${describeNode(node)}` }];
      }
      const hint = path[0] === 'vars' && isScalar(node) ? ' (quote it to make it a string)' : '';
      return [{ ...at(where), message: `${label} must be ${typeName(issue.expected)}, got ${describeNode(node)}${hint}` }];
    }
    case 'invalid_value':
      return [{ ...at(where), message: `${label} must be one of ${issue.values.map(String).join(', ')}, got ${node ? describeNode(node) : 'nothing'}` }];
    case 'too_small':
      return [{ ...at(where), message: issue.origin === 'string' ? `${label} must not be empty` : `${label}: ${issue.message}` }];
    case 'invalid_union':
      if (path[path.length - 1] === 'content') {
        return [{ ...at(where), message: `content must be true, false or "names", got ${node ? describeNode(node) : 'nothing'}` }];
      }
      return [{ ...at(where), message: `${label}: ${issue.message}` }];
    default:
      return [{ ...at(where), message: `${label}: ${issue.message}` }];
  }
}

function requiredHint(path: Path): string {
  const key = path[path.length - 1];
  if (key === 'why') return ' (every ignore and expect rule says why, for the person who reads the finding)';
  const section = path[0];
  const allowed = keysOf(schemaAt(path.slice(0, -1))).join(', ');
  return ` (a ${String(section)} rule has ${allowed})`;
}

/** A readable name for a path: the last key, or `<section> item` for a list element. */
function labelOf(path: Path): string {
  if (path.length === 0) return 'the file';
  const last = path[path.length - 1];
  if (typeof last === 'number') {
    const parent = path[path.length - 2];
    return `${String(parent)} item ${last + 1}`;
  }
  if (path[0] === 'vars' && path.length === 2) return `vars.${last}`;
  return String(last);
}

function typeName(expected: string): string {
  switch (expected) {
    case 'string': return 'a string';
    case 'boolean': return 'true or false';
    case 'array': return 'a list';
    case 'object': case 'record': return 'a mapping';
    case 'number': return 'a number';
    default: return expected;
  }
}

/** What a YAML node holds, for "got ..." in messages. */
function describeNode(node: unknown): string {
  if (isMap(node)) return 'a mapping';
  if (isSeq(node)) return 'a list';
  if (isScalar(node)) {
    const v = node.value;
    if (v === null || v === undefined) return 'nothing (an empty value)';
    if (typeof v === 'string') return JSON.stringify(v.length > 60 ? `${v.slice(0, 57)}...` : v);
    if (typeof v === 'number') return `the number ${v}`;
    if (typeof v === 'boolean') return String(v);
    return String(v);
  }
  return 'an alias or tag';
}

/** The schema that validates the value at `path` of a rule file (for the allowed keys). */
function schemaAt(path: Path): z.ZodType {
  let s: z.ZodType = RuleFileSchema;
  for (const p of path) {
    s = unwrap(s);
    const def = s.def as unknown as { type: string; shape?: Record<string, z.ZodType>; element?: z.ZodType; valueType?: z.ZodType };
    if (def.type === 'object' && def.shape && typeof p === 'string' && def.shape[p]) s = def.shape[p];
    else if (def.type === 'array' && def.element) s = def.element;
    else if (def.type === 'record' && def.valueType) s = def.valueType;
    else break;
  }
  return unwrap(s);
}

function unwrap(s: z.ZodType): z.ZodType {
  let cur = s;
  for (;;) {
    const def = cur.def as unknown as { type: string; innerType?: z.ZodType };
    if ((def.type === 'optional' || def.type === 'nullable' || def.type === 'default') && def.innerType) cur = def.innerType;
    else return cur;
  }
}

function keysOf(s: z.ZodType): string[] {
  const def = unwrap(s).def as unknown as { type: string; shape?: Record<string, unknown> };
  return def.type === 'object' && def.shape ? Object.keys(def.shape) : [];
}

function nodeIn(doc: Document, path: Path): YamlNode | null {
  if (path.length === 0) return (doc.contents as YamlNode | null) ?? null;
  const n: unknown = doc.getIn(path, true);
  return n && typeof n === 'object' && 'range' in n ? (n as YamlNode) : null;
}

/** Offset of the key `key` in the mapping at `path`, or null. */
function posOfKey(doc: Document, path: Path, key: string): number | null {
  const map = nodeIn(doc, path);
  if (!isMap(map)) return null;
  for (const pair of map.items) {
    if (isScalar(pair.key) && String(pair.key.value) === key && pair.key.range) return pair.key.range[0];
  }
  return null;
}

function rangeStart(node: unknown): number {
  const r = (node as { range?: [number, number, number] | null }).range;
  return r ? r[0] : 0;
}

function keyText(text: string, pos: [number, number]): string {
  const rest = text.slice(pos[0]).split('\n')[0] ?? '';
  const m = /^("[^"]*"|'[^']*'|[^:]*?)\s*:/.exec(rest);
  return (m?.[1] ?? rest).trim().replace(/^["']|["']$/g, '');
}

function firstLine(s: string): string {
  return s.split('\n')[0] ?? s;
}

function getPath(obj: unknown, path: Path): unknown {
  let cur: unknown = obj;
  for (const p of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string | number, unknown>)[p];
  }
  return cur;
}

/**
 * For each mapping item of a section, run `check` on the raw item, then `add` if
 * the item is valid on its own (so that the rule set holds typed rules only).
 */
function forEachItem<S extends z.ZodType>(
  obj: Record<string, unknown>,
  section: string,
  check: (i: number, raw: Record<string, unknown>) => void,
  schema: S,
  add: (i: number, rule: z.infer<S>) => void,
): void {
  const list = obj[section];
  if (!Array.isArray(list)) return;
  list.forEach((item: unknown, i) => {
    if (item === null || typeof item !== 'object' || Array.isArray(item)) return;
    check(i, item as Record<string, unknown>);
    const r = schema.safeParse(item);
    if (r.success) add(i, r.data);
  });
}
