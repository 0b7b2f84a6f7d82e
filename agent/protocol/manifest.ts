import { z } from 'zod';
import { ExpectRuleSchema, IgnoreRuleSchema, WatchRuleSchema } from './rules.js';
import { MAX_ACL_ENTRIES, MAX_XATTRS } from './file-limits.js';

/**
 * The shape of a manifest (`drift.manifest/v1`), declared once here; the TypeScript
 * types are derived from these schemas. A manifest is the state of one host, or of
 * one image at bake time (a baseline). See DESIGN.md §3.
 */
export const MANIFEST_SCHEMA = 'drift.manifest/v1';

/** The schema name of an agent's report to the collector (docs/api.md, POST /v1/reports). */
export const REPORT_REQUEST_SCHEMA = 'drift.report-request/v1';

/**
 * Bounds of every string and list a manifest carries. Manifests come from hosts
 * where users can write, so a collector must never trust their sizes: each bound is
 * well above what a real host sends (a live Debian host watches ~80,000 files) and
 * far below what would stall a parser. docs/api.md lists them.
 */
export const LIMITS = Object.freeze({
  /** A path (file key, symlink target, unread path): Linux PATH_MAX. */
  path: 4096,
  /** Any other short text: package keys and versions, process and port keys, reasons, owners. */
  text: 1024,
  /** A hostname (RFC 1035: 253 characters, with some slack). */
  hostname: 255,
  /** Host, machine, instance and image ids. */
  id: 256,
  /** Kept file content: 64 KiB of bytes, twice that for escapes. */
  content: 128 * 1024,
  /** Entries per section. */
  packages: 100_000,
  files: 1_000_000,
  processes: 100_000,
  ports: 100_000,
  /** Entries of `unread`. */
  unread: 100_000,
});

/**
 * A record of at most `max` entries with keys of at most `keyMax` characters; the
 * entries are counted before any is parsed, so an oversized one costs one count.
 */
function boundedRecord<V extends z.ZodType>(max: number, keyMax: number, value: V) {
  return z.unknown()
    .refine((v) => v === null || typeof v !== 'object' || Object.keys(v).length <= max, { message: `more than ${max} entries (the collector's bound)` })
    .pipe(z.record(z.string().max(keyMax), value));
}

const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, 'a 64-character lowercase hex sha256');
const digest = z.string().regex(/^sha256:[0-9a-f]{64}$/, 'a sha256:<hex> digest');

/** The image a host was baked from, as stamped in `etc/drift/image.json`. */
export const ImageRefSchema = z.object({
  id: z.string().min(1).max(LIMITS.id),
  version: z.string().max(LIMITS.text).optional(),
  baselineDigest: digest.optional(),
});
export type ImageRef = z.infer<typeof ImageRefSchema>;

/**
 * The SSH public keys of an instance, from its metadata (cloud-init's
 * `instance-data.json`, `v1.public_ssh_keys`), so that the compare engine (here or
 * in the collector) can hold the default user's `authorized_keys` to exactly them.
 */
export const InstanceKeysSchema = z.strictObject({
  /** The file the keys were read from, as seen from the root. */
  source: z.string().min(1).max(256),
  keys: z.array(z.string().min(1).max(16384)).max(100),
});
export type InstanceKeys = z.infer<typeof InstanceKeysSchema>;

/** Who the manifest describes. */
export const HostInfoSchema = z.object({
  hostname: z.string().max(LIMITS.hostname),
  machineId: z.string().max(LIMITS.id),
  instanceId: z.string().max(LIMITS.id).optional(),
  image: ImageRefSchema.optional(),
  /** The SSH keys the instance was launched with, where its metadata is readable (agent/instance-data.ts). */
  instanceKeys: InstanceKeysSchema.optional(),
});
export type HostInfo = z.infer<typeof HostInfoSchema>;

/**
 * One installed package, keyed `manager:name[:arch]` (e.g. `dpkg:openssl:amd64`,
 * `rpm:bash:x86_64`, `apk:musl:x86_64`).
 */
export const PackageEntrySchema = z.object({
  version: z.string().max(LIMITS.text),
  /** The source package it was built from, where the manager records one. */
  source: z.string().max(LIMITS.text).optional(),
});
export type PackageEntry = z.infer<typeof PackageEntrySchema>;

export const FILE_TYPES = ['file', 'dir', 'symlink', 'other'] as const;

export { MAX_ACL_ENTRIES, MAX_XATTRS };
export type FileType = (typeof FILE_TYPES)[number];

