import { formatJson } from './json.js';
import { formatJunit } from './junit.js';
import { formatMarkdown } from './markdown.js';
import { formatText } from './text.js';
import { formatPrometheus } from './prometheus.js';
import type { Report } from '../../protocol/finding.js';

/** The output formats of `drift scan` (`--format`). */
export const FORMATS = ['text', 'json', 'markdown', 'junit', 'prometheus'] as const;
export type FormatName = (typeof FORMATS)[number];

/** How to print: the format, and whether text may use ANSI colour (ignored by the others). */
export interface FormatOptions {
  format: FormatName;
  color: boolean;
  /** The scan time the prometheus format records (default: now). */
  now?: Date;
}

/** Print a report in one format; the result ends with a newline. */
export function format(report: Report, options: FormatOptions): string {
  switch (options.format) {
    case 'text': return formatText(report, options.color);
    case 'json': return formatJson(report);
    case 'markdown': return formatMarkdown(report);
    case 'junit': return formatJunit(report);
    case 'prometheus': return formatPrometheus(report, options.now);
    default: {
      const never: never = options.format;
      throw new TypeError(`unknown format ${String(never)}`);
    }
  }
}

/**
 * Whether to colour text output on a stream: only on a TTY, never when `NO_COLOR` is
 * set to a non-empty value (no-color.org), never on a `dumb` terminal.
 */
export function useColor(stream: { isTTY?: boolean }, env: Record<string, string | undefined>): boolean {
  if (stream.isTTY !== true) return false;
  if (env['NO_COLOR'] !== undefined && env['NO_COLOR'] !== '') return false;
  return env['TERM'] !== 'dumb';
}
