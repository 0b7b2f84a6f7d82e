import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { open, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { canonicalJson, canonicalPieces } from './protocol/canonical.js';
import { DriftError, errnoOf } from './protocol/errors.js';
import type { Baseline, Manifest, Signature } from './protocol/manifest.js';
import type { SignatureCheck } from './protocol/finding.js';

/**
 * The trust folder: every `*.pub` in it is a trusted baseline signing key. A host's
 * image may carry its bake key here (`drift baseline --stamp --sign-key` puts it there).
 */
export const TRUST_DIR = '/etc/drift/keys';
/** A PEM public key is a few hundred bytes; anything far larger is not one. */
const KEY_FILE_MAX = 16 * 1024;
/** More keys than this in a trust folder is a mistake (or an attack), not a key rotation. */
const TRUST_DIR_MAX_KEYS = 64;

/** Read a small key file, refusing one larger than KEY_FILE_MAX (a hostile or wrong path). */
async function readKeyFile(path: string, what: string): Promise<string> {
  let fh;
  try { fh = await open(path, 'r'); } catch (err) {
    throw new DriftError('DRIFT_ERR_IO', `cannot read ${what} ${path}: ${errnoOf(err)}`, { cause: err });
  }
  try {
    const buf = Buffer.alloc(KEY_FILE_MAX + 1);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    if (bytesRead > KEY_FILE_MAX) throw new DriftError('DRIFT_ERR_SIGNATURE', `${what} ${path} is larger than ${KEY_FILE_MAX} bytes: not a PEM key; give the .pub file drift keygen wrote`);
    return buf.subarray(0, bytesRead).toString('utf8');
  } catch (err) {
    if (err instanceof DriftError) throw err;
    throw new DriftError('DRIFT_ERR_IO', `cannot read ${what} ${path}: ${errnoOf(err)}`, { cause: err });
  } finally {
    await fh.close();
  }
}

/** First 16 hex characters of the sha256 of the public key's SPKI DER. */
export function keyIdOf(publicKey: KeyObject): string {
  const der = publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(der).digest('hex').slice(0, 16);
}

export async function writeKeyPair(prefix: string, force: boolean): Promise<{ keyId: string; privatePath: string; publicPath: string }> {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const privatePath = `${prefix}.key`;
  const publicPath = `${prefix}.pub`;
  const flag = force ? 'w' : 'wx';
  try {
    await writeFile(privatePath, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600, flag });
    await writeFile(publicPath, publicKey.export({ type: 'spki', format: 'pem' }), { mode: 0o644, flag });
  } catch (err) {
    if (errnoOf(err) === 'EEXIST') throw new DriftError('DRIFT_ERR_USAGE', `${privatePath} or ${publicPath} already exists; use --force to overwrite`, { cause: err });
    throw new DriftError('DRIFT_ERR_IO', `cannot write key pair ${prefix}: ${errnoOf(err)}`, { cause: err });
  }
  return { keyId: keyIdOf(publicKey), privatePath, publicPath };
}

export async function loadPrivateKey(path: string): Promise<KeyObject> {
  const pem = await readKeyFile(path, 'signing key');
  try {
    const key = createPrivateKey(pem);
    if (key.asymmetricKeyType !== 'ed25519') throw new Error(`a ${key.asymmetricKeyType ?? 'unknown'} key`);
    return key;
  } catch (err) {
    throw new DriftError('DRIFT_ERR_SIGNATURE', `${path} is not an ed25519 private key in PEM (${err instanceof Error ? err.message : String(err)}); make one with drift keygen`, { cause: err });
  }
}

export async function loadPublicKey(path: string): Promise<KeyObject> {
  return parsePublicKey(await readKeyFile(path, 'public key'), path);
}

/**
 * Parse a trusted public key. A private key is refused although Node would derive its
 * public half: a signing key copied onto hosts or a collector lets anyone there sign
 * baselines, so the mistake is named rather than quietly accepted.
 */
export function parsePublicKey(pem: string, where: string): KeyObject {
  if (/-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/.test(pem)) {
    throw new DriftError('DRIFT_ERR_SIGNATURE', `${where} is a private key, not a public key: give the .pub file drift keygen wrote next to it, and keep the private key in the bake pipeline only`);
  }
  try {
    const key = createPublicKey(pem);
    if (key.asymmetricKeyType !== 'ed25519') throw new Error(`a ${key.asymmetricKeyType ?? 'unknown'} key`);
    return key;
  } catch (err) {
    throw new DriftError('DRIFT_ERR_SIGNATURE', `${where} is not an ed25519 public key in PEM (${err instanceof Error ? err.message : String(err)})`, { cause: err });
  }
}

/** The bytes a baseline signature covers: the canonical manifest without its signature. */
export function signedBytes(baseline: Manifest | Baseline): Buffer {
  return Buffer.from(canonicalJson(unsigned(baseline)));
}

