import { createTwoFilesPatch, diffLines, FILE_HEADERS_ONLY } from 'diff';

/**
 * Line diffs of recorded file content, bounded. A line diff costs the product of the
 * texts' line count and the number of edits: two 32 KiB contents of distinct short
 * lines (8,000 lines each) take about half a minute. Past MAX_DIFF_EDITS added plus
 * removed lines the diff gives up (a count, not a clock, so every machine answers the
 * same) and the texts are compared as whole lines instead: a multiset difference for
 * the lines an expect rule judges, a whole replacement for the patch shown.
 */
export const MAX_DIFF_EDITS = 1000;

/** A text ending with a newline (a missing newline at the end is not a line change). */
const nl = (s: string): string => (s === '' || s.endsWith('\n') ? s : `${s}\n`);

/** Lines of a text, without the empty piece after its last newline. */
function linesOf(s: string): string[] {
  if (s === '') return [];
  const lines = s.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}

/**
 * Lines added and removed between two texts: a line diff, so a moved line counts;
 * past MAX_DIFF_EDITS, the lines of each text the other lacks (counted, so a
 * duplicated line is one added), which does not see moves.
 */
export function lineChanges(before: string, after: string): { added: string[]; removed: string[] } {
  const added: string[] = [];
  const removed: string[] = [];
  const parts = diffLines(nl(before), nl(after), { maxEditLength: MAX_DIFF_EDITS });
  if (parts === undefined) {
    const left = new Map<string, number>();
    for (const line of linesOf(before)) left.set(line, (left.get(line) ?? 0) + 1);
    for (const line of linesOf(after)) {
      const n = left.get(line) ?? 0;
      if (n > 0) left.set(line, n - 1);
      else added.push(line);
    }
    for (const line of linesOf(before)) {
      const n = left.get(line) ?? 0;
      if (n > 0) { removed.push(line); left.set(line, n - 1); }
    }
    return { added, removed };
  }
  for (const part of parts) {
    if (!part.added && !part.removed) continue;
    (part.added ? added : removed).push(...linesOf(part.value));
  }
  return { added, removed };
}

/**
 * The unified diff of two texts under the given names (`/dev/null` for an absent
 * side); past MAX_DIFF_EDITS, one hunk that removes every line and adds every line.
 */
export function contentPatch(oldName: string, newName: string, before: string, after: string): string {
  const patch = createTwoFilesPatch(oldName, newName, before, after, undefined, undefined, { headerOptions: FILE_HEADERS_ONLY, maxEditLength: MAX_DIFF_EDITS });
  if (patch !== undefined) return patch;
  const side = (text: string, sign: '-' | '+'): { n: number; body: string } => {
    const lines = linesOf(text);
    const body = lines.map((l) => `${sign}${l}\n`).join('');
    return { n: lines.length, body: text === '' || text.endsWith('\n') ? body : `${body}\\ No newline at end of file\n` };
  };
  const b = side(before, '-');
  const a = side(after, '+');
  const range = (n: number): string => (n === 0 ? '0,0' : `1,${n}`);
  return `--- ${oldName}\n+++ ${newName}\n@@ -${range(b.n)} +${range(a.n)} @@\n${b.body}${a.body}`;
}
