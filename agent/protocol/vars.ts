/**
 * `${name}` variables of rule files (rules/README.md, "Variables"). A variable is
 * substituted in expect rules only (`path` and `lines`), with its value inserted
 * literally: glob-escaped in a path, regex-escaped in a line pattern.
 */

/** A variable name: a letter or `_`, then letters, digits and `_`. */
export const VAR_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** One `${...}` reference found in a string; `name` is what sits between the braces. */
export interface VarRef {
  name: string;
  /** Offset of the `$` in the string. */
  index: number;
}

/**
 * Every `${...}` in `text`, and the offset of an opening `${` that is never closed
 * (or null). Names are returned as written; check them against `VAR_NAME`.
 */
export function findVarRefs(text: string): { refs: VarRef[]; unclosedAt: number | null } {
  const refs: VarRef[] = [];
  let i = 0;
  for (;;) {
    const start = text.indexOf('${', i);
    if (start < 0) return { refs, unclosedAt: null };
    const end = text.indexOf('}', start + 2);
    if (end < 0) return { refs, unclosedAt: start };
    refs.push({ name: text.slice(start + 2, end), index: start });
    i = end + 1;
  }
}

/** Escape every glob metacharacter so that `text` matches only itself. */
export function escapeGlob(text: string): string {
  return text.replace(/[\\*?[\]{}()!+@|]/g, '\\$&');
}

/** Escape every regular-expression metacharacter so that `text` matches only itself. */
export function escapeRegExp(text: string): string {
  // `-` and `/` stay as they are: escaping them is an error under the `u` flag.
  return text.replace(/[\\^$.*+?()[\]{}|]/g, '\\$&');
}

/**
 * Replace each `${name}` in `text` by `vars[name]`, escaped for where it lands
 * (`glob` for expect paths, `regex` for expect lines). A reference to an undefined
 * variable is left as written; the loader refuses such rule sets, so callers that
 * got their rules from `loadRuleSet` never meet one.
 */
export function substituteVars(text: string, vars: Readonly<Record<string, string>>, into: 'glob' | 'regex'): string {
  return text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (whole, name: string) => {
    const value = Object.hasOwn(vars, name) ? vars[name] : undefined;
    if (value === undefined) return whole;
    return into === 'glob' ? escapeGlob(value) : escapeRegExp(value);
  });
}
