import { digestOf } from './canonical.js';
import { SECTIONS, type Digests, type SectionName, type Sections } from './manifest.js';

/**
 * Section digests plus a root digest over them; a section that is absent was not
 * collected and has no digest. `sectionDigest` must give what `digestOf` gives (the
 * collector passes a faster one for sections that arrive already canonical).
 */
export function computeDigests(sections: { [K in keyof Sections]?: Sections[K] | undefined }, sectionDigest: (section: unknown) => string = digestOf): Digests {
  const parts: Partial<Record<SectionName, string>> = {};
  for (const name of SECTIONS) {
    const section = sections[name];
    if (section !== undefined) parts[name] = sectionDigest(section);
  }
  return { root: digestOf(parts), ...parts } as Digests;
}

/** True when two digest sets name the same state, section by section. */
export function sameDigests(a: Digests, b: Digests): boolean {
  return a.root === b.root && SECTIONS.every((s) => a[s] === b[s]);
}

