import { createHash } from 'node:crypto';
import { isUtf8 } from 'node:buffer';
import { constants as osConstants } from 'node:os';
import { getAttributeSync, listAttributesSync } from '@napi-rs/xattr';
// Not from manifest.ts: that would load the schema library into every scan's collector.
import { MAX_ACL_ENTRIES, MAX_XATTRS } from '../protocol/file-limits.js';

/**
 * Attributes of a file beyond its stat: file capabilities, POSIX ACLs, other
 * extended attributes, and inode flags. The decoders are pure functions over the
 * bytes the kernel stores (every byte is hostile: sizes and counts are checked,
 * and a value that does not decode is recorded by its digest, never guessed);
 * `readXattrs` and `lsattr` are the I/O at the edges.
 *
 * Extended attributes are read with `@napi-rs/xattr`, whose calls are the l*
 * variants (llistxattr, lgetxattr): a symlink's own attributes, never its
 * target's. Inode flags need the FS_IOC_GETFLAGS ioctl, which Node cannot make:
 * they are read by `lsattr` from e2fsprogs, in batches (see flags.ts).
 */

/** The xattr that holds file capabilities (struct vfs_cap_data). */
export const CAPS_XATTR = 'security.capability';
/** The xattrs that hold POSIX ACLs (struct posix_acl_xattr_header + entries). */
export const ACL_ACCESS_XATTR = 'system.posix_acl_access';
export const ACL_DEFAULT_XATTR = 'system.posix_acl_default';
/** The SELinux label, recorded as its text. */
export const SELINUX_XATTR = 'security.selinux';

export { MAX_ACL_ENTRIES, MAX_XATTRS };
/** Longest SELinux label kept as text. */
const MAX_LABEL_BYTES = 255;

/** Capability names by number, as libcap prints them (linux/capability.h, up to 6.x). */
export const CAP_NAMES = [
  'cap_chown', 'cap_dac_override', 'cap_dac_read_search', 'cap_fowner', 'cap_fsetid', 'cap_kill', 'cap_setgid',
  'cap_setuid', 'cap_setpcap', 'cap_linux_immutable', 'cap_net_bind_service', 'cap_net_broadcast', 'cap_net_admin',
  'cap_net_raw', 'cap_ipc_lock', 'cap_ipc_owner', 'cap_sys_module', 'cap_sys_rawio', 'cap_sys_chroot', 'cap_sys_ptrace',
  'cap_sys_pacct', 'cap_sys_admin', 'cap_sys_boot', 'cap_sys_nice', 'cap_sys_resource', 'cap_sys_time',
  'cap_sys_tty_config', 'cap_mknod', 'cap_lease', 'cap_audit_write', 'cap_audit_control', 'cap_setfcap',
  'cap_mac_override', 'cap_mac_admin', 'cap_syslog', 'cap_wake_alarm', 'cap_block_suspend', 'cap_audit_read',
  'cap_perfmon', 'cap_bpf', 'cap_checkpoint_restore',
] as const;

const VFS_CAP_REVISION_MASK = 0xff000000;
const VFS_CAP_FLAGS_EFFECTIVE = 0x000001;
const VFS_CAP_REVISION_1 = 0x01000000;
const VFS_CAP_REVISION_2 = 0x02000000;
const VFS_CAP_REVISION_3 = 0x03000000;

const digestOf = (value: Uint8Array): string => `sha256:${createHash('sha256').update(value).digest('hex')}`;

/**
 * A `security.capability` value (vfs_cap_data revision 1, 2 or 3) in getcap's
 * text form: capabilities with the same flags joined by `,`, then `=` and the
 * flags (`e` effective, `i` inheritable, `p` permitted), clauses after the first
 * with `+`: `cap_net_raw=ep`, `cap_chown=i cap_setuid+ep`. A namespaced (revision
 * 3) value with a non-zero root id gets ` [rootid=N]`. An empty set is `=`; a
 * value of another size or revision is `invalid sha256:…` (still a capability
 * xattr, so still drift if it appears).
 */
