import { createHash } from 'node:crypto';
import { SECTIONS, type SectionName } from '../../agent/protocol/manifest.js';

/** A canonical section the collector holds (a baseline's): its byte length and sha256 hex. */
export interface KnownSection {
  length: number;
  sha256: string;
}

/**
 * Where the sections of a report's manifest sit in the raw body bytes, so that the
 * collector can hash a section without parsing it: a clean host's section is byte
 * for byte its baseline's (canonical JSON), and then one sha256 over the raw bytes
 * replaces JSON.parse, schema check and digest recompute of ~3,000 entries.
 */
export interface LocatedSections {
  /** The body with each located section replaced by `0` (small; parse this). */
  rest: Buffer;
  /** The raw bytes of each section of `manifest`. */
  sections: Map<SectionName, Buffer>;
  /** The sections whose bytes are a known canonical section (sha256 equal): valid JSON of known depth. */
  canonical: Set<SectionName>;
}

/** What the locator did: bytes hashed against known sections, and a key it met twice. */
export interface LocateStats {
  hashedBytes: number;
  /** `manifest` or `manifest.<section>` when the body names it twice (no agent does). */
  twice?: string;
}

const WS = new Set([0x20, 0x0a, 0x0d, 0x09]);
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * Find `manifest.{packages,files,processes,ports}` in a report body (UTF-8 JSON
 * bytes; multi-byte characters never collide with JSON's ASCII structure). Returns
 * null when the body is not shaped as expected (then the caller parses it whole):
 * not an object, no manifest object, a key written with escapes or a section key
 * given twice. Never throws; the rest is JSON-parsed by the caller, which catches
 * any malformation the scan let through.
 */
export function locateManifestSections(buf: Buffer, known: readonly KnownSection[] = [], stats: LocateStats = { hashedBytes: 0 }): LocatedSections | null {
  const n = buf.length;
  // Known sections by byte length: the files sections of two builds of an image (or of
  // two images of one shape) are often equally long, and one hash answers for all of them.
  const byLength = new Map<number, Set<string>>();
  for (const k of known) {
    const set = byLength.get(k.length);
    if (set) set.add(k.sha256);
    else byLength.set(k.length, new Set([k.sha256]));
  }
  /**
   * End of a section value that is byte for byte a known canonical section, else -1.
   * Sound without scanning: bytes whose sha256 is a known canonical section's digest
   * are that complete JSON value. Each candidate length is hashed once, and the bytes
   * hashed in all tries stay below the body's length (a body naming many sections, or
   * sections of many lengths, costs no more than one pass): past that budget the
   * section is scanned instead.
   */
  const knownEnd = (i: number): number => {
    for (const [length, digests] of byLength) {
      const e = i + length;
      if (e >= n || buf[e - 1] !== 0x7d || (buf[e] !== 0x2c && buf[e] !== 0x7d && !WS.has(buf[e] as number))) continue;
      if (stats.hashedBytes + length > n) return -1;
      stats.hashedBytes += length;
      if (digests.has(createHash('sha256').update(buf.subarray(i, e)).digest('hex'))) return e;
    }
    return -1;
  };
  const ws = (i: number): number => { while (i < n && WS.has(buf[i] as number)) i++; return i; };
  const str = (i: number): number => {
    // buf[i] is the opening quote; returns the index after the closing one, or -1.
    for (let j = i + 1; j < n; j++) {
      const c = buf[j];
      if (c === BACKSLASH) j++;
      else if (c === QUOTE) return j + 1;
    }
    return -1;
  };
  const value = (i: number): number => {
    const c = buf[i];
    if (c === QUOTE) return str(i);
    if (c === 0x7b || c === 0x5b) {
      let depth = 0;
      for (let j = i; j < n; j++) {
        const d = buf[j];
        if (d === QUOTE) { j = str(j) - 1; if (j < 0) return -1; }
        else if (d === 0x7b || d === 0x5b) depth++;
        else if (d === 0x7d || d === 0x5d) { if (--depth === 0) return j + 1; }
      }
      return -1;
    }
    let j = i;
    while (j < n && buf[j] !== 0x2c && buf[j] !== 0x7d && buf[j] !== 0x5d && !WS.has(buf[j] as number)) j++;
    return j > i ? j : -1;
  };
  /** Walk an object's members; `visit` gets the raw key and the value span. */
  const members = (i: number, inManifest: boolean, visit: (key: string, start: number, end: number) => boolean): number => {
    if (buf[i] !== 0x7b) return -1;
    i = ws(i + 1);
    if (buf[i] === 0x7d) return i + 1;
    for (;;) {
      if (buf[i] !== QUOTE) return -1;
      const kEnd = str(i);
      if (kEnd < 0) return -1;
      const key = buf.toString('latin1', i + 1, kEnd - 1);
      if (key.includes('\\')) return -1;
      i = ws(kEnd);
      if (buf[i] !== 0x3a) return -1;
      const vStart = ws(i + 1);
      let vEnd = -1;
      if (inManifest && known.length > 0 && (SECTIONS as readonly string[]).includes(key)) lastKnownEnd = vEnd = knownEnd(vStart);
      // The manifest is walked member by member (not skipped whole first), so its big sections are scanned at most once.
      else if (!inManifest && key === 'manifest') vEnd = manifest(vStart);
      if (vEnd < 0) vEnd = value(vStart);
      if (vEnd < 0 || !visit(key, vStart, vEnd)) return -1;
      i = ws(vEnd);
      if (buf[i] === 0x2c) { i = ws(i + 1); continue; }
      if (buf[i] === 0x7d) return i + 1;
      return -1;
    }
  };
  const spans: [SectionName, number, number][] = [];
  const canonical = new Set<SectionName>();
  let lastKnownEnd = -1;
  let manifests = 0;
  let broken = false;
  function manifest(start: number): number {
    // A second manifest key makes the body ambiguous: stop here, before walking it.
    if (++manifests > 1) { broken = true; stats.twice = 'manifest'; return -1; }
    const e = members(start, true, (k, s, e) => {
      if (!(SECTIONS as readonly string[]).includes(k)) return true;
      if (spans.some(([name]) => name === k)) { stats.twice = `manifest.${k}`; return false; }
      spans.push([k as SectionName, s, e]);
      if (e === lastKnownEnd) canonical.add(k as SectionName);
      return true;
    });
    if (e < 0) broken = true;
    return e;
  }
  const end = members(ws(0), false, () => !broken);
  if (end < 0 || broken || manifests !== 1 || spans.length === 0) return null;
  const parts: Buffer[] = [];
  const sections = new Map<SectionName, Buffer>();
  let at = 0;
  for (const [name, s, e] of spans) {
    parts.push(buf.subarray(at, s), Buffer.from('0'));
    sections.set(name, buf.subarray(s, e));
    at = e;
  }
  parts.push(buf.subarray(at));
  return { rest: Buffer.concat(parts), sections, canonical };
}

/**
 * Deepest nesting a request body may have. The protocol needs 5 (report → manifest →
 * files → entry, an unread list's entry); anything deeper is refused before
 * JSON.parse, whose cost and memory grow with depth (30 million brackets in a
 * 58 KB gzip cost seconds and gigabytes).
 */
export const MAX_JSON_DEPTH = 16;

/** Bytes checked per turn of the event loop by `jsonDepthExceeded`: ~1 ms of work. */
const DEPTH_SLICE = 1 << 20;

/** Nesting state of a depth scan, carried from one slice to the next. */
interface DepthScan { depth: number; inString: boolean; i: number }

/** Scan `buf` from `s.i` to `end`; the index where nesting goes deeper than `max`, or -1. */
function scanDepth(buf: Buffer, s: DepthScan, end: number, max: number): number {
  let { depth, inString, i } = s;
  for (; i < end; i++) {
    const c = buf[i] as number;
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
    } else if (c === QUOTE) inString = true;
    else if (c === 0x7b || c === 0x5b) { if (++depth > max) return i; }
    else if (c === 0x7d || c === 0x5d) depth--;
  }
  s.depth = depth; s.inString = inString; s.i = i;
  return -1;
}

/**
 * The index of the first byte of `buf` where JSON nesting (outside strings) goes
 * deeper than `max`, or -1. One linear pass whatever the content; it yields to the
 * event loop every DEPTH_SLICE bytes, so a large body does not hold other requests
 * (or /healthz) for the whole scan.
 */
export async function jsonDepthExceeded(buf: Buffer, max: number = MAX_JSON_DEPTH): Promise<number> {
  const s: DepthScan = { depth: 0, inString: false, i: 0 };
  while (s.i < buf.length) {
    if (s.i > 0) await new Promise<void>((resolve) => setImmediate(resolve));
    const at = scanDepth(buf, s, Math.min(buf.length, s.i + DEPTH_SLICE), max);
    if (at >= 0) return at;
  }
  return -1;
}

/** jsonDepthExceeded in one pass, for a report worker (which has no other requests to serve). */
export function jsonDepthExceededSync(buf: Buffer, max: number = MAX_JSON_DEPTH): number {
  return scanDepth(buf, { depth: 0, inString: false, i: 0 }, buf.length, max);
}
