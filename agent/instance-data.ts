import { constants } from 'node:fs';
import { lstat, open } from 'node:fs/promises';
import { join } from 'node:path';
import { errnoOf } from './protocol/errors.js';
import { InstanceKeysSchema, type InstanceKeys, type Unread } from './protocol/manifest.js';

/**
 * The SSH public keys the instance was launched with, read offline from cloud-init's
 * instance data under a root: `run/cloud-init/instance-data-sensitive.json` (root
 * only) and then `run/cloud-init/instance-data.json`, key `v1.public_ssh_keys` (one of
 * cloud-init's standardized keys, the same on every cloud). The compare engine holds
 * the default user's `authorized_keys` to exactly these keys.
 *
 * Every byte is hostile (a root folder may be anyone's image, and on a host whoever
 * gained root can write /run): the files are opened without following a symlink,
 * neither `run` nor `run/cloud-init` may be a symlink (which could lead outside the
 * root), reads stop at MAX_INSTANCE_DATA bytes, and at most 100 keys of at most 16 KiB
 * each are taken. A file that exists but cannot be used is reported as unread (with
 * the reason) and the next one is tried: no metadata means keys pinned on trust.
 */

export const INSTANCE_DATA_FILES = ['run/cloud-init/instance-data-sensitive.json', 'run/cloud-init/instance-data.json'] as const;

/** Largest instance-data file read (cloud-init writes a few KiB; user data can grow it). */
export const MAX_INSTANCE_DATA = 1024 * 1024;

const MAX_KEYS = 100;
const MAX_KEY_LENGTH = 16384;

/** The keys (null when no usable metadata) and what could not be read on the way. */
export interface InstanceKeysResult {
  keys: InstanceKeys | null;
  unread: Unread[];
}

/** Read the instance's public SSH keys under `root` (see the module comment). */
export async function readInstanceKeys(root: string): Promise<InstanceKeysResult> {
  const unread: Unread[] = [];
  const parents = await parentsAreFolders(root);
  if (parents !== true) {
    if (parents !== 'ENOENT') unread.push({ path: '/run/cloud-init', reason: parents });
    return { keys: null, unread };
  }
  for (const rel of INSTANCE_DATA_FILES) {
    const shown = `/${rel}`;
    const read = await readBounded(join(root, rel));
    if (read.ok === false) {
      if (read.reason !== 'ENOENT') unread.push({ path: shown, reason: read.reason });
      continue;
    }
    const keys = publicKeysOf(read.text);
    if (typeof keys === 'string') {
      unread.push({ path: shown, reason: keys });
      continue;
    }
    const parsed = InstanceKeysSchema.safeParse({ source: shown, keys });
    if (!parsed.success) {
      unread.push({ path: shown, reason: 'v1.public_ssh_keys: not a list of SSH keys' });
      continue;
    }
    return { keys: parsed.data, unread };
  }
  return { keys: null, unread };
}

/** True when `run` and `run/cloud-init` are real folders; otherwise the reason. */
async function parentsAreFolders(root: string): Promise<true | string> {
  for (const rel of ['run', 'run/cloud-init']) {
    try {
      const st = await lstat(join(root, rel));
      if (st.isSymbolicLink()) return 'a symlink, not followed';
      if (!st.isDirectory()) return 'not a folder';
    } catch (err) {
      return errnoOf(err);
    }
  }
  return true;
}

type Read = { ok: true; text: string } | { ok: false; reason: string };

/** The text of a regular file, opened without following a symlink, refused above the size cap. */
async function readBounded(path: string): Promise<Read> {
  let fh;
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = errnoOf(err);
    return { ok: false, reason: code === 'ELOOP' ? 'a symlink, not followed' : code };
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) return { ok: false, reason: 'not a regular file' };
    if (st.size > MAX_INSTANCE_DATA) return { ok: false, reason: `larger than ${MAX_INSTANCE_DATA} bytes` };
    // Read at most one byte past the cap: a file that grew after fstat is refused too.
    const buf = Buffer.alloc(MAX_INSTANCE_DATA + 1);
    let length = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, length, buf.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length > MAX_INSTANCE_DATA) return { ok: false, reason: `larger than ${MAX_INSTANCE_DATA} bytes` };
    }
    return { ok: true, text: buf.subarray(0, length).toString('utf8') };
  } catch (err) {
    return { ok: false, reason: errnoOf(err) };
  } finally {
    await fh.close();
  }
}

/**
 * `v1.public_ssh_keys` of an instance-data document: the keys, trimmed, without
 * duplicates; or the reason the document cannot be used. A document without the key
 * (a cloud that gives no keys) yields an empty list: the instance has no launch keys.
 */
export function publicKeysOf(text: string): string[] | string {
  let doc: unknown;
  try { doc = JSON.parse(text); } catch (err) {
    return `not JSON (${(err as Error).message.slice(0, 120)})`;
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) return 'not a JSON object';
  const v1 = (doc as Record<string, unknown>)['v1'];
  if (v1 === undefined) return 'no v1 key: not cloud-init instance data';
  if (v1 === null || typeof v1 !== 'object' || Array.isArray(v1)) return 'v1 is not an object';
  const raw = (v1 as Record<string, unknown>)['public_ssh_keys'];
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) return 'v1.public_ssh_keys is not a list';
  if (raw.length > MAX_KEYS) return `v1.public_ssh_keys lists more than ${MAX_KEYS} keys`;
  const keys: string[] = [];
  for (const k of raw) {
    if (typeof k !== 'string') return 'v1.public_ssh_keys holds a non-string';
    const key = k.trim();
    if (key === '') continue;
    if (key.length > MAX_KEY_LENGTH || key.includes('\n')) return `v1.public_ssh_keys holds a key longer than ${MAX_KEY_LENGTH} characters or of several lines`;
    if (!keys.includes(key)) keys.push(key);
  }
  return keys;
}
