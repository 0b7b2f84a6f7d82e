import { DriftError } from './protocol/errors.js';

/**
 * Durations and sizes as people write them in flags and config files, one parser each
 * for the agent and the collector.
 *
 * - Durations: `250ms`, `30s`, `5m`, `1h`, `2d` and sums of them (`1h30m`); a bare
 *   number is seconds.
 * - Sizes are binary: `K`, `KB` and `KiB` all mean 1024 bytes, `M`/`MB`/`MiB` 1024², `G`/`GB`/`GiB`
 *   1024³, `T`/`TB`/`TiB` 1024⁴ (case does not matter); a bare number is bytes. `512M` is 536,870,912 bytes everywhere.
 */

const MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const BYTES: Record<string, number> = {
  '': 1, b: 1, k: 1024, kb: 1024, kib: 1024, m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gb: 1024 ** 3, gib: 1024 ** 3, t: 1024 ** 4, tb: 1024 ** 4, tib: 1024 ** 4,
};
/** Longer input is not a duration or a size, whatever it holds. */
const MAX_TEXT = 64;

/** Milliseconds, or null when `text` is not a duration. */
export function parseDuration(text: string): number | null {
  const t = text.trim();
  if (t.length === 0 || t.length > MAX_TEXT) return null;
  if (/^\d+(\.\d+)?$/.test(t)) return Math.round(Number(t) * 1000);
  const re = /(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*/gy;
  let total = 0;
  let end = 0;
  for (let m = re.exec(t); m; m = re.exec(t)) {
    total += Number(m[1]) * (MS[m[2] as string] as number);
    end = re.lastIndex;
  }
  const ms = Math.round(total);
  return end === t.length && Number.isSafeInteger(ms) ? ms : null;
}

/** Bytes, or null when `text` is not a whole number of bytes with an optional binary unit. */
export function parseSize(text: string): number | null {
  const t = text.trim();
  if (t.length > MAX_TEXT) return null;
  const m = /^(\d+)\s*([a-zA-Z]*)$/.exec(t);
  const unit = BYTES[(m?.[2] ?? '').toLowerCase()];
  if (!m || unit === undefined) return null;
  const n = Number(m[1]) * unit;
  return Number.isSafeInteger(n) ? n : null;
}

/** A duration flag or setting: milliseconds, at least `min`; DRIFT_ERR_USAGE naming `option` otherwise. */
export function durationOption(text: string, option: string, min = 1): number {
  const ms = parseDuration(text);
  if (ms === null) throw new DriftError('DRIFT_ERR_USAGE', `${option} must be a duration like 90s, 15m, 12h or 30d (got ${JSON.stringify(text)})`);
  if (ms < min) throw new DriftError('DRIFT_ERR_USAGE', `${option} must be ${min <= 1 ? 'longer than 0' : `at least ${min} ms`} (got ${JSON.stringify(text)})`);
  return ms;
}

/** A size flag or setting: bytes, at least 1; DRIFT_ERR_USAGE naming `option` otherwise. */
export function sizeOption(text: string, option: string): number {
  const n = parseSize(text);
  if (n === null || n < 1) throw new DriftError('DRIFT_ERR_USAGE', `${option} must be a size in bytes like 16777216, 512KiB or 16MiB (got ${JSON.stringify(text)})`);
  return n;
}
