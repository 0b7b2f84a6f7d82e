import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
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
 * How identity files are read: `rel` is the path inside the root (`etc/hostname`);
 * at most `cap` bytes of a regular file, never through a symlink, FIFO or device;
 * null only when it does not exist; otherwise an Error whose `code` says why (an
 * errno code or a REASONS text). Local roots read with readFileChecked; an agentless
 * scan reads the remote host's files through its SSH session.
 */
export type IdentityReader = (rel: string, cap: number) => Promise<Buffer | null>;

/** The identity reader of a local root. */
export function localIdentityReader(root: string): IdentityReader {
  return async (rel, cap) => {
    try {
      return readFileChecked(join(root, rel), cap, { checkPath: false });
    } catch (err) {
      const code = err instanceof HashError ? err.code : errnoOf(err);
      if (code === 'ENOENT') return null;
      throw Object.assign(new Error(code), { code });
    }
  };
}

/**
 * The text of an identity file, read without following a symlink, without blocking
 * on a FIFO or device, and only when it is a regular file of at most `cap` bytes;
 * null only when it does not exist. Anything else is a DriftError: an identity must
 * not be guessed from a file that exists but could not be read.
 */
async function readIdentityFile(read: IdentityReader, root: string, rel: string, cap: number, what: string): Promise<string | null> {
  try {
    return (await read(rel, cap))?.toString('utf8') ?? null;
  } catch (err) {
    const code = errnoOf(err);
    const why = code === 'ELOOP' ? 'it is a symlink, which is never followed' : code.startsWith('over the per-file') ? `larger than ${cap} bytes` : code;
    throw new DriftError('DRIFT_ERR_IO', `cannot read ${what} ${join(root, rel)}: ${why}; it must be a regular file the agent can read`, { cause: err });
  }
}

async function readTrimmed(read: IdentityReader, root: string, rel: string): Promise<string | null> {
  return (await readIdentityFile(read, root, rel, IDENTITY_CAP_BYTES, 'identity file'))?.trim() ?? null;
}

/**
 * Read the image stamp of a root; null when there is none. A stamp that exists but
 * does not parse is an error: a host must never guess which image it came from.
 */
export async function readImageStamp(root: string, read: IdentityReader = localIdentityReader(root)): Promise<ImageStamp | null> {
  const path = join(root, IMAGE_STAMP_PATH);
  const text = await readIdentityFile(read, root, IMAGE_STAMP_PATH, IMAGE_STAMP_CAP_BYTES, 'image stamp');
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
export async function readInstanceId(root: string, read?: IdentityReader): Promise<string | undefined> {
  // Optional facts: a file that is absent, unreadable, not a regular file (never a symlink,
  // FIFO or device) or over the bound means "no id here".
  const small = async (rel: string, max: number): Promise<string | null> => {
    try {
      if (read) return (await read(rel, max))?.toString('utf8').trim() ?? null;
      return readFileChecked(join(root, rel), max, { checkPath: false }).toString('utf8').trim();
    } catch { return null; }
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
  const tag = read ? await small('sys/class/dmi/id/board_asset_tag', 256) : readSysfsText(join(root, 'sys/class/dmi/id/board_asset_tag'), 256);
  if (tag && EC2_INSTANCE_ID.test(tag)) return tag;
  return undefined;
}

/**
 * A sysfs attribute's text (its stat size says 4096 whatever it holds, so it is read
 * to EOF, up to `max` bytes): opened without following a symlink and without blocking,
 * and only when it is a regular file. Null when absent, unreadable or longer than `max`.
 */
function readSysfsText(path: string, max: number): string | null {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch { return null; }
  try {
    if (!fstatSync(fd).isFile()) return null;
    const buf = Buffer.alloc(max + 1);
    let n = 0;
    for (let r; n <= max && (r = readSync(fd, buf, n, max + 1 - n, null)) > 0;) n += r;
    return n > max ? null : buf.subarray(0, n).toString('utf8').trim();
  } catch { return null; } finally { closeSync(fd); }
}

/**
 * Who a root is: hostname and machine-id from its files (the live hostname when the
 * root is `/`), and the image it was baked from, from its stamp.
 */
export async function readHostInfo(root: string, opts: { instanceId?: string; read?: IdentityReader } = {}): Promise<HostInfo> {
  const read = opts.read ?? localIdentityReader(root);
  // The live root's hostname is the kernel's: its etc/hostname is not needed (a remote root's is its file).
  const hostname = root === '/' && opts.read === undefined ? osHostname() : ((await readTrimmed(read, root, 'etc/hostname')) ?? '');
  const machineId = (await readTrimmed(read, root, 'etc/machine-id')) ?? '';
  const stamp = await readImageStamp(root, read);
  const info: HostInfo = { hostname, machineId };
  const instanceId = opts.instanceId ?? await readInstanceId(root, opts.read);
  if (instanceId) info.instanceId = instanceId;
  if (stamp) {
    info.image = { id: stamp.id, baselineDigest: stamp.baselineDigest };
    if (stamp.version !== undefined) info.image.version = stamp.version;
  }
  return info;
}
