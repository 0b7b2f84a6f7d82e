/**
 * Escaping host strings for a terminal. This module imports nothing: the CLI's entry and its
 * error path use it before any command module (zod, the collectors) is loaded.
 */

/**
 * Characters that a terminal or a Markdown viewer would act on rather than show:
 * C0 controls (ESC starts the sequences that clear a screen or retitle a window),
 * DEL, C1 controls (U+009B is a one-character CSI), the bidi controls that reorder
 * what follows (U+202A–U+202E, U+2066–U+2069, U+200E, U+200F, U+061C) and the
 * Unicode line and paragraph separators.
 */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const UNSAFE_BUT_TAB = /[\u0000-\u0008\u000a-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

function escapeUnsafe(c: string): string {
  switch (c) {
    case '\n': return '\\n';
    case '\r': return '\\r';
    case '\t': return '\\t';
    default: {
      const n = c.charCodeAt(0);
      return n < 0x100 ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u${n.toString(16).padStart(4, '0')}`;
    }
  }
}

/**
 * A string from a host (a path, a hostname, file content in a diff, an unread
 * reason, a rule file name) made safe to print for a person: every character of
 * UNSAFE shown as `\n`, `\r`, `\t`, `\xNN` (up to U+00FF) or `\uNNNN`, so `ESC[2J` in a file name
 * prints as `\x1b[2J` instead of clearing the findings above it. `keepTab`: leave
 * tabs as they are (diff lines, where a tab is content and harmless).
 */
export function visible(s: string, keepTab = false): string {
  return s.replace(keepTab ? UNSAFE_BUT_TAB : UNSAFE, escapeUnsafe);
}

/** `visible` for a text of several lines (an error message, a command's output): each line escaped, the line breaks kept. */
export function visibleLines(s: string): string {
  return s.split('\n').map((line) => visible(line)).join('\n');
}
