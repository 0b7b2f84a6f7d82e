import type { Report } from '../../protocol/finding.js';

/**
 * The `drift.report/v1` object as JSON: keys in canonical (code-unit sorted) order at
 * every depth, two-space indented, newline-terminated, so that equal reports print
 * equal bytes and diff well. `unread` is always included.
 */
export function formatJson(report: Report): string {
  return sortedJson(report);
}

/** Any value as drift prints JSON: keys sorted at every depth, two-space indented, newline-terminated. */
export function sortedJson(value: unknown): string {
  return `${JSON.stringify(sortKeys(value), null, 2)}\n`;
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    const sorted: Record<string, unknown> = {};
    for (const key of Object.keys(obj).sort()) {
      if (obj[key] !== undefined) sorted[key] = sortKeys(obj[key]);
    }
    return sorted;
  }
  return value;
}