/**
 * One watched path, keyed by its absolute path as seen from the root (`/etc/hosts`,
 * never the `--root` prefix).
 */
export const FileEntrySchema = z.object({
  type: z.enum(FILE_TYPES),
  /** Four octal digits, setuid/setgid/sticky included: `0644`, `4755`. */
  mode: z.string().regex(/^[0-7]{4}$/, 'four octal digits'),
  uid: z.number().int().nonnegative(),
  gid: z.number().int().nonnegative(),
  /** Bytes, for regular files and symlinks (directory sizes are filesystem noise). */
  size: z.number().int().nonnegative().optional(),
  /** Content hash, regular files only. */
  sha256: sha256Hex.optional(),
  /** Symlink target as stored in the link; links are never followed. */
  target: z.string().max(LIMITS.path).optional(),
  /** Small text content, only where a rule asks for it and never for secrets. */
  content: z.string().max(LIMITS.content).optional(),
  /** The package that installed the path: `dpkg:openssh-server`. */
  owner: z.string().max(LIMITS.text).optional(),
  /** True when the owning package declares the path a conffile. */
  conffile: z.boolean().optional(),
  /**
   * Last modification, whole seconds since the epoch (toward zero), for every type
   * but folders (whose mtime moves with every entry added or removed, each of which
   * is its own finding).
   */
  mtime: z.number().int().optional(),
  /** Hard links of a regular file, when not 1 (a link made anywhere else shows here). */
  nlink: z.number().int().min(2).optional(),
  /** Device numbers of a device node: `c 1:3` (character) or `b 8:0` (block). */
  device: z.string().regex(/^[bc] \d{1,10}:\d{1,10}$/, 'b|c MAJOR:MINOR').optional(),
  /** File capabilities (`security.capability`) in getcap's text form: `cap_net_raw=ep`. */
  caps: z.string().max(4096).optional(),
  /** Extended POSIX access ACL as getfacl prints it, numeric ids: `user::rwx`, `user:1000:r-x`, `mask::r-x`. */
  acl: z.array(z.string().max(32)).max(MAX_ACL_ENTRIES).optional(),
  /** Default POSIX ACL of a folder, same form. */
  defaultAcl: z.array(z.string().max(32)).max(MAX_ACL_ENTRIES).optional(),
  /** Other extended attributes: name → `sha256:<hex>` of the value; `security.selinux` → its label. */
  xattrs: z
    .record(z.string().max(255), z.string().max(300))
    .refine((r) => Object.keys(r).length <= MAX_XATTRS, `at most ${MAX_XATTRS} extended attributes`)
    .optional(),
  /** Inode flags set, as lsattr letters (`i` immutable, `a` append-only); absent: none, or not readable (then in `unread`). */
  flags: z.string().regex(/^[A-Za-z]{1,32}$/, 'lsattr letters').optional(),
});
export type FileEntry = z.infer<typeof FileEntrySchema>;

/** Running processes of one identity, keyed `executable|user` (`/usr/sbin/sshd|root`). */
export const ProcessEntrySchema = z.object({
  count: z.number().int().positive().max(4_194_304),
  /** sha256 of the executable image the process runs (read through /proc/PID/exe). */
  exeSha256: sha256Hex.optional(),
  /** The executable was deleted from disk after the process started. */
  deleted: z.boolean(),
  /** The path now holds another file than the one the process runs. */
  replaced: z.boolean().optional(),
});
export type ProcessEntry = z.infer<typeof ProcessEntrySchema>;

/** A listening socket, keyed `proto:address:port` (`tcp:0.0.0.0:22`, `tcp6:[::]:22`, `udp:127.0.0.1:323`). */
export const PortEntrySchema = z.object({
  /** Executable path of the owning process, when it could be found. */
  process: z.string().max(LIMITS.path).optional(),
});
export type PortEntry = z.infer<typeof PortEntrySchema>;

/** A path or source that could not be read, and why (an errno code or a short reason). */
export const UnreadSchema = z.object({
  path: z.string().max(LIMITS.path),
  reason: z.string().max(LIMITS.text),
});
export type Unread = z.infer<typeof UnreadSchema>;

export const SECTIONS = ['packages', 'files', 'processes', 'ports'] as const;
export type SectionName = (typeof SECTIONS)[number];

/**
 * One digest per collected section plus a root digest over them. A section that
 * was not collected (processes and ports of an offline root) has no digest.
 */