/** The same bytes as signedBytes, as canonical JSON text in pieces (to hash a baseline of tens of MB without holding its text). */
export function signedPieces(baseline: Manifest | Baseline): Generator<string, void, undefined> {
  return canonicalPieces(unsigned(baseline));
}

function unsigned(baseline: Manifest | Baseline): Manifest {
  const { signature: _omit, ...manifest } = baseline as Baseline;
  return manifest;
}

export function signBaseline(manifest: Manifest, key: KeyObject): Baseline {
  const value = sign(null, signedBytes(manifest), key).toString('base64');
  const signature: Signature = { alg: 'ed25519', keyId: keyIdOf(createPublicKey(key)), value };
  return { ...manifest, signature };
}

/**
 * Check a baseline's signature against trusted public keys. Throws
 * DRIFT_ERR_SIGNATURE saying why: unsigned, signed by an unknown key, or a
 * signature that does not match the content.
 */
export function verifyBaseline(baseline: Baseline, keys: KeyObject[], where: string): string {
  return verifySigned(baseline.signature, () => signedBytes(baseline), keys, where);
}

/** verifyBaseline for a baseline held another way: its signature and the bytes it covers (made only when a key matches). */
export function verifySigned(sig: Signature | undefined, bytes: () => Buffer, keys: KeyObject[], where: string): string {
  if (!sig) throw new DriftError('DRIFT_ERR_SIGNATURE', `${where}: baseline is not signed, but public keys are configured; sign it with drift baseline --sign-key`);
  const key = keys.find((k) => keyIdOf(k) === sig.keyId);
  if (!key) throw new DriftError('DRIFT_ERR_SIGNATURE', `${where}: baseline is signed by key ${sig.keyId}, which is not among the trusted public keys (${keys.map(keyIdOf).join(', ') || 'none'})`);
  const ok = verify(null, bytes(), key, Buffer.from(sig.value, 'base64'));
  if (!ok) throw new DriftError('DRIFT_ERR_SIGNATURE', `${where}: baseline signature does not verify with key ${sig.keyId}: the content was changed after signing`);
  return sig.keyId;
}

/** A trusted public key and the file it came from. */
export interface TrustedKey {
  key: KeyObject;
  keyId: string;
  path: string;
}

/**
 * The trusted baseline keys: each `files` entry (`--pubkey`), then every `*.pub` of the
 * trust folder in name order. A trust folder that does not exist holds no keys; one
 * that exists but cannot be read, or holds a bad key, is an error (a key meant to be
 * trusted must not be skipped silently).
 */
export async function loadTrustedKeys(files: readonly string[], trustDir: string | null): Promise<TrustedKey[]> {
  const out: TrustedKey[] = [];
  for (const path of files) {
    const key = await loadPublicKey(path);
    out.push({ key, keyId: keyIdOf(key), path });
  }
  if (trustDir === null) return out;
  let names: string[];
  try { names = await readdir(trustDir); } catch (err) {
    if (errnoOf(err) === 'ENOENT') return out;
    throw new DriftError('DRIFT_ERR_IO', `cannot read the trust folder ${trustDir}: ${errnoOf(err)}; make it readable, or pass --trust-dir`, { cause: err });
  }
  const pubs = names.filter((n) => n.endsWith('.pub')).sort();
  if (pubs.length > TRUST_DIR_MAX_KEYS) {
    throw new DriftError('DRIFT_ERR_SIGNATURE', `the trust folder ${trustDir} holds ${pubs.length} keys, more than ${TRUST_DIR_MAX_KEYS}; keep only the bake keys in use there`);
  }
  for (const name of pubs) {
    const path = join(trustDir, name);
    const key = await loadPublicKey(path);
    out.push({ key, keyId: keyIdOf(key), path });
  }
  return out;
}

/**
 * Check a baseline against the trusted keys and say what was checked: `verified` (by
 * one of them), `unverified` (signed, but no key is trusted here), or `unsigned`.
 * With any trusted key, an unsigned baseline, one signed by another key or one whose
 * signature does not match is refused (DRIFT_ERR_SIGNATURE): a stripped signature is
 * exactly what a tampered baseline would look like.
 */
export function checkBaseline(baseline: Baseline, keys: readonly TrustedKey[], where: string): SignatureCheck {
  return checkSigned(baseline.signature, () => signedBytes(baseline), keys, where);
}

/** checkBaseline for a baseline held another way: its signature and the bytes it covers. */
export function checkSigned(signature: Signature | undefined, bytes: () => Buffer, keys: readonly TrustedKey[], where: string): SignatureCheck {
  if (keys.length === 0) {
    return signature ? { status: 'unverified', keyId: signature.keyId } : { status: 'unsigned', keyId: null };
  }
  return { status: 'verified', keyId: verifySigned(signature, bytes, keys.map((k) => k.key), where) };
}
