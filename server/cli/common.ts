import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import type { z } from 'zod';
import { DriftError, errnoOf } from '../../agent/protocol/errors.js';

/** Collect a repeatable option into a list (commander's custom processing). */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/**
 * The default state folder: $DRIFT_STATE_DIR, else /var/lib/drift for root,
 * else ~/.local/state/drift. Holds the stat cache, node key and spool.
 */
export function defaultStateDir(): string {
  const env = process.env['DRIFT_STATE_DIR'];
  if (env) return resolve(env);
  if (process.getuid?.() === 0) return '/var/lib/drift';
  return join(homedir(), '.local', 'state', 'drift');
}

/**
 * What `--root` and `--proc` mean together: the live host (`/`) reads /proc unless
 * told otherwise; any other root reads no live state unless `--proc` is given.
 */
export function resolveRootAndProc(root: string | undefined, proc: string | undefined): { root: string; proc: string | null } {
  const r = resolve(root ?? '/');
  if (proc !== undefined) return { root: r, proc: resolve(proc) };
  return { root: r, proc: r === '/' ? '/proc' : null };
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

/** Parse a duration such as `300ms`, `30s`, `5m`, `2h`, `30d` into milliseconds. */
export function parseDuration(text: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(text.trim());
  if (!m) throw new DriftError('DRIFT_ERR_USAGE', `${flag}: "${text}" is not a duration (use e.g. 30s, 5m, 2h, 30d)`);
  const n = Number(m[1]);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 'ms' | 's' | 'm' | 'h' | 'd'];
  return n * unit;
}
