import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/**
 * OpenSSH's known_hosts, as `drift scan --ssh` checks a host's key against it: plain
 * and hashed (`|1|salt|hash`) host fields, `[host]:port` for ports other than 22,
 * comma-separated patterns with `*`, `?` and `!` negation, `@revoked` markers.
 * `@cert-authority` lines are skipped (host certificates are not checked: such a host
 * is "unknown" unless its plain key is listed too). Pure: the caller reads the file.
 */

/** The most a known_hosts file may hold before it is refused (it is read whole). */
export const KNOWN_HOSTS_MAX_BYTES = 16 * 1024 * 1024;
/** Longest line considered; longer ones are not entries OpenSSH would write. */
const MAX_LINE = 64 * 1024;

/** What known_hosts says of a host's key. */
export type HostKeyVerdict =
  | { kind: 'known'; line: number }
  | { kind: 'unknown' }
  /** The host is listed with other keys only: the key changed (or someone is in the middle). */
  | { kind: 'changed'; lines: number[] }
  | { kind: 'revoked'; line: number };

/** The name OpenSSH looks up: `host` on port 22, `[host]:port` otherwise. */
export function hostField(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

/** `SHA256:<base64, no padding>` of a key blob, as `ssh-keygen -l` prints it. */
export function fingerprintOf(blob: Uint8Array): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/** The key type named at the start of an SSH public key blob (`ssh-ed25519`, …), or null when malformed. */
export function keyTypeOf(blob: Uint8Array): string | null {
  if (blob.length < 4) return null;
  const len = Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength).readUInt32BE(0);
  if (len === 0 || len > 64 || 4 + len > blob.length) return null;
  const name = Buffer.from(blob.buffer, blob.byteOffset + 4, len).toString('latin1');
  return /^[A-Za-z0-9@._-]+$/.test(name) ? name : null;
}

/** The known_hosts line that trusts `blob` for `field` (what `--accept-new` appends). */
export function knownHostsLine(field: string, blob: Uint8Array): string {
  const type = keyTypeOf(blob) ?? 'unknown';
  return `${field} ${type} ${Buffer.from(blob).toString('base64')}\n`;
}

/** OpenSSH's wildcard match: `*` any run, `?` one character; case-insensitive like hostnames. */
function wildcard(pattern: string, name: string): boolean {
  if (pattern.length > 1024) return false;
  const re = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`, 'is');
  return re.test(name);
}

/** Whether a hashed host field (`|1|salt|hash`) names `name`. */
function hashedMatch(field: string, name: string): boolean {
  const parts = field.split('|');
  if (parts.length !== 4 || parts[1] !== '1') return false;
  const salt = Buffer.from(parts[2] ?? '', 'base64');
  const want = Buffer.from(parts[3] ?? '', 'base64');
  if (salt.length === 0 || want.length !== 20) return false;
  const got = createHmac('sha1', salt).update(name).digest();
  return timingSafeEqual(got, want);
}

/** Whether a comma-separated pattern list names `name` (a negated match wins over every positive one). */
function hostsMatch(patterns: string, name: string): boolean {
  if (patterns.startsWith('|')) return hashedMatch(patterns, name);
  let positive = false;
  for (const p of patterns.split(',')) {
    if (p.startsWith('!')) {
      if (wildcard(p.slice(1), name)) return false;
    } else if (wildcard(p, name)) positive = true;
  }
  return positive;
}

/**
 * Check `blob`, the key `host` presented on `port`, against the text of a
 * known_hosts file. A revoked key is refused whatever else is listed; a listed key
 * is known; a host listed only with other keys has changed its key.
 */
export function checkHostKey(text: string, host: string, port: number, blob: Uint8Array): HostKeyVerdict {
  const name = hostField(host, port);
  const key = Buffer.from(blob);
  let known: number | null = null;
  const others: number[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i] as string;
    if (raw.length > MAX_LINE) continue;
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const fields = line.split(/[ \t]+/);
    let marker: string | null = null;
    if (fields[0]?.startsWith('@')) marker = fields.shift() ?? null;
    if (marker === '@cert-authority') continue;
    const [patterns, , b64] = fields;
    if (patterns === undefined || b64 === undefined || !hostsMatch(patterns, name)) continue;
    const listed = Buffer.from(b64, 'base64');
    const same = listed.length === key.length && timingSafeEqual(listed, key);
    if (marker === '@revoked') {
      if (same) return { kind: 'revoked', line: i + 1 };
      continue;
    }
    if (marker !== null) continue;
    if (same) known ??= i + 1;
    else others.push(i + 1);
  }
  if (known !== null) return { kind: 'known', line: known };
  return others.length > 0 ? { kind: 'changed', lines: others } : { kind: 'unknown' };
}
