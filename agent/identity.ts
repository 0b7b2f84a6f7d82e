import { hostname as osHostname } from 'node:os';
import { join } from 'node:path';
import { errnoOf, DriftError } from './protocol/errors.js';
import { ImageStampSchema, type HostInfo, type ImageStamp } from './protocol/manifest.js';
import { HashError, readFileChecked } from './hash.js';

/** Where the bake stamps the image identity, relative to the root. */
export const IMAGE_STAMP_PATH = 'etc/drift/image.json';

/** Largest identity file read (hostname, machine-id): both are a line of text. */
export const IDENTITY_CAP_BYTES = 1024;
/** Largest image stamp read. */
export const IMAGE_STAMP_CAP_BYTES = 64 * 1024;

/**
 * The text of an identity file, read without following a symlink, without blocking
 * on a FIFO or device, and only when it is a regular file of at most `cap` bytes;
 * null only when it does not exist. Anything else is a DriftError: an identity must
 * not be guessed from a file that exists but could not be read.
 */
function readIdentityFile(path: string, cap: number, what: string): string | null {
  try {
    return readFileChecked(path, cap, { checkPath: false }).toString('utf8');
  } catch (err) {
    const code = err instanceof HashError ? err.code : errnoOf(err);
    if (code === 'ENOENT') return null;
    const why = code === 'ELOOP' ? 'it is a symlink, which is never followed' : code.startsWith('over the per-file') ? `larger than ${cap} bytes` : code;
    throw new DriftError('DRIFT_ERR_IO', `cannot read ${what} ${path}: ${why}; it must be a regular file the agent can read`, { cause: err });
  }
}

async function readTrimmed(path: string): Promise<string | null> {
  return readIdentityFile(path, IDENTITY_CAP_BYTES, 'identity file')?.trim() ?? null;
}

/**
 * Read the image stamp of a root; null when there is none. A stamp that exists but
 * does not parse is an error: a host must never guess which image it came from.
 */
export async function readImageStamp(root: string): Promise<ImageStamp | null> {
  const path = join(root, IMAGE_STAMP_PATH);
  const text = readIdentityFile(path, IMAGE_STAMP_CAP_BYTES, 'image stamp');
  if (text === null) return null;
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
