import type { Finding } from '../protocol/finding.js';
import {
  ruleRef,
  type ExpectRule,
  type FindingKind,
  type PolicyAction,
  type PolicyRule,
  type RuleSet,
  type Severity,
} from '../protocol/rules.js';
import { globMatcher } from '../protocol/glob.js';
import { substituteVars } from '../protocol/vars.js';

/**
 * Rules compiled for matching: globs turned into matchers once, `${var}` substituted,
 * expect-rule regexes built. Compiled once per RuleSet object and cached (a WeakMap
 * keyed by the RuleSet), so that comparing a fleet against one rule set pays the
 * compilation once. A RuleSet must not be mutated after its first use.
 */

type Matcher = (s: string) => boolean;

/** One ignore rule, compiled: which kind it drops and how it matches a finding. */
interface CompiledIgnore {
  kind: FindingKind;
  /** `file:line` of the rule, or null for a rule made in code. */
  ref: string | null;
  /** Processes: tried over the executable path and over the whole key. */
  match: Matcher;
}

/** One expect rule, compiled. */
export interface CompiledExpect {
  rule: ExpectRule;
  /** The path glob after `${var}` substitution. */
  path: Matcher;
  change: ExpectRule['change'];
  /** Line regexes after `${var}` substitution; undefined when the rule has no `lines`. */
  lines: RegExp[] | undefined;
  ref: string | null;
}

interface CompiledPolicy {
  kind: FindingKind | undefined;
  change: PolicyRule['match']['change'];
  path: Matcher | undefined;
  name: Matcher | undefined;
  /** Mode bit the file must gain (octal value of setuid 0o4000, setgid 0o2000), or `capability`. */
  gains: number | 'capability' | undefined;
  /** The changed attributes must all be among these. */
  only: ReadonlySet<string> | undefined;
  severity: Severity;
  action: PolicyAction;
  ref: string | null;
}

/** A RuleSet ready for matching; build it with `compileRules`. */
export interface CompiledRules {
  ignore: CompiledIgnore[];
  expect: CompiledExpect[];
  /** In reverse order: the first match is the last matching rule, and the last one wins. */
  policyLastFirst: CompiledPolicy[];
}

const glob = (pattern: string): Matcher => globMatcher(pattern);

// Line patterns match whole lines: `^admin:` style anchors are the author's choice,
// so the regex is used as written (search semantics, like grep).
function lineRegex(pattern: string, vars: Record<string, string>): RegExp {
  return new RegExp(substituteVars(pattern, vars, 'regex'));
}

const cache = new WeakMap<RuleSet, CompiledRules>();

/** Compile a RuleSet (cached per RuleSet object). */
export function compileRules(rules: RuleSet): CompiledRules {
  const hit = cache.get(rules);
  if (hit) return hit;
  const ignore: CompiledIgnore[] = [];
  for (const rule of rules.ignore) {
    const ref = ruleRef(rule);
    if (rule.path !== undefined) ignore.push({ kind: 'file', ref, match: glob(rule.path) });
    if (rule.process !== undefined) ignore.push({ kind: 'process', ref, match: glob(rule.process) });
    if (rule.package !== undefined) ignore.push({ kind: 'package', ref, match: glob(rule.package) });
    if (rule.port !== undefined) ignore.push({ kind: 'port', ref, match: glob(rule.port) });
  }
  const expect: CompiledExpect[] = rules.expect.map((rule) => ({
    rule,
    path: glob(substituteVars(rule.path, rules.vars, 'glob')),
    change: rule.change,
    lines: rule.lines?.map((l) => lineRegex(l, rules.vars)),
    ref: ruleRef(rule),
  }));
  const policyLastFirst: CompiledPolicy[] = rules.policy
    .map((rule) => ({
      kind: rule.match.kind,
      change: rule.match.change,
      path: rule.match.path !== undefined ? glob(rule.match.path) : undefined,
      name: rule.match.name !== undefined ? glob(rule.match.name) : undefined,
      gains: rule.match.gains === undefined ? undefined : rule.match.gains === 'capability' ? ('capability' as const) : MODE_BITS[rule.match.gains],
      only: rule.match.only === undefined ? undefined : new Set<string>(rule.match.only),
      severity: rule.severity,
      action: rule.action,
      ref: ruleRef(rule),
    }))
    .reverse();
  const compiled = { ignore, expect, policyLastFirst };
  cache.set(rules, compiled);
  return compiled;
}

/**
 * The name policy `name` globs and ignore rules match for a finding key:
 * a package's name without manager and architecture (`dpkg:openssl:amd64` → `openssl`),
 * a process's executable path (`/usr/sbin/sshd|root` → `/usr/sbin/sshd`), a port's
 * whole key, a file's path.
 */
export function nameOf(kind: FindingKind, key: string): string {
  switch (kind) {
    case 'package': {
      const first = key.indexOf(':');
      if (first < 0) return key;
      const second = key.indexOf(':', first + 1);
      return second < 0 ? key.slice(first + 1) : key.slice(first + 1, second);
    }
    case 'process': {
      const bar = key.lastIndexOf('|');
      return bar < 0 ? key : key.slice(0, bar);
    }
    case 'port':
    case 'file':
    case 'coverage':
      return key;
    default: {
      const never: never = kind;
      throw new TypeError(`unknown finding kind ${String(never)}`);
    }
  }
}

