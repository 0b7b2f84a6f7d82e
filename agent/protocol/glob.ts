import picomatch from 'picomatch';

/**
 * The one glob dialect of rule files (rules/README.md, "Globs"): picomatch with
 * `dot: true` (a `*` matches dotfiles too), `*` stays within one folder, `**`
 * crosses folders, `{a,b}` alternates, `[abc]` is a class, `!(x)` and friends are
 * extglobs. The rule loader, the files collector and the compare engine all
 * compile rule globs through here, so they cannot disagree on what a glob matches.
 */
export const GLOB_OPTIONS = { dot: true } as const;

/** A compiled glob: true when `subject` (a path or a name) matches it. */
export type GlobMatcher = (subject: string) => boolean;

/**
 * Compile `glob` in the rule dialect. With `strictBrackets`, a glob with unbalanced
 * brackets, braces or parentheses throws (picomatch otherwise reads them as literal
 * characters); without it, it never throws for such a glob.
 */
export function globMatcher(glob: string, strictBrackets = false): GlobMatcher {
  return picomatch(glob, strictBrackets ? { ...GLOB_OPTIONS, strictBrackets: true } : GLOB_OPTIONS);
}
