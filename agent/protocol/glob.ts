import picomatch from 'picomatch';

/**
 * The one glob dialect of rule files (rules/README.md, "Globs"): picomatch with
 * `dot: true` (a `*` matches dotfiles too), `*` stays within one folder, `**`
 * crosses folders, `{a,b}` alternates, `[abc]` is a class, `!(x)` and friends are
 * extglobs. The rule loader, the files collector and the compare engine all
 * compile rule globs through here, so they cannot disagree on what a glob matches.
 *
 * `flags: 's'` makes every wildcard match line terminators too: a file system
 * name may hold a newline, CR, U+2028 or U+2029 (`/etc/sudoers.d/$'evil\n'`), and
 * a glob that cannot match such a name would neither record nor report it.
 */
export const GLOB_OPTIONS = { dot: true, flags: 's' } as const;

/** A compiled glob: true when `subject` (a path or a name) matches it. */
export type GlobMatcher = (subject: string) => boolean;

/**
 * `/**` at the end of a brace alternative (`/etc/{sudoers,sudoers.d/**}`) matches
 * the folder itself, as a trailing `/**` does outside braces (`/etc/**` matches
 * `/etc`): picomatch matches only what lies below it there, so a new
 * `/etc/sudoers.d` folder would escape a policy rule written for it. Rewritten
 * as `{,/**}`, which picomatch reads as "the folder, or anything below it".
 */
export function normaliseGlob(glob: string): string {
  if (!glob.includes('/**')) return glob;
  let out = '';
  let depth = 0;
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i] as string;
    if (c === '\\') { out += glob.slice(i, i + 2); i++; continue; }
    if (c === '{') depth++;
    else if (c === '}') depth = Math.max(0, depth - 1);
    if (depth > 0 && glob.startsWith('/**', i) && (glob[i + 3] === ',' || glob[i + 3] === '}')) {
      out += '{,/**}';
      i += 2;
      continue;
    }
    out += c;
  }
  return out;
}

/**
 * Compile `glob` in the rule dialect. With `strictBrackets`, a glob with unbalanced
 * brackets, braces or parentheses throws (picomatch otherwise reads them as literal
 * characters); without it, it never throws for such a glob.
 */
export function globMatcher(glob: string, strictBrackets = false): GlobMatcher {
  return picomatch(normaliseGlob(glob), strictBrackets ? { ...GLOB_OPTIONS, strictBrackets: true } : GLOB_OPTIONS);
}