export function decodeCaps(value: Uint8Array): string {
  const view = new DataView(value.buffer, value.byteOffset, value.byteLength);
  if (value.length < 4) return `invalid ${digestOf(value)}`;
  const magic = view.getUint32(0, true);
  const revision = (magic & VFS_CAP_REVISION_MASK) >>> 0;
  const words = revision === VFS_CAP_REVISION_1 ? 1 : revision === VFS_CAP_REVISION_2 || revision === VFS_CAP_REVISION_3 ? 2 : 0;
  const size = words === 0 ? -1 : 4 + words * 8 + (revision === VFS_CAP_REVISION_3 ? 4 : 0);
  if (value.length !== size) return `invalid ${digestOf(value)}`;
  const effective = (magic & VFS_CAP_FLAGS_EFFECTIVE) !== 0;
  // Flags per capability number: bit 0 e, 1 i, 2 p.
  const byFlags = new Map<string, string[]>();
  for (let w = 0; w < words; w++) {
    const permitted = view.getUint32(4 + w * 8, true);
    const inheritable = view.getUint32(8 + w * 8, true);
    for (let bit = 0; bit < 32; bit++) {
      const p = ((permitted >>> bit) & 1) === 1;
      const i = ((inheritable >>> bit) & 1) === 1;
      if (!p && !i) continue;
      const flags = `${effective ? 'e' : ''}${i ? 'i' : ''}${p ? 'p' : ''}`;
      const n = w * 32 + bit;
      const name = CAP_NAMES[n] ?? `cap_${n}`;
      const list = byFlags.get(flags);
      if (list) list.push(name);
      else byFlags.set(flags, [name]);
    }
  }
  const clauses = [...byFlags.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([flags, names], k) => `${names.join(',')}${k === 0 ? '=' : '+'}${flags}`);
  let text = clauses.length === 0 ? '=' : clauses.join(' ');
  if (revision === VFS_CAP_REVISION_3) {
    const rootid = view.getUint32(4 + words * 8, true);
    if (rootid !== 0) text += ` [rootid=${rootid}]`;
  }
  return text;
}

const ACL_VERSION = 2;
const ACL_TAGS: Record<number, string> = { 0x01: 'user:', 0x02: 'user:', 0x04: 'group:', 0x08: 'group:', 0x10: 'mask:', 0x20: 'other:' };
const ACL_NAMED = new Set([0x02, 0x08]);

/**
 * A `system.posix_acl_*` value as the entries getfacl prints, in stored order,
 * with numeric ids (no name lookup: the host's user database is part of what may
 * have drifted, and ids are what the kernel checks): `user::rw-`, `user:1000:rwx`,
 * `group::r-x`, `mask::rwx`, `other::r--`. Null when the value is not a valid ACL
 * (wrong version or size, an unknown tag, more than MAX_ACL_ENTRIES entries).
 */
export function decodeAcl(value: Uint8Array): string[] | null {
  if (value.length < 4 || (value.length - 4) % 8 !== 0) return null;
  const view = new DataView(value.buffer, value.byteOffset, value.byteLength);
  if (view.getUint32(0, true) !== ACL_VERSION) return null;
  const count = (value.length - 4) / 8;
  if (count > MAX_ACL_ENTRIES) return null;
  const entries: string[] = [];
  for (let k = 0; k < count; k++) {
    const at = 4 + k * 8;
    const tag = view.getUint16(at, true);
    const perm = view.getUint16(at + 2, true);
    const prefix = ACL_TAGS[tag];
    if (prefix === undefined || (perm & ~7) !== 0) return null;
    const id = ACL_NAMED.has(tag) ? String(view.getUint32(at + 4, true)) : '';
    entries.push(`${prefix}${id}:${perm & 4 ? 'r' : '-'}${perm & 2 ? 'w' : '-'}${perm & 1 ? 'x' : '-'}`);
  }
  return entries;
}

/** The SELinux label text of a `security.selinux` value (NUL-terminated), or its digest when it is not plain text. */
export function selinuxLabel(value: Uint8Array): string {
  let end = value.length;
  if (end > 0 && value[end - 1] === 0) end -= 1;
  const text = Buffer.from(value.buffer, value.byteOffset, end);
  // eslint-disable-next-line no-control-regex
  if (end > 0 && end <= MAX_LABEL_BYTES && isUtf8(text) && !/[\u0000-\u001f\u007f]/.test(text.toString('utf8'))) return text.toString('utf8');
  return digestOf(value);
}

