import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { DriftError, errnoOf } from './protocol/errors.js';

/** A secret file larger than this is not a secret file (a wrong path, a device, a log). */
const MAX_SECRET_FILE = 4096;

/** How a secret file is named in messages and what it must hold. */
export interface SecretFileOptions {
  /** The flag that named the file (`--admin-token-file`), for messages. */
  flag?: string;
  /** The fewest characters the secret may have (the collector asks 16 of its own secrets). */
  minLength?: number;
  /** Told when the file is readable by group or others (the secret is still used: refusing would break a fleet over a chmod). */
  warn?: (msg: string) => void;
  /**
   * Refuse a file others may read or write (mode `o-rwx` required), instead of warning:
   * for the collector's own secrets, where a copy others can read is one more way in.
   */
  private?: boolean;
}

/**
 * Read a secret (enrollment secret, admin token) from a file, the one way agent and
 * collector do: at most 4 KiB read, trimmed, one word, never empty; a file others may read
 * is used with a warning. Errors are DRIFT_ERR_CONFIG naming the flag, the file and what to do.
 */
export async function readSecretFile(path: string, opts: SecretFileOptions = {}): Promise<string> {
  const what = opts.flag ? `${opts.flag} ${path}` : `secret file ${path}`;
  const warn = opts.warn ?? ((m: string) => process.stderr.write(`drift: warning: ${m}\n`));
  const hint = `create it (e.g. head -c 32 /dev/urandom | base64 > ${path}; chmod 600 ${path})${opts.flag ? ` or point ${opts.flag} at the right file` : ''}`;
  let text: string;
  let mode: number;
  try {
    // O_NONBLOCK: a FIFO at the path must not hang the reader; it is refused below.
    const fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new DriftError('DRIFT_ERR_CONFIG', `${what} is not a regular file; ${hint}`);
      mode = st.mode;
      const buf = Buffer.alloc(MAX_SECRET_FILE + 1);
      const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
      if (bytesRead > MAX_SECRET_FILE) throw new DriftError('DRIFT_ERR_CONFIG', `${what} is larger than ${MAX_SECRET_FILE} bytes; a secret file holds one line`);
      text = buf.subarray(0, bytesRead).toString('utf8');
    } finally {
      await fh.close();
    }
  } catch (err) {
    if (err instanceof DriftError) throw err;
    throw new DriftError('DRIFT_ERR_CONFIG', `cannot read ${what}: ${errnoOf(err)}; ${hint}`, { cause: err });
  }
  const secret = text.trim();
  if (secret.length === 0) throw new DriftError('DRIFT_ERR_CONFIG', `${what} is empty; write the secret into it (one line)`);
  if (/\s/.test(secret)) throw new DriftError('DRIFT_ERR_CONFIG', `${what} holds more than one word; a secret is one line without spaces`);
  const min = opts.minLength ?? 1;
  if (secret.length < min) throw new DriftError('DRIFT_ERR_CONFIG', `${what} holds a secret of ${secret.length} characters; use at least ${min} (e.g. head -c 32 /dev/urandom | base64)`);
  if (opts.private && (mode & 0o007) !== 0) {
    throw new DriftError('DRIFT_ERR_CONFIG', `${what} is accessible to others (mode ${(mode & 0o777).toString(8).padStart(4, '0')}); chmod o-rwx ${path} (e.g. chmod 600 ${path})`);
  }
  if ((mode & 0o077) !== 0) warn(`${what} is readable by group or others (mode ${(mode & 0o777).toString(8).padStart(4, '0')}); chmod 600 it`);
  return secret;
}
