import { mkdir } from 'node:fs/promises';
import { HashError, readFileChecked } from './hash.js';
import { dirname, join } from 'node:path';
import { createHash, type KeyObject } from 'node:crypto';
import type { Digest } from './protocol/brand.js';
import { canonicalJson, canonicalPieces, digestOf, sortedJson } from './protocol/canonical.js';
import { DriftError, errnoOf } from './protocol/errors.js';
import { BaselineSchema, type Baseline, type FileEntry, type ImageStamp, LIMITS, type Manifest, type Scope } from './protocol/manifest.js';
import { jsonMembers, PackedSection, parseJsonBytes } from './protocol/packed.js';
import type { RuleSet } from './protocol/rules.js';
import { IMAGE_STAMP_PATH } from './identity.js';
import { checkSigned, signBaseline, signedPieces, type TrustedKey } from './sign.js';
import type { SignatureCheck } from './protocol/finding.js';
import { writeFileAtomic } from './atomic.js';

/**
 * The digest that names a baseline: sha256 of the canonical manifest without its
 * signature (the same bytes the signature covers), so signing does not change it.
 */
export function baselineDigest(baseline: Manifest | Baseline | PackedBaseline): Digest {
  // One helper defines what is signed and what is digested: they must never differ.
  const hash = createHash('sha256');
  for (const piece of isPacked(baseline) ? packedSignedPieces(baseline) : signedPieces(baseline)) hash.update(piece);
  return `sha256:${hash.digest('hex')}` as Digest;
}

/**
 * A baseline with its file entries packed (each kept as its canonical JSON, see
 * PackedSection): what `drift scan` holds while it collects, a third of the heap of
 * the parsed baseline. Every other member is as parsed.
 */
export type PackedBaseline = Omit<Baseline, 'files'> & { files?: PackedSection<FileEntry> };

function isPacked(baseline: Manifest | Baseline | PackedBaseline): baseline is PackedBaseline {
  return baseline.files instanceof PackedSection;
}

/** A parsed baseline with its file entries packed. */
export function packBaseline(baseline: Baseline): PackedBaseline {
  const { files, ...rest } = baseline;
  if (files === undefined) return rest;
  const packed = new PackedSection<FileEntry>();
  for (const key in files) packed.set(key, files[key] as FileEntry);
  return { ...rest, files: packed };
}

/** The bytes a packed baseline's signature covers (signedBytes' bytes), written from its pieces. */
function packedSignedBytes(baseline: PackedBaseline): Buffer {
  let length = 0;
  for (const piece of packedSignedPieces(baseline)) length += Buffer.byteLength(piece);
  const out = Buffer.allocUnsafe(length);
  let at = 0;
  for (const piece of packedSignedPieces(baseline)) at += out.write(piece, at);
  return out;
}

/** signedPieces of a packed baseline: the canonical JSON of the baseline without its signature, in pieces. */
function* packedSignedPieces(baseline: PackedBaseline): Generator<string, void, undefined> {
  const members = baseline as Record<string, unknown>;
  const keys = Object.keys(members).filter((k) => k !== 'signature' && members[k] !== undefined).sort();
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i] as string;
    yield `${i === 0 ? '{' : ','}${JSON.stringify(key)}:`;
    const value = members[key];
    if (value instanceof PackedSection) yield* value.pieces();
    else yield* canonicalPieces(value);
  }
  yield keys.length === 0 ? '{}' : '}';
}

/** checkBaseline (agent/sign.ts) of a packed baseline. */
export function checkPackedBaseline(baseline: PackedBaseline, keys: readonly TrustedKey[], where: string): SignatureCheck {
  return checkSigned(baseline.signature, () => packedSignedBytes(baseline), keys, where);
}

let skeletonSchema: ReturnType<typeof makeSkeletonSchema> | undefined;
function makeSkeletonSchema() {
  return BaselineSchema.omit({ files: true });
}
/** The schemas of a files entry's key and value: those of BaselineSchema, taken from it. */
const filesRecord = () => BaselineSchema.shape.files.unwrap().out;

/**
 * The baseline in `bytes` (JSON), packed as it is read: each file entry is parsed,
 * checked against the manifest's schema and kept as its canonical JSON, one at a
 * time, so that neither the whole parsed baseline nor a schema copy of it is ever
 * held. Null when the bytes are anything but a valid baseline (not JSON, a bound
 * exceeded, a member that fails its schema, a duplicate or `__proto__` member): the
 * caller then reads them as before, which names the problem. What is accepted is
 * exactly what JSON.parse and BaselineSchema accept, with the same values.
 */
export function packBaselineBytes(bytes: Buffer): PackedBaseline | null {
  try {
    const members: Record<string, unknown> = {};
    let files: PackedSection<FileEntry> | undefined;
    for (const m of jsonMembers(bytes)) {
      if (m.key === '__proto__' || Object.hasOwn(members, m.key) || (m.key === 'files' && files !== undefined)) return null;
      if (m.key !== 'files') {
        members[m.key] = parseJsonBytes(bytes, m.start, m.end);
        continue;
      }
      const packed = packFiles(bytes, m.start, m.end);
      if (packed === null) return null;
      files = packed;
    }
    const parsed = (skeletonSchema ??= makeSkeletonSchema()).safeParse(members);
    if (!parsed.success) return null;
    return files === undefined ? parsed.data : { ...parsed.data, files };
  } catch {
    return null;
  }
}

