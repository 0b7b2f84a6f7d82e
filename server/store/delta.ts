import { canonicalJson } from '../../agent/protocol/canonical.js';

/**
 * A section stored as its difference to a base section: the entries whose value
 * differs or is new (`set`) and the keys the base has and the section lacks (`del`).
 */
export interface SectionDelta {
  set: Record<string, unknown>;
  del: string[];
}

/** The delta that turns `base` into `section` (pure; entries compared by canonical JSON). */
export function sectionDelta(base: Record<string, unknown>, section: Record<string, unknown>): SectionDelta {
  const set: Record<string, unknown> = {};
  for (const [key, entry] of Object.entries(section)) {
    const was = base[key];
    if (was === undefined || canonicalJson(was) !== canonicalJson(entry)) set[key] = entry;
  }
  const del = Object.keys(base).filter((key) => !Object.hasOwn(section, key)).sort();
  return { set, del };
}

/** Apply a delta to its base section, giving back the section (pure; `base` is not changed). */
export function applyDelta(base: Record<string, unknown>, delta: SectionDelta): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const key of delta.del) delete out[key];
  for (const [key, entry] of Object.entries(delta.set)) out[key] = entry;
  return out;
}
