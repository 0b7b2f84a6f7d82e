import { isDeepStrictEqual } from 'node:util';
import { canonicalJson } from '../../agent/protocol/canonical.js';

/**
 * A section stored as its difference to a base section: the entries whose value
 * differs or is new (`set`) and the keys the base has and the section lacks (`del`).
 */
export interface SectionDelta {
  set: Record<string, unknown>;
  del: string[];
}

/**
 * The delta that turns `base` into `section` (pure; entries compared by value, as
 * canonical JSON would: a native deep equality first, which settles nearly every
 * entry of a report against its baseline without building two strings; canonical
 * JSON only for the entries it finds unequal). `set` holds every key that differs as
 * an own property, `__proto__` included (JSON.parse makes it one): the collector
 * schema-checks a report's section by its delta.
 */
export function sectionDelta(base: Record<string, unknown>, section: Record<string, unknown>): SectionDelta {
  const set: Array<[string, unknown]> = [];
  for (const [key, entry] of Object.entries(section)) {
    const was = Object.hasOwn(base, key) ? base[key] : undefined;
    if (was === undefined || !(isDeepStrictEqual(was, entry) || canonicalJson(was) === canonicalJson(entry))) set.push([key, entry]);
  }
  const del = Object.keys(base).filter((key) => !Object.hasOwn(section, key)).sort();
  return { set: Object.fromEntries(set), del };
}

/** Apply a delta to its base section, giving back the section (pure; `base` is not changed). */
export function applyDelta(base: Record<string, unknown>, delta: SectionDelta): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const key of delta.del) delete out[key];
  for (const [key, entry] of Object.entries(delta.set)) out[key] = entry;
  return out;
}
