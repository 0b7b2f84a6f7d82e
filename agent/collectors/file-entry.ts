import type { FileEntry, FileType, Unread } from '../protocol/manifest.js';
import type { IgnoreRule, WatchRule } from '../protocol/rules.js';
import { anyBelow, anyMatch, lastMatch, withBaseAt, type CompiledGlob, type PathRules } from '../glob.js';
import { REASONS, type ByteBudget } from '../hash.js';
import type { XattrFacts } from './attrs.js';

/**
 * The decisions of the files section, whatever reads the file system: which paths a
 * walk goes through and records (the scope at a walk root, rule matching, "enter this
 * folder?"), the entry made of a path's stat facts, which files are read whole and
 * which hashed within the byte budgets, and what a failed read does to an entry. The
 * local walk (files.ts) and the agentless collection over SSH (remote/agentless.ts)
 * both make their entries here, so that the two give one manifest for one tree.
 */

/** Largest file whose text is kept as `content`. */
export const CONTENT_CAP_BYTES = 64 * 1024;

/** errno codes of a file system that has no inode flags (ramfs, procfs, some FUSE and network file systems). */
export const NO_FLAGS_HERE: ReadonlySet<string> = new Set(['ENOTTY', 'EOPNOTSUPP', 'ENOTSUP']);
/** The `unread` reason at the first path (by name) of a file system without inode flags. */
export const NO_FLAGS_REASON = 'flags: not supported by the file system of this path (EOPNOTSUPP/ENOTTY): no inode flags were read for any path on it';

/** `0000`…`7777`, indexed by permission bits: formatting a mode is a hot-path lookup. */
const MODE_STRINGS = Array.from({ length: 0o10000 }, (_, m) => m.toString(8).padStart(4, '0'));

/** The permission bits of `mode` as the manifest writes them (`0755`). */
export function modeText(mode: number): string {
  return MODE_STRINGS[mode & 0o7777] as string;
}

/** The watch and ignore rules in force at one path of a walk. */
export interface Scope {
  watch: CompiledGlob<WatchRule>[];
  ignore: CompiledGlob<IgnoreRule>[];
}

/**
 * The rules in force at a walk root: those based at `/` and at each folder down to it.
 * Null when an ignore rule covers a folder on the way (or the root), or `through`
 * refuses a folder above the root (absent, not a folder, reached through a link,
 * unreadable): there is nothing under it to report. `through` is asked top down.
 */
export function rootScope(rules: PathRules, root: string, through: (path: string) => boolean): Scope | null {
  let watch: CompiledGlob<WatchRule>[] = withBaseAt([], rules.watchAt, '/');
  let ignore: CompiledGlob<IgnoreRule>[] = withBaseAt([], rules.ignoreAt, '/');
  if (root === '/') return { watch, ignore };
  const parts = root.split('/');
  for (let i = 2; i <= parts.length; i++) {
    const path = parts.slice(0, i).join('/');
    watch = withBaseAt(watch, rules.watchAt, path);
    ignore = withBaseAt(ignore, rules.ignoreAt, path);
    if (anyMatch(ignore, path)) return null;
    if (path === root) break;
    if (!through(path)) return null;
  }
  return { watch, ignore };
}

/** Whether an ignore rule in force at `key` leaves it out (an ignored folder is not entered). */
export function ignored(ignore: CompiledGlob<IgnoreRule>[], key: string): boolean {
  return ignore.length > 0 && anyMatch(ignore, key);
}

/** The watch rule that records `key` (the last that matches), or null: visited only to go through it. */
export function ruleAt(watch: CompiledGlob<WatchRule>[], key: string): WatchRule | null {
  const match = watch.length > 0 ? lastMatch(watch, key) : undefined;
  return match ? match.rule : null;
}

/** Whether a folder is entered: on the way to a watch base, or where a watch glob may match below it. */
export function enters(rules: PathRules, watch: CompiledGlob<WatchRule>[], key: string): boolean {
  return anyBelow(watch, key) || rules.aboveWatchBase.has(key);
}

/**
 * A name under folder `base` (`/` or `/etc/`) that is not valid UTF-8: not
 * representable in the manifest's UTF-8 keys, so reported unread (EILSEQ) under its
 * escaped name, unless an ignore rule leaves it out; null then.
 */
export function unreadName(rules: PathRules, ignore: CompiledGlob<IgnoreRule>[], base: string, name: Buffer): Unread | null {
  const shown = base + escapeName(name);
  return anyMatch(withBaseAt(ignore, rules.ignoreAt, shown), shown) ? null : { path: shown, reason: 'EILSEQ' };
}

/**
 * The entry of a path from its lstat facts: type, permission bits, owner; mtime but
 * for folders; the link count of a regular file linked more than once; the size of
 * files and symlinks. The rest (hash, content, target, flags, attributes, device) is
 * added by what reads them.
 */