export const DigestsSchema = z.object({
  root: digest,
  packages: digest.optional(),
  files: digest.optional(),
  processes: digest.optional(),
  ports: digest.optional(),
});
export type Digests = z.infer<typeof DigestsSchema>;

export const ManifestSchema = z.object({
  schema: z.literal(MANIFEST_SCHEMA),
  host: HostInfoSchema,
  collectedAt: z.string().max(64),
  agent: z.object({ version: z.string().max(LIMITS.text) }),
  digests: DigestsSchema,
  packages: boundedRecord(LIMITS.packages, LIMITS.text, PackageEntrySchema).optional(),
  files: boundedRecord(LIMITS.files, LIMITS.path, FileEntrySchema).optional(),
  /** Absent when not collected (an offline root without `--proc`). */
  processes: boundedRecord(LIMITS.processes, LIMITS.path + 64, ProcessEntrySchema).optional(),
  ports: boundedRecord(LIMITS.ports, LIMITS.text, PortEntrySchema).optional(),
  unread: z.array(UnreadSchema).max(LIMITS.unread),
});
export type Manifest = z.infer<typeof ManifestSchema>;

/** The sections of a manifest, as collectors produce them. */
export interface Sections {
  packages: Record<string, PackageEntry>;
  files: Record<string, FileEntry>;
  processes: Record<string, ProcessEntry>;
  ports: Record<string, PortEntry>;
}

/** A detached ed25519 signature over the canonical JSON of a manifest without its `signature`. */
export const SignatureSchema = z.object({
  alg: z.literal('ed25519'),
  /** First 16 hex characters of the sha256 of the public key (SPKI DER). */
  keyId: z.string().regex(/^[0-9a-f]{16}$/),
  /** Base64 signature. */
  value: z.string().min(1).max(1024),
});
export type Signature = z.infer<typeof SignatureSchema>;

/** Bounds on a recorded scope: a baseline is read from disk and from the network. */
export const SCOPE_LIMITS = { rules: 10_000, text: 4096, vars: 1000 } as const;

const ruleSource = z.strictObject({
  file: z.string().max(SCOPE_LIMITS.text),
  line: z.number().int().nonnegative(),
  col: z.number().int().nonnegative(),
});
const boundedText = z.string().max(SCOPE_LIMITS.text);

/**
 * The watch scope an image was baked with: the merged watch, ignore and expect
 * rules and the variables they use, each rule with the `file:line:col` it was
 * written at, and `digest` (`sha256:` of the canonical JSON of `vars`, `watch`,
 * `ignore` and `expect` without their sources). Part of the signed baseline, so
 * that what is watched travels with the image: agents and scans collect and
 * compare exactly this scope, whatever rule files the host holds now. Policy
 * (severity and action) is not part of it: it stays the operator's.
 */
export const ScopeSchema = z.strictObject({
  digest,
  vars: z.record(boundedText, boundedText).refine((v) => Object.keys(v).length <= SCOPE_LIMITS.vars, `at most ${SCOPE_LIMITS.vars} variables`),
  watch: z.array(WatchRuleSchema.extend({ path: boundedText.min(1), source: ruleSource.optional() })).max(SCOPE_LIMITS.rules),
  ignore: z.array(IgnoreRuleSchema.extend({ why: boundedText.min(1), source: ruleSource.optional() })).max(SCOPE_LIMITS.rules),
  expect: z.array(ExpectRuleSchema.extend({
    path: boundedText.min(1), lines: z.array(boundedText).max(SCOPE_LIMITS.rules).optional(), why: boundedText.min(1), source: ruleSource.optional(),
  })).max(SCOPE_LIMITS.rules),
});
export type Scope = z.infer<typeof ScopeSchema>;

/** A baseline is an image's manifest, optionally signed by the bake pipeline, with the scope it was baked with. */
export const BaselineSchema = ManifestSchema.extend({
  signature: SignatureSchema.optional(),
  /** Absent in baselines from before the scope was recorded: then the host's rules decide. */
  scope: ScopeSchema.optional(),
});
export type Baseline = z.infer<typeof BaselineSchema>;

/** The identity file stamped into an image at bake time (`etc/drift/image.json`). */
export const ImageStampSchema = z.object({
  schema: z.literal('drift.image/v1'),
  id: z.string().min(1),
  version: z.string().optional(),
  baselineDigest: digest,
  bakedAt: z.string(),
});
export type ImageStamp = z.infer<typeof ImageStampSchema>;
