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
/** Characters gathered before a piece is handed out. */
const PIECE_CHARS = 64 * 1024;

/**
 * The canonical JSON of a value (the same text as canonicalJson), handed out in
 * pieces of about `pieceChars` characters, so that a manifest of a live host (over
 * 16 MiB of JSON) can be hashed, gzipped or written without holding its whole text,
 * nor a sorted copy of its hundreds of thousands of entries: an object or array of
 * more than SPLIT_MEMBERS members is walked member by member, anything smaller is
 * written by canonicalJson at once. Do not change the value while iterating.
 */
export function* canonicalPieces(value: unknown, pieceChars: number = PIECE_CHARS): Generator<string, void, undefined> {
  let parts: string[] = [];
  let size = 0;
  // An explicit stack instead of recursion: a deeply nested value cannot overflow the call stack here.
  type Frame = { kind: 'object'; obj: Record<string, unknown>; keys: string[]; i: number } | { kind: 'array'; arr: readonly unknown[]; i: number };
  const stack: Frame[] = [];
  const open = (v: unknown): void => {
    if (v !== null && typeof v === 'object') {
      if (Array.isArray(v) && v.length > SPLIT_MEMBERS) {
        parts.push('[');
        stack.push({ kind: 'array', arr: v, i: 0 });
        return;
      }
      if (!Array.isArray(v)) {
        const obj = v as Record<string, unknown>;
        const keys = Object.keys(obj);
        if (keys.length > SPLIT_MEMBERS) {
          parts.push('{');
          stack.push({ kind: 'object', obj, keys: keys.filter((k) => obj[k] !== undefined).sort(), i: 0 });
          return;
        }
      }
    }
    const text = canonicalJson(v);
    parts.push(text);
    size += text.length;
  };
  open(value === undefined ? null : value);
  while (stack.length > 0) {
    if (size >= pieceChars) {
      yield parts.join('');
      parts = [];
      size = 0;
    }
    const top = stack[stack.length - 1] as Frame;
    if (top.kind === 'array') {
      if (top.i >= top.arr.length) { parts.push(']'); stack.pop(); continue; }
      if (top.i > 0) parts.push(',');
      const v = top.arr[top.i++];
      open(v === undefined ? null : v);
    } else {
      if (top.i >= top.keys.length) { parts.push('}'); stack.pop(); continue; }
      const k = top.keys[top.i++] as string;
      const key = JSON.stringify(k);
      parts.push(top.i > 1 ? `,${key}:` : `${key}:`);
      size += key.length;
      open(top.obj[k]);
    }
  }
  if (parts.length > 0) yield parts.join('');
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
