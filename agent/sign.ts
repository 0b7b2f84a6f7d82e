import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { canonicalJson } from './protocol/canonical.js';
import { DriftError, errnoOf } from './protocol/errors.js';
import type { Baseline, Manifest, Signature } from './protocol/manifest.js';

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
  let pem: string;
  try { pem = await readFile(path, 'utf8'); } catch (err) {
    throw new DriftError('DRIFT_ERR_IO', `cannot read signing key ${path}: ${errnoOf(err)}`, { cause: err });
  }
  try {
    const key = createPrivateKey(pem);
    if (key.asymmetricKeyType !== 'ed25519') throw new Error(`a ${key.asymmetricKeyType ?? 'unknown'} key`);
    return key;
  } catch (err) {
    throw new DriftError('DRIFT_ERR_SIGNATURE', `${path} is not an ed25519 private key in PEM (${err instanceof Error ? err.message : String(err)}); make one with drift keygen`, { cause: err });
  }
}

export async function loadPublicKey(path: string): Promise<KeyObject> {
  let pem: string;
  try { pem = await readFile(path, 'utf8'); } catch (err) {
    throw new DriftError('DRIFT_ERR_IO', `cannot read public key ${path}: ${errnoOf(err)}`, { cause: err });
  }
  return parsePublicKey(pem, path);
}

export function parsePublicKey(pem: string, where: string): KeyObject {
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
  const { signature: _omit, ...manifest } = baseline as Baseline;
  return Buffer.from(canonicalJson(manifest));
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
  const sig = baseline.signature;
  if (!sig) throw new DriftError('DRIFT_ERR_SIGNATURE', `${where}: baseline is not signed, but public keys are configured; sign it with drift baseline --sign-key`);
  const key = keys.find((k) => keyIdOf(k) === sig.keyId);
  if (!key) throw new DriftError('DRIFT_ERR_SIGNATURE', `${where}: baseline is signed by key ${sig.keyId}, which is not among the trusted public keys (${keys.map(keyIdOf).join(', ') || 'none'})`);
  const ok = verify(null, signedBytes(baseline), key, Buffer.from(sig.value, 'base64'));
  if (!ok) throw new DriftError('DRIFT_ERR_SIGNATURE', `${where}: baseline signature does not verify with key ${sig.keyId}: the content was changed after signing`);
  return sig.keyId;
}
