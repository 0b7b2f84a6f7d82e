import { sortedJson } from '../../protocol/canonical.js';
import type { Report } from '../../protocol/finding.js';

/**
 * The `drift.report/v1` object as JSON: keys in canonical (code-unit sorted) order at
 * every depth, two-space indented, newline-terminated, so that equal reports print
 * equal bytes and diff well. `unread` is always included.
 */
export function formatJson(report: Report): string {
  return sortedJson(report);
}
