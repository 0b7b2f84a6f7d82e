import { z } from 'zod';

/**
 * The shape of a manifest (`drift.manifest/v1`), declared once here; the TypeScript
 * types are derived from these schemas. A manifest is the state of one host, or of
 * one image at bake time (a baseline). See DESIGN.md §3.
 */
export const MANIFEST_SCHEMA = 'drift.manifest/v1';

/** The schema name of an agent's report to the collector (docs/api.md, POST /v1/reports). */
export const REPORT_REQUEST_SCHEMA = 'drift.report-request/v1';

const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, 'a 64-character lowercase hex sha256');
const digest = z.string().regex(/^sha256:[0-9a-f]{64}$/, 'a sha256:<hex> digest');

/** The image a host was baked from, as stamped in `etc/drift/image.json`. */
export const ImageRefSchema = z.object({
  id: z.string().min(1),
  version: z.string().optional(),
  baselineDigest: digest.optional(),
});
export type ImageRef = z.infer<typeof ImageRefSchema>;

/** Who the manifest describes. */
export const HostInfoSchema = z.object({
  hostname: z.string(),
  machineId: z.string(),
  instanceId: z.string().optional(),
  image: ImageRefSchema.optional(),
});
export type HostInfo = z.infer<typeof HostInfoSchema>;

/**
 * One installed package, keyed `manager:name[:arch]` (e.g. `dpkg:openssl:amd64`,
 * `rpm:bash:x86_64`, `apk:musl:x86_64`).
 */
export const PackageEntrySchema = z.object({
  version: z.string(),
  /** The source package it was built from, where the manager records one. */
  source: z.string().optional(),
});
export type PackageEntry = z.infer<typeof PackageEntrySchema>;

export const FILE_TYPES = ['file', 'dir', 'symlink', 'other'] as const;

/** Extended attributes recorded per path at most (the collector lists the rest as unread). */
export const MAX_XATTRS = 64;
/** POSIX ACL entries per ACL at most (a real one has a handful; the kernel allows ~8,000). */
export const MAX_ACL_ENTRIES = 256;
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
  target: z.string().optional(),
  /** Small text content, only where a rule asks for it and never for secrets. */
  content: z.string().optional(),
  /** The package that installed the path: `dpkg:openssh-server`. */
  owner: z.string().optional(),
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
  count: z.number().int().positive(),
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
  process: z.string().optional(),
});
export type PortEntry = z.infer<typeof PortEntrySchema>;

/** A path or source that could not be read, and why (an errno code or a short reason). */
export const UnreadSchema = z.object({
  path: z.string(),
  reason: z.string(),
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
  collectedAt: z.string(),
  agent: z.object({ version: z.string() }),
  digests: DigestsSchema,
  packages: z.record(z.string(), PackageEntrySchema).optional(),
  files: z.record(z.string(), FileEntrySchema).optional(),
  /** Absent when not collected (an offline root without `--proc`). */
  processes: z.record(z.string(), ProcessEntrySchema).optional(),
  ports: z.record(z.string(), PortEntrySchema).optional(),
  unread: z.array(UnreadSchema),
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
  value: z.string().min(1),
});
export type Signature = z.infer<typeof SignatureSchema>;

/** A baseline is an image's manifest, optionally signed by the bake pipeline. */
export const BaselineSchema = ManifestSchema.extend({
  signature: SignatureSchema.optional(),
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
