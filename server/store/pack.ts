import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { canonicalJson } from '../../agent/protocol/canonical.js';

/** How the store packs what it keeps: digests as raw bytes, JSON deflated (used by the store and its pin tables). */

/** `sha256:<hex>` → its 32 raw bytes (how digests are stored). */
export function digestBytes(digest: string): Buffer {
  return Buffer.from(digest.slice(7), 'hex');
}
/** 32 raw bytes → `sha256:<hex>`. */
export function digestText(bytes: Buffer): string {
  return `sha256:${bytes.toString('hex')}`;
}

/** Deflated canonical JSON, as blobs hold it. */
export function packJson(value: unknown): Buffer {
  return deflateRawSync(canonicalJson(value));
}
/** The inverse of packJson. */
export function unpackJson(data: Buffer): unknown {
  return JSON.parse(inflateRawSync(data).toString('utf8'));
}

