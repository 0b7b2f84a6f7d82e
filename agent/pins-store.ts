import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { DriftError, errnoOf } from './protocol/errors.js';
import { PinBookSchema, type PinBook } from './protocol/pins.js';
import { writeFileAtomic } from './atomic.js';

/**
 * The first-boot pins of `drift scan`, kept in the state folder
 * (`pins/<id>.json`, mode 0600: pinned content may include sudoers lines). One file
 * per scanned target: a root folder, the machine-id it holds and the image it was
 * baked from — so that a baked image that was scanned before its first boot, or a
 * root folder reused for another host, never inherits another host's pins.
 *
 * A pin file that exists but cannot be read or parsed is an error, never "no pins":
 * treating it as absent would let whoever can corrupt it make the next scan the
 * "first" one again and pin whatever is there now.
 */

/** What a pin file is for. */
export interface PinTarget {
  /** The scanned root folder, absolute (`/` for the live host). */
  root: string;
  machineId: string;
  imageId: string;
}

const PinFileSchema = z.strictObject({
  target: z.strictObject({ root: z.string().max(4096), machineId: z.string().max(256), imageId: z.string().max(256) }),
  book: PinBookSchema,
});

/**
 * Largest pin file read: 1,000 pins (MAX_PINS) of at most 8,192 characters of content
 * each (PIN_CONTENT_MAX), even JSON-escaped, fit. drift never writes a larger one.
 */
export const MAX_PIN_FILE = 64 * 1024 * 1024;

/** The machine-ids of an image before its first boot: nothing to pin yet. */
export function beforeFirstBoot(machineId: string): boolean {
  const id = machineId.trim();
  return id === '' || id === 'uninitialized';
}

/** The pin file of a target. */
export function pinFilePath(stateDir: string, target: PinTarget): string {
  const id = createHash('sha256').update(`${target.root}\0${target.machineId}\0${target.imageId}`).digest('hex').slice(0, 24);
  return join(stateDir, 'pins', `${id}.json`);
}

/** The pins of a target; null before its first scan. */
export async function readPins(stateDir: string, target: PinTarget): Promise<PinBook | null> {
  const path = pinFilePath(stateDir, target);
  const fix = `move it aside and scan again to pin this host's current values (only if you trust its state now)`;
  let fh;
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return null;
    throw new DriftError('DRIFT_ERR_IO', `cannot read pin file ${path}: ${errnoOf(err)}; check the state folder (--state-dir) or ${fix}`, { cause: err });
  }
  let text: string;
  try {
    const st = await fh.stat();
    if (!st.isFile() || st.size > MAX_PIN_FILE) {
      throw new DriftError('DRIFT_ERR_MANIFEST', `pin file ${path} is ${st.isFile() ? `larger than ${MAX_PIN_FILE} bytes` : 'not a regular file'}; ${fix}`);
    }
    text = await fh.readFile('utf8');
  } finally {
    await fh.close();
  }
  let data: unknown;
  try { data = JSON.parse(text); } catch (err) {
    throw new DriftError('DRIFT_ERR_MANIFEST', `pin file ${path} is not JSON (${(err as Error).message}); ${fix}`, { cause: err });
  }
  const parsed = PinFileSchema.safeParse(data);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new DriftError('DRIFT_ERR_MANIFEST', `pin file ${path} is not a drift.pins/v1 file (${issue ? `${issue.path.join('.') || '(top)'}: ${issue.message}` : 'invalid'}); ${fix}`);
  }
  const t = parsed.data.target;
  if (t.root !== target.root || t.machineId !== target.machineId || t.imageId !== target.imageId) {
    throw new DriftError('DRIFT_ERR_MANIFEST', `pin file ${path} belongs to ${t.root} (machine-id ${t.machineId}, image ${t.imageId}), not to this scan; ${fix}`);
  }
  return parsed.data.book;
}

/** Store the pins of a target (atomic, mode 0600). */
export async function writePins(stateDir: string, target: PinTarget, book: PinBook): Promise<void> {
  const path = pinFilePath(stateDir, target);
  try {
    await mkdir(join(stateDir, 'pins'), { recursive: true, mode: 0o700 });
    await writeFileAtomic(path, `${JSON.stringify({ target, book })}\n`, 0o600);
  } catch (err) {
    throw new DriftError('DRIFT_ERR_IO', `cannot write pin file ${path}: ${errnoOf(err)}; pass --state-dir with a writable folder`, { cause: err });
  }
}
