import { createHash } from 'node:crypto';
import type { Digest } from './brand.js';

/**
 * Canonical JSON: object keys sorted by code unit, no insignificant whitespace,
 * `undefined` members dropped. Equal values give equal bytes, so equal digests.
 * Pure string building; imports nothing of ours but the brand types.
 */
export function canonicalJson(value: unknown): string {
  const parts: string[] = [];
  write(value, parts);
  return parts.join('');
}

function write(value: unknown, out: string[]): void {
  if (value === null) { out.push('null'); return; }
  switch (typeof value) {
    case 'string': out.push(JSON.stringify(value)); return;
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError('canonical JSON cannot hold a non-finite number');
      out.push(JSON.stringify(value)); return;
    case 'boolean': out.push(value ? 'true' : 'false'); return;
    case 'object': {
      if (Array.isArray(value)) {
        out.push('[');
        for (let i = 0; i < value.length; i++) {
          if (i > 0) out.push(',');
          const item: unknown = value[i];
          write(item === undefined ? null : item, out);
        }
        out.push(']');
        return;
      }
      const obj = value as Record<string, unknown>;
      const keys = Object.keys(obj).filter((k) => obj[k] !== undefined).sort();
      out.push('{');
      for (let i = 0; i < keys.length; i++) {
        const k = keys[i] as string;
        if (i > 0) out.push(',');
        out.push(JSON.stringify(k), ':');
        write(obj[k], out);
      }
      out.push('}');
      return;
    }
    default:
      throw new TypeError(`canonical JSON cannot hold a ${typeof value}`);
  }
}

/** `sha256:<hex>` of the canonical JSON of a value. */
export function digestOf(value: unknown): Digest {
  return `sha256:${createHash('sha256').update(canonicalJson(value)).digest('hex')}` as Digest;
}
