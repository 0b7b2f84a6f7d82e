import { open, readFile } from 'node:fs/promises';
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

/** What an instance id may look like (EC2's i-0abc…, other clouds' ids): short, printable, no spaces. */
const INSTANCE_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
/** The DMI board asset tag is the instance id only where EC2 sets it; elsewhere it is any vendor text. */
const EC2_INSTANCE_ID = /^i-[0-9a-f]{8,17}$/;
/** cloud-init's id when it found no cloud: not an instance. */
const NO_CLOUD = 'iid-datasource-none';

/**
 * The cloud instance id, read offline under the root (no metadata service call):
 * cloud-init's cached id, then its instance data (`v1.instance_id`), then the DMI board
 * asset tag, which EC2 sets to the instance id. Undefined when none holds a plausible
 * id. Each file is read to a small bound: a hostile or broken root cannot make the
 * agent read a huge file.
 */
export async function readInstanceId(root: string): Promise<string | undefined> {
  // Optional facts: a file that is absent, unreadable, a folder or over the bound means "no id here".
  const small = async (rel: string, max: number): Promise<string | null> => {
    let fh;
    try {
      fh = await open(join(root, rel), 'r');
      const buf = Buffer.alloc(max + 1);
      const { bytesRead } = await fh.read(buf, 0, max + 1, 0);
      return bytesRead > max ? null : buf.subarray(0, bytesRead).toString('utf8').trim();
    } catch { return null; } finally { await fh?.close(); }
  };
  const cached = await small('var/lib/cloud/data/instance-id', 256);
  if (cached && cached !== NO_CLOUD && INSTANCE_ID.test(cached)) return cached;
  const data = await small('run/cloud-init/instance-data.json', 1024 * 1024);
  if (data) {
    try {
      const id = (JSON.parse(data) as { v1?: { instance_id?: unknown } }).v1?.instance_id;
      if (typeof id === 'string' && id !== NO_CLOUD && INSTANCE_ID.test(id)) return id;
    } catch { /* not JSON: fall through to the asset tag */ }
  }
  const tag = await small('sys/class/dmi/id/board_asset_tag', 256);
  if (tag && EC2_INSTANCE_ID.test(tag)) return tag;
  return undefined;
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
  const instanceId = opts.instanceId ?? await readInstanceId(root);
  if (instanceId) info.instanceId = instanceId;
  if (stamp) {
    info.image = { id: stamp.id, baselineDigest: stamp.baselineDigest };
    if (stamp.version !== undefined) info.image.version = stamp.version;
  }
  return info;
}