/** The files section in `bytes[start, end)`, each entry checked and packed; null when any is not valid. */
function packFiles(bytes: Buffer, start: number, end: number): PackedSection<FileEntry> | null {
  const { keyType, valueType } = filesRecord();
  const files = new PackedSection<FileEntry>();
  for (const m of jsonMembers(bytes, start, end)) {
    if (m.key === '__proto__' || !keyType.safeParse(m.key).success) return null;
    const entry = valueType.safeParse(parseJsonBytes(bytes, m.start, m.end));
    if (!entry.success) return null;
    files.set(m.key, entry.data);
    // The schema's own bound on entries (BaselineSchema's files): the caller's JSON.parse path names it.
    if (files.size > LIMITS.files) return null;
  }
  return files;
}

/** The largest baked baseline an agent reads (a host's file is hostile input). */
export const BAKED_BASELINE_MAX_BYTES = 256 * 1024 * 1024;

/** Where a baked image keeps its baseline, relative to the root: agents read their scope from it. */
export const BAKED_BASELINE_PATH = 'etc/drift/baseline.json';

/** The digest of a scope: its rules without their sources, so that moving a rule file changes nothing. */
export function scopeDigest(scope: Pick<Scope, 'vars' | 'watch' | 'ignore' | 'expect'>): Digest {
  const bare = <T extends { source?: unknown }>(rules: readonly T[]): Array<Omit<T, 'source'>> => rules.map(({ source: _s, ...rest }) => rest);
  return digestOf({ vars: scope.vars, watch: bare(scope.watch), ignore: bare(scope.ignore), expect: bare(scope.expect) });
}

/** The scope of a merged rule set: what a baseline records (everything but policy). */
export function scopeOf(rules: RuleSet): Scope {
  const copy = <T>(list: readonly T[]): T[] => JSON.parse(JSON.stringify(list)) as T[];
  const body = { vars: { ...rules.vars }, watch: copy(rules.watch), ignore: copy(rules.ignore), expect: copy(rules.expect) };
  return { digest: scopeDigest(body), ...body };
}

/**
 * The rules to collect and compare with: the baseline's recorded scope (watch,
 * ignore, expect, vars) with the operator's policy. A baseline without a scope
 * (made before scopes were recorded) leaves `rules` as they are. Throws
 * DRIFT_ERR_MANIFEST when the scope's digest does not match its rules.
 */
export function scopedRules(baseline: Pick<Baseline, 'scope'>, rules: RuleSet, where: string): RuleSet {
  const scope = baseline.scope;
  if (!scope) return rules;
  if (scopeDigest(scope) !== scope.digest) {
    throw new DriftError('DRIFT_ERR_MANIFEST', `${where}: the recorded scope does not match its digest ${scope.digest}; the baseline was altered after baking: bake it again`);
  }
  return { vars: { ...scope.vars }, watch: scope.watch, ignore: scope.ignore, expect: scope.expect, policy: rules.policy };
}

/** Turn a freshly collected manifest into an image's baseline with its scope, signed when a key is given. */
export function makeBaseline(manifest: Manifest, image: { id: string; version?: string }, key: KeyObject | null, scope?: Scope): Baseline {
  const withImage: Baseline = { ...manifest, host: { ...manifest.host, image: { ...image } } };
  if (scope) withImage.scope = scope;
  return key ? signBaseline(withImage, key) : withImage;
}

/**
 * The scope baked into a root: `etc/drift/baseline.json` when it exists, parses,
 * and its digest is the one the image stamp names (so a baseline file swapped on
 * the host is not taken for the image's). Returns null with the reason when there
 * is none to use; the caller then falls back on the host's rules and says so.
 */
export async function readBakedScope(root: string, stampDigest: string | undefined, parse: (data: unknown) => Baseline | null): Promise<{ baseline: Baseline } | { none: string }> {
  const path = join(root, BAKED_BASELINE_PATH);
  if (stampDigest === undefined) return { none: `no image stamp with a baseline digest under ${root}` };
  let text: string;
  try {
    // Never through a symlink, never a FIFO or device, never more than a baseline may hold.
    text = readFileChecked(path, BAKED_BASELINE_MAX_BYTES, { checkPath: false }).toString('utf8');
  } catch (err) {
    const code = err instanceof HashError ? err.code : errnoOf(err);
    return { none: code.startsWith('over the per-file') ? `${path} is more than the ${BAKED_BASELINE_MAX_BYTES} bytes a baseline may have` : `cannot read ${path}: ${code}` };
  }
  let data: unknown;
  try { data = JSON.parse(text); } catch {
    return { none: `${path} is not JSON` };
  }
  const baseline = parse(data);
  if (!baseline) return { none: `${path} is not a drift baseline` };
  const digest = baselineDigest(baseline);
  if (digest !== stampDigest) return { none: `${path} has digest ${digest}, but the image stamp names ${stampDigest}` };
  if (!baseline.scope) return { none: `${path} records no scope (baked by an older drift)` };
  return { baseline };
}

/** Serialise a baseline as canonical JSON with a trailing newline. */
export function serialiseBaseline(baseline: Baseline): string {
  return `${canonicalJson(baseline)}\n`;
}

/** Stamp the image identity into a root (`etc/drift/image.json`) so hosts know their image. */
export async function stampImage(root: string, baseline: Baseline, now: Date = new Date()): Promise<ImageStamp> {
  const image = baseline.host.image;
  if (!image) throw new DriftError('DRIFT_ERR_USAGE', 'cannot stamp a baseline without an image id');
  const stamp: ImageStamp = { schema: 'drift.image/v1', id: image.id, baselineDigest: baselineDigest(baseline), bakedAt: now.toISOString() };
  if (image.version !== undefined) stamp.version = image.version;
  const path = join(root, IMAGE_STAMP_PATH);
  try { await mkdir(dirname(path), { recursive: true, mode: 0o755 }); } catch (err) {
    throw new DriftError('DRIFT_ERR_IO', `cannot create ${dirname(path)}: ${errnoOf(err)}`, { cause: err });
  }
  await writeFileAtomic(path, sortedJson(stamp));
  return stamp;
}
