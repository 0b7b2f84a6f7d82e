import { readFile } from 'node:fs/promises';
import type { z } from 'zod';
import { readCaFile, type ClientOptions } from '../transport/client.js';
import { DriftError, errnoOf } from '../protocol/errors.js';

/** Collect a repeatable option into a list (commander's custom processing). */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** Read and parse a JSON file against a schema; errors name the file and the first bad field. */
export async function readJsonFile<T>(path: string, schema: z.ZodType<T>, what: string): Promise<T> {
  let text: string;
  try { text = await readFile(path, 'utf8'); } catch (err) {
    throw new DriftError('DRIFT_ERR_IO', `cannot read ${what} ${path}: ${errnoOf(err)}`, { cause: err });
  }
  let data: unknown;
  try { data = JSON.parse(text); } catch (err) {
    throw new DriftError('DRIFT_ERR_MANIFEST', `${what} ${path} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  const parsed = schema.safeParse(data);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue && issue.path.length > 0 ? issue.path.join('.') : '(top level)';
    throw new DriftError('DRIFT_ERR_MANIFEST', `${what} ${path}: ${where}: ${issue?.message ?? 'invalid'}`);
  }
  return parsed.data;
}

/** The `--help` of the byte budgets, shared by every command that collects. */
export const BUDGET_HELP = {
  file: 'per-file byte budget: a larger file (or process image) is listed unread, not read, e.g. 4GiB (default 2GiB)',
  scan: 'per-collection byte budget of everything read; files past it are listed unread, e.g. 64GiB (default 32GiB)',
  after: `Budgets: a file's apparent size counts (a sparse file's holes are read as zeros), so
a 15 TiB sparse file is listed unread ("over the per-file byte budget: ... bytes (0
allocated, sparse)") at once instead of being hashed for hours; unchanged files answered
from the stat cache cost nothing.`,
} as const;
/** Client options of an operator command talking to a collector: `--ca-file` read once, with a clear error. */
export async function clientOptions(caFile: string | undefined): Promise<ClientOptions> {
  return caFile === undefined ? {} : { ca: await readCaFile(caFile) };
}
