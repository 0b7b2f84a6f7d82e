import { mkdir } from 'node:fs/promises';
import { HashError, readFileChecked } from './hash.js';
import { dirname, join } from 'node:path';
import { createHash, type KeyObject } from 'node:crypto';
import type { Digest } from './protocol/brand.js';
import { canonicalJson, digestOf, sortedJson } from './protocol/canonical.js';
import { DriftError, errnoOf } from './protocol/errors.js';
import type { Baseline, ImageStamp, Manifest, Scope } from './protocol/manifest.js';
import type { RuleSet } from './protocol/rules.js';
import { IMAGE_STAMP_PATH } from './identity.js';
import { signBaseline, signedPieces } from './sign.js';
import { writeFileAtomic } from './atomic.js';

/**
 * The digest that names a baseline: sha256 of the canonical manifest without its
 * signature (the same bytes the signature covers), so signing does not change it.
 */
export function baselineDigest(baseline: Manifest | Baseline): Digest {
  // One helper defines what is signed and what is digested: they must never differ.
  const hash = createHash('sha256');
  for (const piece of signedPieces(baseline)) hash.update(piece);
  return `sha256:${hash.digest('hex')}` as Digest;
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
export function scopedRules(baseline: Baseline, rules: RuleSet, where: string): RuleSet {
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
