import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { createHash, randomUUID, type KeyObject } from 'node:crypto';
import type { Digest } from './protocol/brand.js';
import { canonicalJson, sortedJson } from './protocol/canonical.js';
import { DriftError, errnoOf } from './protocol/errors.js';
import type { Baseline, ImageStamp, Manifest } from './protocol/manifest.js';
import { IMAGE_STAMP_PATH } from './identity.js';
import { signBaseline, signedBytes } from './sign.js';

/**
 * The digest that names a baseline: sha256 of the canonical manifest without its
 * signature (the same bytes the signature covers), so signing does not change it.
 */
export function baselineDigest(baseline: Manifest | Baseline): Digest {
  // One helper defines what is signed and what is digested: they must never differ.
  return `sha256:${createHash('sha256').update(signedBytes(baseline)).digest('hex')}` as Digest;
}

/** Turn a freshly collected manifest into an image's baseline, signed when a key is given. */
export function makeBaseline(manifest: Manifest, image: { id: string; version?: string }, key: KeyObject | null): Baseline {
  const withImage: Manifest = { ...manifest, host: { ...manifest.host, image: { ...image } } };
  return key ? signBaseline(withImage, key) : withImage;
}

/**
 * Write a file atomically (temp file + rename), so a reader never sees half of it.
 * The temp file has a random name in the same folder and is removed when the write fails.
 */
export async function writeFileAtomic(path: string, data: string, mode = 0o644): Promise<void> {
  const tmp = join(dirname(path), `.${randomUUID()}.tmp`);
  try {
    await writeFile(tmp, data, { mode });
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true }).catch(() => undefined);
    throw new DriftError('DRIFT_ERR_IO', `cannot write ${path}: ${errnoOf(err)}`, { cause: err });
  }
}

/** Serialise a baseline as canonical JSON with a trailing newline. */
export function serialiseBaseline(baseline: Baseline): string {
  return `${canonicalJson(baseline)}\n`;
}

/** Stamp the image identity into a root (`etc/drift/image.json`) so hosts know their image. */
export async function stampImage(root: string, baseline: Baseline, now: Date = new Date()): Promise<ImageStamp> {
  const image = baseline.host.image;
  if (!image) throw new DriftError('DRIFT_ERR_USAGE', 'cannot stamp a baseline without an image id');
  const stamp: ImageStamp = { schema: 'drift.image/v1', id: image.id, baselineDigest: baselineDigest(baseline), bakedAt: now.toISOString() };
  if (image.version !== undefined) stamp.version = image.version;
  const path = join(root, IMAGE_STAMP_PATH);
  try { await mkdir(dirname(path), { recursive: true, mode: 0o755 }); } catch (err) {
    throw new DriftError('DRIFT_ERR_IO', `cannot create ${dirname(path)}: ${errnoOf(err)}`, { cause: err });
  }
  await writeFileAtomic(path, sortedJson(stamp));
  return stamp;
}