/** What a path's extended attributes give its FileEntry. */
export interface XattrFacts {
  caps?: string;
  acl?: string[];
  defaultAcl?: string[];
  /** Other attributes: name → `sha256:<hex>` of the value (`security.selinux` → its label). */
  xattrs?: Record<string, string>;
}

/** A read that went wrong for one path, for `unread` (`xattrs: ENOTSUP`). */
export interface XattrProblem {
  reason: string;
}

/** Names of errno numbers, for the errors of @napi-rs/xattr, which carry only `... (os error N)`. */
const ERRNO_NAMES = new Map<number, string>(Object.entries(osConstants.errno).map(([name, n]) => [n, name]));

/** The errno code of an error thrown by @napi-rs/xattr (`No such file or directory (os error 2)` → ENOENT). */
export function xattrErrno(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const m = /\(os error (\d+)\)/.exec(message);
  if (m) return ERRNO_NAMES.get(Number(m[1])) ?? `errno ${m[1]}`;
  return 'EIO';
}

/**
 * Decode the attributes named `names` whose values `get` returns (null: the
 * attribute vanished since it was listed). Pure; `readXattrs` feeds it from disk.
 * Capabilities and ACLs are decoded into their own facts and left out of `xattrs`.
 */
export function decodeXattrs(names: readonly string[], get: (name: string) => Uint8Array | null): { facts: XattrFacts; problems: XattrProblem[] } {
  const facts: XattrFacts = {};
  const problems: XattrProblem[] = [];
  const sorted = [...names].sort();
  if (sorted.length > MAX_XATTRS) {
    problems.push({ reason: `xattrs: ${sorted.length} attributes, more than the ${MAX_XATTRS} recorded (the first ${MAX_XATTRS} by name are)` });
    sorted.length = MAX_XATTRS;
  }
  for (const name of sorted) {
    const value = get(name);
    if (value === null) continue;
    if (name === CAPS_XATTR) facts.caps = decodeCaps(value);
    else if (name === ACL_ACCESS_XATTR || name === ACL_DEFAULT_XATTR) {
      const entries = decodeAcl(value);
      if (entries === null) {
        problems.push({ reason: `xattrs: ${name} is not a valid POSIX ACL (recorded by its digest)` });
        (facts.xattrs ??= {})[name] = digestOf(value);
      } else if (name === ACL_ACCESS_XATTR) facts.acl = entries;
      else facts.defaultAcl = entries;
    } else (facts.xattrs ??= {})[name] = name === SELINUX_XATTR ? selinuxLabel(value) : digestOf(value);
  }
  return { facts, problems };
}

/** The answer for a path without extended attributes (frozen: it is shared). */
const NONE: XattrsRead = Object.freeze({ facts: Object.freeze({}), problems: Object.freeze([]) });

/** What `readXattrs` found: the decoded attributes, and what could not be read. */
export interface XattrsRead {
  readonly facts: Readonly<XattrFacts>;
  readonly problems: readonly XattrProblem[];
}

/**
 * Read the extended attributes of `path` (never through a symlink): listxattr
 * first, and getxattr only for the names it gives, so that a path without any
 * costs one call. Throws nothing: failures come back as problems.
 */
export function readXattrs(path: string): XattrsRead {
  let names: string[];
  try {
    names = listAttributesSync(path);
  } catch (err) {
    const code = xattrErrno(err);
    // A file system without xattr support has none to hide.
    if (code === 'ENOTSUP' || code === 'EOPNOTSUPP') return NONE;
    return { facts: {}, problems: [{ reason: `xattrs: ${code}` }] };
  }
  // Nearly every path has none: one shared answer, not three objects a path.
  if (names.length === 0) return NONE;
  const failures: XattrProblem[] = [];
  const result = decodeXattrs(names, (name) => {
    try {
      return getAttributeSync(path, name);
    } catch (err) {
      failures.push({ reason: `xattrs: ${name}: ${xattrErrno(err)}` });
      return null;
    }
  });
  result.problems.push(...failures);
  return result;
}