export function newEntry(type: FileType, mode: number, uid: number, gid: number, mtime: number, nlink: number, size: number): FileEntry {
  const entry: FileEntry = { type, mode: modeText(mode), uid, gid };
  if (type !== 'dir') entry.mtime = mtime;
  if (type === 'file') {
    if (nlink !== 1) entry.nlink = nlink;
    entry.size = size;
  } else if (type === 'symlink') entry.size = size;
  return entry;
}

/** Whether a regular file is read whole for its `content` (and hashed from those bytes) rather than hashed alone. */
export function wantsContent(rule: WatchRule, size: number): boolean {
  return rule.content !== undefined && rule.content !== false && size <= CONTENT_CAP_BYTES;
}

/**
 * Whether a regular file of `size` bytes is hashed: 'hash' (its bytes are taken from
 * the scan budget), 'over-file' (larger than one file may be: nothing taken, the
 * reader says why with its allocated size) or 'over-scan' (the scan budget is spent).
 * Asked in walk order, so which files the budget leaves out does not depend on timing.
 */
export function hashBudget(budget: ByteBudget, size: number): 'hash' | 'over-file' | 'over-scan' {
  if (size > budget.maxFileBytes) return 'over-file';
  return budget.take(size) ? 'hash' : 'over-scan';
}

/**
 * A path that could not be read: reported unread; gone files leave the entries, and
 * so do paths that led to another file when opened (their lstat may describe that
 * other file); others keep their metadata.
 */
export function readFailed(entries: Record<string, FileEntry>, unread: Unread[], key: string, reason: string): void {
  unread.push({ path: key, reason });
  if (reason === 'ENOENT' || reason === REASONS.swapped) delete entries[key];
}

/**
 * Inode flag errors, per file system: one without inode flags is reported once, at
 * the first of its paths by name (NO_FLAGS_REASON); any other error at its path.
 */
export class FlagErrors {
  private readonly unsupported = new Map<number | string, string>();

  constructor(private readonly unread: Unread[]) {}

  /** lsattr's error `reason` at `key`, on the file system `dev`. */
  add(key: string, dev: number | string, reason: string): void {
    if (!NO_FLAGS_HERE.has(reason)) {
      this.unread.push({ path: key, reason: `flags: ${reason}` });
      return;
    }
    const first = this.unsupported.get(dev);
    if (first === undefined || key < first) this.unsupported.set(dev, key);
  }

  /** Report the file systems without inode flags. */
  finish(): void {
    for (const key of this.unsupported.values()) this.unread.push({ path: key, reason: NO_FLAGS_REASON });
  }
}

/** Copy the decoded extended attributes onto an entry (only those present). */
export function assignXattrs(entry: FileEntry, facts: XattrFacts): void {
  if (facts.caps !== undefined) entry.caps = facts.caps;
  if (facts.acl !== undefined) entry.acl = facts.acl;
  if (facts.defaultAcl !== undefined) entry.defaultAcl = facts.defaultAcl;
  if (facts.xattrs !== undefined) entry.xattrs = facts.xattrs;
}

/** Length of the valid UTF-8 sequence starting at `i` of `b`, or 0 when the byte there does not start one. */
function utf8SequenceAt(b: Buffer, i: number): number {
  const lead = b[i] as number;
  if (lead < 0x80) return 1;
  const cont = (at: number, lo = 0x80, hi = 0xbf): boolean => at < b.length && (b[at] as number) >= lo && (b[at] as number) <= hi;
  if (lead >= 0xc2 && lead <= 0xdf) return cont(i + 1) ? 2 : 0;
  if (lead >= 0xe0 && lead <= 0xef) {
    // E0: no overlong forms; ED: no UTF-16 surrogates.
    const lo = lead === 0xe0 ? 0xa0 : 0x80;
    const hi = lead === 0xed ? 0x9f : 0xbf;
    return cont(i + 1, lo, hi) && cont(i + 2) ? 3 : 0;
  }
  if (lead >= 0xf0 && lead <= 0xf4) {
    // F0: no overlong forms; F4: nothing above U+10FFFF.
    const lo = lead === 0xf0 ? 0x90 : 0x80;
    const hi = lead === 0xf4 ? 0x8f : 0xbf;
    return cont(i + 1, lo, hi) && cont(i + 2) && cont(i + 3) ? 4 : 0;
  }
  return 0;
}

/**
 * A file name that is not valid UTF-8, written as text for an `unread` path: its
 * valid UTF-8 sequences as they are, each other byte as `\xNN` (lowercase hex), and
 * `\` as `\\` so that no two names give the same text.
 */
export function escapeName(name: Buffer): string {
  let out = '';
  let i = 0;
  while (i < name.length) {
    const n = utf8SequenceAt(name, i);
    if (n === 0) {
      out += `\\x${(name[i] as number).toString(16).padStart(2, '0')}`;
      i += 1;
    } else {
      const text = name.toString('utf8', i, i + n);
      out += text === '\\' ? '\\\\' : text;
      i += n;
    }
  }
  return out;
}
