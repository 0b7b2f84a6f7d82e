import { readFile } from 'node:fs/promises';
import { hostname as osHostname } from 'node:os';
import { join } from 'node:path';
import { errnoOf, DriftError } from './protocol/errors.js';
import { ImageStampSchema, type HostInfo, type ImageStamp } from './protocol/manifest.js';

/** Where the bake stamps the image identity, relative to the root. */
export const IMAGE_STAMP_PATH = 'etc/drift/image.json';

/**
 * The trimmed text of an identity file; null only when it does not exist. Any other
 * error (EACCES, EIO) is a DriftError: an identity must not be guessed from a file
 * that exists but could not be read.
 */
async function readTrimmed(path: string): Promise<string | null> {
  try {
    return (await readFile(path, 'utf8')).trim();
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return null;
    throw new DriftError('DRIFT_ERR_IO', `cannot read ${path}: ${errnoOf(err)}; the host identity is read from it, so make it readable by the agent`, { cause: err });
  }
}

/**
 * Read the image stamp of a root; null when there is none. A stamp that exists but
 * does not parse is an error: a host must never guess which image it came from.
 */
export async function readImageStamp(root: string): Promise<ImageStamp | null> {
  const path = join(root, IMAGE_STAMP_PATH);
  let text: string;
  try { text = await readFile(path, 'utf8'); } catch (err) {
    if (errnoOf(err) === 'ENOENT') return null;
    throw new DriftError('DRIFT_ERR_IO', `cannot read image stamp ${path}: ${errnoOf(err)}`, { cause: err });
  }
  let data: unknown;
  try { data = JSON.parse(text); } catch (err) {
    throw new DriftError('DRIFT_ERR_MANIFEST', `image stamp ${path} is not JSON: ${(err as Error).message}`, { cause: err });
  }
  const parsed = ImageStampSchema.safeParse(data);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new DriftError('DRIFT_ERR_MANIFEST', `image stamp ${path}: ${issue ? `${issue.path.join('.') || '(top)'}: ${issue.message}` : 'invalid'}`);
  }
  return parsed.data;
}

/**
 * Who a root is: hostname and machine-id from its files (the live hostname when the
 * root is `/`), and the image it was baked from, from its stamp.
 */
export async function readHostInfo(root: string, opts: { instanceId?: string } = {}): Promise<HostInfo> {
  // The live root's hostname is the kernel's: its etc/hostname is not needed.
  const hostname = root === '/' ? osHostname() : ((await readTrimmed(join(root, 'etc/hostname'))) ?? '');
  const machineId = (await readTrimmed(join(root, 'etc/machine-id'))) ?? '';
  const stamp = await readImageStamp(root);
  const info: HostInfo = { hostname, machineId };
  if (opts.instanceId) info.instanceId = opts.instanceId;
  if (stamp) {
    info.image = { id: stamp.id, baselineDigest: stamp.baselineDigest };
    if (stamp.version !== undefined) info.image.version = stamp.version;
  }
  return info;
}
