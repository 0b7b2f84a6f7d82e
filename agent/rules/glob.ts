import picomatch from 'picomatch';
import { GLOB_OPTIONS, globMatcher, type GlobMatcher } from '../protocol/glob.js';
import { expandGlob } from '../glob.js';

// The dialect itself (options, matcher type) lives in agent/protocol/glob.ts, shared with the compare engine.
export { GLOB_OPTIONS, type GlobMatcher };

/**
 * Compile a glob that `globProblem` accepted. Throws for a glob with unbalanced
 * brackets, braces or parentheses, so validate user input with `globProblem` first.
 */
export function compileGlob(glob: string): GlobMatcher {
  return globMatcher(glob, true);
}

/**
 * Why `glob` is not a valid rule glob, or null when it is. picomatch itself reads
 * an unclosed `[` or `{` as a literal character, which in a rule file is nearly
 * always a typo, so this refuses it; it also refuses a `|` outside parentheses,
 * which picomatch would silently turn into an alternation of the whole pattern.
 */
export function globProblem(glob: string): string | null {
  if (glob.endsWith('\\') && !glob.endsWith('\\\\')) return 'ends with a lone backslash';
  let depth = 0;
  let inClass = false;
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === '\\') { i++; continue; }
    if (inClass) {
      if (c === ']') inClass = false;
      continue;
    }
    if (c === '[') {
      inClass = true;
      // `[]abc]` and `[!]abc]`: a `]` right after the opening is a member, not the end.
      if (glob[i + 1] === '!' || glob[i + 1] === '^') i++;
      if (glob[i + 1] === ']') i++;
      continue;
    }
    if (c === '(') depth++;
    else if (c === ')') depth = Math.max(0, depth - 1);
    else if (c === '|' && depth === 0) {
      return '"|" outside parentheses is not allowed (use {a,b} for alternatives, [|] for a literal |)';
    }
  }
  try {
    picomatch.makeRe(glob, { ...GLOB_OPTIONS, strictBrackets: true });
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    const m = /Missing (opening|closing): "(.)"/.exec(msg);
    if (m) return m[1] === 'closing' ? `unclosed "${closerOf(m[2] ?? '')}"` : `"${m[2] ?? ''}" without its opening bracket`;
    return msg;
  }
  return null;
}

function closerOf(closing: string): string {
  return closing === ']' ? '[' : closing === '}' ? '{' : closing === ')' ? '(' : closing;
}

/**
 * What a glob that drops findings covers when that is everything, or everything
 * under a top-level folder: `"every path"`, `"everything under /usr"`, `"every
 * package"`; null for a narrower glob. Decided by probing the compiled glob with
 * names no real rule would spell out, so that every way of writing "all" (`/**`,
 * `/*\/**`, `/{usr,etc}/**`, `**`) is caught, not only the literal ones.
 */
export function broadness(subject: 'path' | 'process' | 'package' | 'port', glob: string): string | null {
  if (globProblem(glob) !== null) return null;
  const m = globMatcher(glob);
  const probe = 'drift-broad-probe';
  switch (subject) {
    case 'path': {
      // Every path below the top-level folders is "every path" (`/*/**` leaves out only the folders themselves).
      if (m(`/${probe}/a`) && m(`/${probe}/a/b`)) return 'every path';
      const tops = new Set<string>();
      for (const b of basesOf(glob)) {
        const top = b.split('/')[1];
        if (top) tops.add(`/${top}`);
      }
      const covered = [...tops].filter((t) => m(`${t}/${probe}`) && m(`${t}/${probe}/a/b`));
      return covered.length > 0 ? `everything under ${covered.sort().join(', ')}` : null;
    }
    case 'process':
      return m(`/usr/sbin/${probe}`) && m(`/tmp/${probe}/x`) ? 'every process' : null;
    case 'package':
      return m(probe) && m(`lib${probe}2`) ? 'every package' : null;
    case 'port':
      return m('tcp:0.0.0.0:1') && m('udp6:[::]:65535') ? 'every port' : null;
    default: {
      const never: never = subject;
      throw new TypeError(`unknown subject ${String(never)}`);
    }
  }
}

/** The literal leading folders of a path glob, after simple brace expansion (`/{a,b}/x*` → /a, /b). */
function basesOf(glob: string): string[] {
  const out: string[] = [];
  for (const g of expandGlob(glob)) {
    const lead = g.split('/').slice(1, 2)[0] ?? '';
    out.push(/[*?[\]()!+@{}\\]/.test(lead) || lead === '' ? '/' : `/${lead}`);
  }
  return out;
}
