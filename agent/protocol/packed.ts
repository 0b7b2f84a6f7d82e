import { canonicalJson } from './canonical.js';

/**
 * A large section of a manifest (a baseline's 80,000 file entries) held compactly:
 * each entry as its canonical JSON text instead of an object, about a third of the
 * heap. Two entries are equal exactly when their canonical texts are, so a collected
 * entry is compared with `same` without building the packed one; `entry` parses one
 * back when it differs. Keys keep the order they were added in.
 */
export class PackedSection<T> {
  private readonly texts = new Map<string, string>();

  /** Entries held. */
  get size(): number {
    return this.texts.size;
  }

  /** Hold `text`, the canonical JSON of an entry already checked against its schema, under `key` (a later one replaces it, as in JSON). */
  setText(key: string, text: string): void {
    this.texts.set(key, text);
  }

  /** Hold an entry (checked against its schema) under `key`. */
  set(key: string, entry: T): void {
    this.texts.set(key, canonicalJson(entry));
  }

  has(key: string): boolean {
    return this.texts.has(key);
  }

  /** The canonical JSON of the entry under `key`. */
  text(key: string): string | undefined {
    return this.texts.get(key);
  }

  /** The entry under `key`, parsed from its text (a new object at every call). */
  entry(key: string): T | undefined {
    const text = this.texts.get(key);
    return text === undefined ? undefined : (JSON.parse(text) as T);
  }

  /** True when `entry` is the entry held under `key` (equal canonical JSON). */
  same(key: string, entry: T): boolean {
    const text = this.texts.get(key);
    return text !== undefined && text === canonicalJson(entry);
  }

  keys(): IterableIterator<string> {
    return this.texts.keys();
  }

  /**
   * The canonical JSON of the section as one object (keys sorted by code unit, as
   * canonicalJson sorts them), in pieces of about `pieceChars` characters.
   */
  *pieces(pieceChars: number = 64 * 1024): Generator<string, void, undefined> {
    const keys = [...this.texts.keys()].sort();
    let parts: string[] = ['{'];
    let size = 1;
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i] as string;
      const member = `${i > 0 ? ',' : ''}${JSON.stringify(key)}:${this.texts.get(key) as string}`;
      parts.push(member);
      size += member.length;
      if (size >= pieceChars) {
        yield parts.join('');
        parts = [];
        size = 0;
      }
    }
    parts.push('}');
    yield parts.join('');
  }
}

/** A member of a JSON object found in its bytes: the key's text and where its value lies. */
export interface JsonMember {
  key: string;
  /** Offset of the value's first byte. */
  start: number;
  /** Offset just past the value's last byte. */
  end: number;
}

/** Thrown by jsonMembers on bytes that are not one JSON object (the caller falls back on JSON.parse, which says why). */
export class NotJsonObject extends Error {}

const SPACE = 0x20, TAB = 0x09, LF = 0x0a, CR = 0x0d;
const QUOTE = 0x22, BACKSLASH = 0x5c, COMMA = 0x2c, COLON = 0x3a;
const OPEN_OBJECT = 0x7b, CLOSE_OBJECT = 0x7d, OPEN_ARRAY = 0x5b, CLOSE_ARRAY = 0x5d;

function isSpace(c: number | undefined): boolean {
  return c === SPACE || c === LF || c === CR || c === TAB;
}

function skipSpace(buf: Uint8Array, i: number, end: number): number {
  while (i < end && isSpace(buf[i])) i++;
  return i;
}

/** Offset past the string that starts at `i` (a quote); quotes and backslashes are ASCII, never inside a UTF-8 sequence. */
function endOfString(buf: Buffer, i: number, end: number): number {
  let j = i + 1;
  for (;;) {
    const q = buf.indexOf(QUOTE, j);
    if (q < 0 || q >= end) throw new NotJsonObject('unterminated string');
    let slashes = 0;
    for (let k = q - 1; k > i && buf[k] === BACKSLASH; k--) slashes++;
    if (slashes % 2 === 0) return q + 1;
    j = q + 1;
  }
}

/**
 * Offset past the value that starts at `i`. Only its extent is found here (strings
 * skipped, brackets counted without recursion, so any depth costs one counter): the
 * caller parses the value's bytes with JSON.parse, which checks them.
 */
function endOfValue(buf: Buffer, i: number, end: number): number {
  const c = buf[i];
  if (c === QUOTE) return endOfString(buf, i, end);
  if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
    let depth = 0;
    let j = i;
    while (j < end) {
      const b = buf[j] as number;
      if (b === QUOTE) { j = endOfString(buf, j, end); continue; }
      if (b === OPEN_OBJECT || b === OPEN_ARRAY) depth++;
      else if (b === CLOSE_OBJECT || b === CLOSE_ARRAY) {
        depth--;
        if (depth === 0) return j + 1;
      }
      j++;
    }
    throw new NotJsonObject('unterminated object or array');
  }
  let j = i;
  while (j < end) {
    const b = buf[j];
    if (b === COMMA || b === CLOSE_OBJECT || b === CLOSE_ARRAY || isSpace(b)) break;
    j++;
  }
  if (j === i) throw new NotJsonObject('a value is missing');
  return j;
}

/**
 * The members of the JSON object in `buf[start, end)` (white space around it
 * allowed), in order, without parsing their values: each key is parsed, each value
 * given as the offsets of its bytes. Throws NotJsonObject when the bytes are not one
 * object (the values themselves are the caller's to parse). Duplicate keys are
 * yielded as they come.
 */
export function* jsonMembers(buf: Buffer, start = 0, end = buf.length): Generator<JsonMember, void, undefined> {
  let i = skipSpace(buf, start, end);
  if (buf[i] !== OPEN_OBJECT) throw new NotJsonObject('not an object');
  i = skipSpace(buf, i + 1, end);
  if (buf[i] === CLOSE_OBJECT) {
    if (skipSpace(buf, i + 1, end) !== end) throw new NotJsonObject('bytes after the object');
    return;
  }
  for (;;) {
    if (buf[i] !== QUOTE) throw new NotJsonObject('a key is missing');
    const keyEnd = endOfString(buf, i, end);
    const key = JSON.parse(buf.toString('utf8', i, keyEnd)) as unknown;
    if (typeof key !== 'string') throw new NotJsonObject('a key is not a string');
    i = skipSpace(buf, keyEnd, end);
    if (buf[i] !== COLON) throw new NotJsonObject('a colon is missing');
    const valueStart = skipSpace(buf, i + 1, end);
    if (valueStart >= end) throw new NotJsonObject('a value is missing');
    const valueEnd = endOfValue(buf, valueStart, end);
    yield { key, start: valueStart, end: valueEnd };
    i = skipSpace(buf, valueEnd, end);
    if (buf[i] === COMMA) {
      i = skipSpace(buf, i + 1, end);
      continue;
    }
    if (buf[i] !== CLOSE_OBJECT) throw new NotJsonObject('a comma or closing brace is missing');
    if (skipSpace(buf, i + 1, end) !== end) throw new NotJsonObject('bytes after the object');
    return;
  }
}

/** The value in `buf[start, end)`, parsed by JSON.parse (which throws on anything that is not JSON). */
export function parseJsonBytes(buf: Buffer, start: number, end: number): unknown {
  return JSON.parse(buf.toString('utf8', start, end));
}
