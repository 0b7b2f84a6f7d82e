import { createHash } from 'node:crypto';
import type { Digest } from './brand.js';

/**
 * Canonical JSON: object keys sorted by code unit, no insignificant whitespace,
 * `undefined` members dropped (in arrays they become `null`, as in JSON.stringify).
 * Equal values give equal bytes, so equal digests.
 *
 * Manifests hold hundreds of thousands of small objects, so the fast path copies
 * each object with its keys in sorted order and lets the native JSON.stringify write
 * the text. V8 orders integer-like keys ("0", "42") before all others whatever the
 * insertion order, so a value holding such a key is written by hand instead.
 */
export function canonicalJson(value: unknown): string {
  try {
    return JSON.stringify(sortedCopy(value));
  } catch (err) {
    if (!(err instanceof IntegerKey)) throw err;
    const parts: string[] = [];
    write(value, parts);
    return parts.join('');
  }
}

/**
 * JSON for people and files that diff well: the canonical key order at every depth,
 * two-space indented, newline-terminated (reports, stamps, `--format json`). Equal values
 * print equal bytes.
 */
export function sortedJson(value: unknown): string {
  try {
    return `${JSON.stringify(sortedCopy(value), null, 2)}\n`;
  } catch (err) {
    if (!(err instanceof IntegerKey)) throw err;
    const parts: string[] = [];
    write(value, parts, '  ', '');
    parts.push('\n');
    return parts.join('');
  }
}

/** `sha256:<hex>` of the canonical JSON of a value, hashed piece by piece (see canonicalPieces). */
export function digestOf(value: unknown): Digest {
  const hash = createHash('sha256');
  for (const piece of canonicalPieces(value)) hash.update(piece);
  return `sha256:${hash.digest('hex')}` as Digest;
}

/** Members above which an object or array is written member by member rather than copied whole. */
const SPLIT_MEMBERS = 64;
/** Levels below the top whose objects and arrays are always written member by member. */
const SPLIT_DEPTH = 3;
/** Characters gathered before a piece is handed out. */
const PIECE_CHARS = 64 * 1024;

/**
 * The canonical JSON of a value (the same text as canonicalJson), handed out in
 * pieces of about `pieceChars` characters, so that a manifest of a live host (over
 * 16 MiB of JSON) can be hashed, gzipped or written without holding its whole text,
 * nor a sorted copy of its hundreds of thousands of entries: the first levels and any
 * object or array of more than SPLIT_MEMBERS members are walked member by member,
 * anything else is written by canonicalJson at once. Do not change the value while iterating.
 */
export function* canonicalPieces(value: unknown, pieceChars: number = PIECE_CHARS): Generator<string, void, undefined> {
  const out: PieceBuffer = { parts: [], size: 0, limit: pieceChars };
  yield* splitPieces(value === undefined ? null : value, out, 0);
  if (out.parts.length > 0) yield out.parts.join('');
}

interface PieceBuffer { parts: string[]; size: number; limit: number }

/**
 * True when a value is written member by member: any object or array in the first
 * SPLIT_DEPTH levels (a manifest, a report body and their sections: a large value
 * hides below a few small ones), and any with more than SPLIT_MEMBERS members.
 */
function splits(value: unknown, depth: number): value is object {
  if (value === null || typeof value !== 'object') return false;
  if (depth < SPLIT_DEPTH) return true;
  if (Array.isArray(value)) return value.length > SPLIT_MEMBERS;
  // Counted without listing the keys: every entry of a manifest passes here.
  let n = 0;
  for (const k in value) {
    if (!Object.prototype.hasOwnProperty.call(value, k)) continue;
    if (++n > SPLIT_MEMBERS) return true;
  }
  return false;
}

/**
 * Write one value into `out`, yielding a piece whenever `out` holds `limit` characters.
 * Recursion only for the members that are split themselves (a manifest's sections): a
 * small member is written in place by canonicalJson, without a generator of its own.
 */
function* splitPieces(value: unknown, out: PieceBuffer, depth: number): Generator<string, void, undefined> {
  if (!splits(value, depth)) {
    const text = canonicalJson(value);
    out.parts.push(text);
    out.size += text.length;
    return;
  }
  const arr = Array.isArray(value) ? (value as readonly unknown[]) : null;
  const obj = value as Record<string, unknown>;
  const keys = arr ? null : Object.keys(obj).filter((k) => obj[k] !== undefined).sort();
  const count = arr ? arr.length : (keys as string[]).length;
  out.parts.push(arr ? '[' : '{');
  for (let i = 0; i < count; i++) {
    if (out.size >= out.limit) {
      yield out.parts.join('');
      out.parts = [];
      out.size = 0;
    }
    let member: unknown;
    if (arr) {
      member = arr[i];
      if (member === undefined) member = null;
      if (i > 0) out.parts.push(',');
    } else {
      const k = (keys as string[])[i] as string;
      const key = JSON.stringify(k);
      out.parts.push(i > 0 ? `,${key}:` : `${key}:`);
      out.size += key.length;
      member = obj[k];
    }
    if (splits(member, depth + 1)) {
      yield* splitPieces(member, out, depth + 1);
    } else {
      const text = canonicalJson(member);
      out.parts.push(text);
      out.size += text.length;
    }
  }
  out.parts.push(arr ? ']' : '}');
}

const INTEGER_KEY = /^(?:0|[1-9]\d*)$/;

class IntegerKey extends Error {}

function checkScalar(value: unknown): void {
  if (typeof value === 'number' && !Number.isFinite(value)) throw new TypeError('canonical JSON cannot hold a non-finite number');
  if (typeof value === 'bigint' || typeof value === 'function' || typeof value === 'symbol') throw new TypeError(`canonical JSON cannot hold a ${typeof value}`);
}

function sortedCopy(value: unknown): unknown {
  if (value === null || typeof value !== 'object') {
    checkScalar(value);
    return value;
  }
  if (Array.isArray(value)) {
    const out = new Array<unknown>(value.length);
    for (let i = 0; i < value.length; i++) out[i] = value[i] === undefined ? null : sortedCopy(value[i]);
    return out;
  }
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj).sort();
  const out: Record<string, unknown> = {};
  for (const k of keys) {
    const v = obj[k];
    if (v === undefined) continue;
    if (INTEGER_KEY.test(k)) throw new IntegerKey();
    out[k] = sortedCopy(v);
  }
  return out;
}

/** The slow path: the same output, written piece by piece (indented by `step` per level when given, as JSON.stringify does). */
function write(value: unknown, out: string[], step = '', indent = ''): void {
  if (value === null || typeof value !== 'object') {
    checkScalar(value);
    out.push(value === undefined ? 'null' : JSON.stringify(value));
    return;
  }
  if (Array.isArray(value)) {
    const inner = indent + step;
    out.push('[');
    for (let i = 0; i < value.length; i++) {
      if (i > 0) out.push(',');
      if (step) out.push('\n', inner);
      write(value[i] === undefined ? null : value[i], out, step, inner);
    }
    if (step && value.length > 0) out.push('\n', indent);
    out.push(']');
    return;
  }
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj).filter((k) => obj[k] !== undefined).sort();
  const inner = indent + step;
  out.push('{');
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i] as string;
    if (i > 0) out.push(',');
    if (step) out.push('\n', inner);
    out.push(JSON.stringify(k), step ? ': ' : ':');
    write(obj[k], out, step, inner);
  }
  if (step && keys.length > 0) out.push('\n', indent);
  out.push('}');
}