/** True when an ignore rule of the finding's kind matches its key (see IgnoreRule). */
export function isIgnored(compiled: CompiledRules, kind: FindingKind, key: string): boolean {
  return ignoredBy(compiled, kind, key) !== undefined;
}

/**
 * The first ignore rule of the finding's kind that matches its key: its `file:line`
 * (null for a rule made in code), or undefined when no ignore rule matches.
 */
export function ignoredBy(compiled: CompiledRules, kind: FindingKind, key: string): string | null | undefined {
  if (compiled.ignore.length === 0) return undefined;
  const name = nameOf(kind, key);
  for (const rule of compiled.ignore) {
    if (rule.kind !== kind) continue;
    if (rule.match(name)) return rule.ref;
    if (kind === 'process' && rule.match(key)) return rule.ref;
  }
  return undefined;
}

const MODE_BITS = { setuid: 0o4000, setgid: 0o2000 } as const;

/** True when a file finding's mode has `bit` after and did not before (a new file counts). */
function gainsBit(finding: Pick<Finding, 'kind' | 'before' | 'after'>, bit: number): boolean {
  const modeOf = (entry: Finding['before']): number => (entry !== null && 'mode' in entry ? Number.parseInt(entry.mode, 8) : 0);
  if (finding.kind !== 'file') return false;
  return (modeOf(finding.after) & bit) !== 0 && (modeOf(finding.before) & bit) === 0;
}

/**
 * The capabilities of a getcap text as `name:flag` pairs (`cap_setuid=ep` →
 * cap_setuid:e, cap_setuid:p); a value drift could not decode (`invalid …`) is one
 * pair of its own, so that it counts as a gain wherever it appears.
 */
export function capabilityGrants(text: string | undefined): Set<string> {
  const grants = new Set<string>();
  if (text === undefined) return grants;
  if (text.startsWith('invalid ')) {
    grants.add(text);
    return grants;
  }
  for (const clause of text.replace(/ \[rootid=\d+\]$/, '').split(' ')) {
    const m = /^([^=+]*)[=+]([eip]*)$/.exec(clause);
    if (!m) continue;
    for (const name of (m[1] ?? '').split(',')) {
      if (name === '') continue;
      for (const flag of m[2] ?? '') grants.add(`${name}:${flag}`);
    }
  }
  return grants;
}

/** True when a file finding's capabilities grant something they did not before (a new file with any counts). */
function gainsCapability(finding: Pick<Finding, 'kind' | 'before' | 'after'>): boolean {
  if (finding.kind !== 'file') return false;
  const capsOf = (entry: Finding['before']): string | undefined => (entry !== null && 'mode' in entry ? entry.caps : undefined);
  const before = capabilityGrants(capsOf(finding.before));
  for (const grant of capabilityGrants(capsOf(finding.after))) if (!before.has(grant)) return true;
  return false;
}

/** True for a modified finding whose changed attributes are all in `only`. */
function onlyAmong(finding: Pick<Finding, 'change' | 'changed'>, only: ReadonlySet<string>): boolean {
  return finding.change === 'modified' && finding.changed.length > 0 && finding.changed.every((c) => only.has(c));
}

/** The severity, action and rule reference a policy gives a finding. */
export interface Judgement {
  severity: Severity;
  action: PolicyAction;
  rule: string | null;
}

/** What a finding gets when no policy rule matches it. */
export const DEFAULT_JUDGEMENT: Judgement = Object.freeze({ severity: 'medium', action: 'report', rule: null });

/**
 * Judge a finding: the LAST policy rule whose every given key matches wins (site
 * rules come after shipped ones, so they override them). `path` and `gains` match files only;
 * `only` matches a modified finding whose changed attributes are all among its list;
 * `name` matches packages, processes and ports (see `nameOf`). No match gives
 * medium / report / rule null.
 */
export function judge(compiled: CompiledRules, finding: Pick<Finding, 'kind' | 'key' | 'change' | 'changed' | 'before' | 'after'>): Judgement {
  for (const p of compiled.policyLastFirst) {
    if (p.kind !== undefined && p.kind !== finding.kind) continue;
    if (p.change !== undefined && p.change !== finding.change) continue;
    if (p.path !== undefined && (finding.kind !== 'file' || !p.path(finding.key))) continue;
    if (p.name !== undefined && (finding.kind === 'file' || !p.name(nameOf(finding.kind, finding.key)))) continue;
    if (p.gains !== undefined && !(p.gains === 'capability' ? gainsCapability(finding) : gainsBit(finding, p.gains))) continue;
    if (p.only !== undefined && !onlyAmong(finding, p.only)) continue;
    return { severity: p.severity, action: p.action, rule: p.ref };
  }
  return DEFAULT_JUDGEMENT;
}
