import type { FileEntry, Manifest, PackageEntry, PortEntry, ProcessEntry } from '../protocol/manifest.js';
import type { Difference } from '../protocol/finding.js';
import { comparePackageVersions } from './versions.js';
import { contentPatch } from './lines.js';

/**
 * Sentences a person can act on, one per finding, and the unified diff of a content
 * change. Pure: everything comes from the two manifests.
 */

export type { Difference };
export type PackageDifference = Difference<'package', PackageEntry>;
export type FileDifference = Difference<'file', FileEntry>;
export type ProcessDifference = Difference<'process', ProcessEntry>;
export type PortDifference = Difference<'port', PortEntry>;
export type AnyDifference = PackageDifference | FileDifference | ProcessDifference | PortDifference;

/** An explanation and, for content changes, a unified diff. */
export interface Explained {
  explanation: string;
  diff?: string;
}

/**
 * Package versions of both manifests, indexed by `manager:name` and by the full key,
 * so that a file's `owner` (`dpkg:openssh-server`, or `dpkg:libc6:amd64`) finds its
 * package. `undefined` for a side whose manifest has no packages section.
 */
export class PackageIndex {
  private readonly before: Map<string, string> | undefined;
  private readonly after: Map<string, string> | undefined;
  constructor(baseline: Pick<Manifest, 'packages'>, manifest: Pick<Manifest, 'packages'>) {
    this.before = PackageIndex.build(baseline.packages);
    this.after = PackageIndex.build(manifest.packages);
  }

  private static build(packages: Record<string, PackageEntry> | undefined): Map<string, string> | undefined {
    if (!packages) return undefined;
    const index = new Map<string, string>();
    for (const key of Object.keys(packages).sort()) {
      const version = (packages[key] as PackageEntry).version;
      index.set(key, version);
      const parts = key.split(':');
      const short = `${parts[0]}:${parts[1] ?? ''}`;
      if (!index.has(short)) index.set(short, version);
    }
    return index;
  }

  /** Versions of the owning package in baseline and manifest; `known` is false when either side lacks packages. */
  versions(owner: string): { known: boolean; before: string | undefined; after: string | undefined } {
    if (!this.before || !this.after) return { known: false, before: undefined, after: undefined };
    return { known: true, before: this.before.get(owner), after: this.after.get(owner) };
  }
}

const packageName = (key: string): string => key.split(':')[1] ?? key;
const packageManager = (key: string): string => key.split(':')[0] ?? '';

function upOrDown(manager: string, before: string, after: string): 'upgraded' | 'downgraded' | 'reinstalled' {
  const order = comparePackageVersions(manager, before, after);
  return order < 0 ? 'upgraded' : order > 0 ? 'downgraded' : 'reinstalled';
}

/** `openssl upgraded 3.0.11-1~deb12u2 → 3.0.15-1~deb12u1, not in image`, and the like. */
export function explainPackage(d: PackageDifference): Explained {
  const name = packageName(d.key);
  const manager = packageManager(d.key);
  const arch = d.key.split(':')[2];
  const label = arch ? `${name} (${manager}, ${arch})` : `${name} (${manager})`;
  if (d.change === 'added' && d.after) return { explanation: `${label} ${d.after.version} installed, not in image` };
  if (d.change === 'removed' && d.before) return { explanation: `${label} ${d.before.version} removed, present in image` };
  const before = d.before as PackageEntry;
  const after = d.after as PackageEntry;
  if (before.version !== after.version) {
    const how = upOrDown(manager, before.version, after.version);
    if (how === 'reinstalled') {
      return { explanation: `${label} version ${before.version} → ${after.version}, equal by ${manager === 'rpm' || manager === 'apk' ? manager : 'dpkg'} ordering, not in image` };
    }
    return { explanation: `${label} ${how} ${before.version} → ${after.version}, not in image` };
  }
  return { explanation: `${label} ${after.version} rebuilt from source ${after.source ?? '(none)'} (image: ${before.source ?? '(none)'})` };
}

const SPECIAL_BITS: ReadonlyArray<[number, string]> = [[4, 'setuid'], [2, 'setgid'], [1, 'sticky']];

/** `mode 0755 → 4755 (setuid gained)`: the special bits gained and lost, by name. */
export function describeModeChange(before: string, after: string): string {
  const b = Number.parseInt(before[0] ?? '0', 8);
  const a = Number.parseInt(after[0] ?? '0', 8);
  const notes: string[] = [];
  for (const [bit, name] of SPECIAL_BITS) {
    if ((a & bit) && !(b & bit)) notes.push(`${name} gained`);
    if ((b & bit) && !(a & bit)) notes.push(`${name} lost`);
  }
  return `mode ${before} → ${after}${notes.length ? ` (${notes.join(', ')})` : ''}`;
}

function specialBits(mode: string): string[] {
  const bits = Number.parseInt(mode[0] ?? '0', 8);
  return SPECIAL_BITS.filter(([bit]) => bits & bit).map(([, name]) => name);
}

function describeEntry(e: FileEntry): string {
  if (e.type === 'symlink') return `symlink → ${e.target ?? '?'}`;
  const special = specialBits(e.mode);
  const extra: string[] = [];
  if (e.device !== undefined) extra.push(`device ${e.device}`);
  if (e.caps !== undefined) extra.push(`capabilities ${e.caps}`);
  if (e.acl !== undefined) extra.push(`ACL ${e.acl.join(',')}`);
  if (e.defaultAcl !== undefined) extra.push(`default ACL ${e.defaultAcl.join(',')}`);
  if (e.flags !== undefined) extra.push(`inode flags ${describeFlags(e.flags)}`);
  if (e.nlink !== undefined) extra.push(`${e.nlink} hard links`);
  if (e.xattrs !== undefined) extra.push(`xattrs ${Object.keys(e.xattrs).sort().join(',')}`);
  return `${e.type}, mode ${e.mode}${special.length ? ` ${special.join('+')}` : ''}, uid ${e.uid}, gid ${e.gid}${extra.map((x) => `, ${x}`).join('')}`;
}

/** What the inode flags that matter most do, for a person who has not met chattr. */
const FLAG_MEANINGS: Record<string, string> = {
  i: 'immutable: no one, root included, may change, rename or delete it until chattr -i',
  a: 'append-only: it can only grow, which hides nothing but keeps tampered logs from being cut',
  u: 'undeletable',
  s: 'secure deletion',
  d: 'left out of dump backups',
  A: 'no atime updates',
  S: 'synchronous writes',
  j: 'data journalling',
};

function describeFlags(flags: string): string {
  return flags === '' ? 'none' : flags;
}

/** `inode flags none → i (i immutable: …)`: the flags set and cleared, by meaning. */
export function describeFlagsChange(before: string | undefined, after: string | undefined): string {
  const b = before ?? '';
  const a = after ?? '';
  const set = [...a].filter((c) => !b.includes(c));
  const cleared = [...b].filter((c) => !a.includes(c));
  const notes = [
    ...set.map((c) => `${c} set${FLAG_MEANINGS[c] ? `: ${FLAG_MEANINGS[c]}` : ''}`),
    ...cleared.map((c) => `${c} cleared${FLAG_MEANINGS[c] ? ` (was ${(FLAG_MEANINGS[c] ?? '').split(':')[0]})` : ''}`),
  ];
  return `inode flags ${describeFlags(b)} → ${describeFlags(a)} (${notes.join('; ')}; lsattr shows them, chattr sets them)`;
}

/** `capabilities none → cap_setuid=ep`, with what the gain means. */
function describeCapsChange(before: string | undefined, after: string | undefined): string {
  const text = `file capabilities ${before ?? 'none'} → ${after ?? 'none'}`;
  if (after === undefined) return `${text} (removed)`;
  return `${text} (it runs with these privileges whoever starts it, as a setuid binary would; getcap shows them, setcap -r removes them)`;
}

/** Entries added and removed between two ACLs: `+user:1000:rwx -mask::r-x`. */
function describeAclChange(label: string, before: readonly string[] | undefined, after: readonly string[] | undefined): string {
  const b = new Set(before ?? []);
  const a = new Set(after ?? []);
  const added = [...a].filter((e) => !b.has(e)).map((e) => `+${e}`);
  const removed = [...b].filter((e) => !a.has(e)).map((e) => `-${e}`);
  const named = [...a].filter((e) => /^(user|group):[^:]+:/.test(e) && !b.has(e));
  const grant = named.length > 0 ? `; grants ${named.join(', ')} beyond what the mode bits say (getfacl shows it, setfacl -b removes it)` : '';
  if (before === undefined) return `${label} added: ${(after ?? []).join(',')}${grant}`;
  if (after === undefined) return `${label} removed (was ${before.join(',')})`;
  return `${label} changed: ${[...removed, ...added].join(' ')}${grant}`;
}

/** Extended attributes added, removed and changed, by name; the SELinux label by value. */
function describeXattrsChange(before: Record<string, string> | undefined, after: Record<string, string> | undefined): string {
  const b = before ?? {};
  const a = after ?? {};
  const notes: string[] = [];
  for (const name of [...new Set([...Object.keys(b), ...Object.keys(a)])].sort()) {
    const x = b[name];
    const y = a[name];
    if (x === y) continue;
    if (name === 'security.selinux' && x !== undefined && y !== undefined) notes.push(`SELinux label ${x} → ${y}`);
    else if (x === undefined) notes.push(`${name} added`);
    else if (y === undefined) notes.push(`${name} removed`);
    else notes.push(`${name} changed`);
  }
  return `extended attributes: ${notes.join(', ')} (getfattr -d -m - shows them)`;
}

const isoSeconds = (s: number | undefined): string => (s === undefined ? '?' : new Date(s * 1000).toISOString().replace('.000Z', 'Z'));

/** Who changed a package-owned path: the package manager (with versions) or someone else. */
function provenance(d: FileDifference, packages: PackageIndex): string | null {
  const entry = d.after ?? d.before;
  if (!entry?.owner) return null;
  const owner = entry.owner;
  const name = packageName(owner);
  const manager = packageManager(owner);
  const role = entry.conffile ? `conffile of ${name}` : `owned by ${name}`;
  const v = packages.versions(owner);
  if (!v.known) return `(${role})`;
  if (v.before !== undefined && v.after !== undefined && v.before !== v.after) {
    const how = upOrDown(manager, v.before, v.after);
    const verb = how === 'downgraded' ? 'downgrade' : how === 'upgraded' ? 'upgrade' : 'reinstallation';
    return `changed by the ${verb} of ${name} ${v.before} → ${v.after}`;
  }
  // A package in neither manifest (not collected, or a stale owner record): say who owns it, claim nothing more.
  if (v.before === undefined && v.after === undefined) return `(${role})`;
  if (v.before === undefined && v.after !== undefined) return `installed with ${name} ${v.after}`;
  if (v.before !== undefined && v.after === undefined) return `removed with ${name} ${v.before}`;
  const verb = d.change === 'added' ? 'created' : d.change === 'removed' ? 'deleted' : 'edited';
  return `${verb} outside the package manager (${role})`;
}

/** The unified diff of a file's content, where both sides are known (an absent side is empty). */
export function contentDiff(d: FileDifference): string | undefined {
  const path = d.key.startsWith('/') ? d.key : `/${d.key}`;
  const before = d.change === 'added' ? '' : d.before?.content;
  const after = d.change === 'removed' ? '' : d.after?.content;
  if (before === undefined || after === undefined || before === after) return undefined;
  return contentPatch(d.change === 'added' ? '/dev/null' : `a${path}`, d.change === 'removed' ? '/dev/null' : `b${path}`, before, after);
}

/**
 * A file finding: added/removed with what it is; modified with what changed (content,
 * mode naming setuid/setgid/sticky, owner, type, symlink target, capabilities, ACL
 * entries, extended attributes, inode flags by meaning, hard links, device
 * numbers, a modification time alone) and, for a
 * package-owned path, whether the package manager did it. `note` (from an expect
 * rule that did not cover the change) is appended.
 */
export function explainFile(d: FileDifference, packages: PackageIndex, note: string | null = null): Explained {
  const parts: string[] = [];
  if (d.change === 'added' && d.after) parts.push(`${d.key} added (${describeEntry(d.after)})`);
  else if (d.change === 'removed' && d.before) parts.push(`${d.key} removed (was ${describeEntry(d.before)})`);
  else if (d.before && d.after) {
    const b = d.before;
    const a = d.after;
    const details: string[] = [];
    const has = (attr: string): boolean => d.changed.includes(attr);
    if (has('type')) details.push(`type ${b.type} → ${a.type}${a.type === 'symlink' ? ` (→ ${a.target ?? '?'})` : ''}`);
    else {
      if (has('target')) details.push(`symlink retargeted ${b.target ?? '?'} → ${a.target ?? '?'}`);
      if (has('sha256') || has('content')) {
        details.push(has('size') && b.size !== undefined && a.size !== undefined ? `content changed (${b.size} → ${a.size} bytes)` : 'content changed');
      } else if (has('size') && !has('target')) details.push(`size ${b.size ?? '?'} → ${a.size ?? '?'} bytes`);
      if (has('mode')) details.push(describeModeChange(b.mode, a.mode));
      if (has('uid')) details.push(`owner uid ${b.uid} → ${a.uid}`);
      if (has('gid')) details.push(`group gid ${b.gid} → ${a.gid}`);
      if (has('caps')) details.push(describeCapsChange(b.caps, a.caps));
      if (has('acl')) details.push(describeAclChange('ACL', b.acl, a.acl));
      if (has('defaultAcl')) details.push(describeAclChange('default ACL', b.defaultAcl, a.defaultAcl));
      if (has('xattrs')) details.push(describeXattrsChange(b.xattrs, a.xattrs));
      if (has('flags')) details.push(describeFlagsChange(b.flags, a.flags));
      if (has('nlink')) {
        const bn = b.nlink ?? 1;
        const an = a.nlink ?? 1;
        details.push(
          an > bn
            ? `hard links ${bn} → ${an}: another name for this file was made, possibly outside the watched folders (find / -xdev -samefile ${d.key})`
            : `hard links ${bn} → ${an}: a name of this file was removed`,
        );
      }
      if (has('device')) details.push(`device ${b.device ?? 'none'} → ${a.device ?? 'none'}`);
      if (has('mtime')) {
        const alone = d.changed.length === 1;
        details.push(`modification time ${isoSeconds(b.mtime)} → ${isoSeconds(a.mtime)}${alone ? ' with the content unchanged: touched, or rewritten with the same bytes' : ''}`);
      }
    }
    parts.push(`${d.key}: ${details.join(', ')}`);
  }
  const prov = provenance(d, packages);
  if (prov) parts.push(prov);
  if (note) parts.push(note);
  const diff = contentDiff(d);
  return diff === undefined ? { explanation: parts.join('; ') } : { explanation: parts.join('; '), diff };
}

function splitIdentity(key: string): { exe: string; user: string } {
  const bar = key.lastIndexOf('|');
  return bar < 0 ? { exe: key, user: '?' } : { exe: key.slice(0, bar), user: key.slice(bar + 1) };
}

function processState(e: ProcessEntry): string[] {
  const notes: string[] = [];
  if (e.deleted) notes.push('runs a deleted executable');
  if (e.replaced) notes.push('executable replaced on disk since it started');
  return notes;
}

/** A new or missing process identity, or one running another, deleted or replaced binary. */
export function explainProcess(d: ProcessDifference): Explained {
  const { exe, user } = splitIdentity(d.key);
  if (d.change === 'added' && d.after) {
    const n = d.after.count;
    const state = processState(d.after);
    return { explanation: [`new process ${exe} running as ${user} (${n} ${n === 1 ? 'process' : 'processes'}), not in image`, ...state].join('; ') };
  }
  if (d.change === 'removed') return { explanation: `${exe} (as ${user}) no longer running; it runs in the image` };
  const a = d.after as ProcessEntry;
  const notes: string[] = [];
  if (d.changed.includes('exeSha256')) notes.push('runs a different binary than in the image');
  if (d.changed.includes('deleted')) notes.push(a.deleted ? 'runs a deleted executable' : 'no longer runs a deleted executable');
  if (d.changed.includes('replaced')) notes.push(a.replaced ? 'executable replaced on disk since it started' : 'executable no longer replaced on disk');
  return { explanation: `${exe} (as ${user}) ${notes.join('; ')}` };
}

/** A port opened or closed (with its process), or now served by another process. */
export function explainPort(d: PortDifference): Explained {
  if (d.change === 'added') return { explanation: `port ${d.key} opened by ${d.after?.process ?? 'an unknown process'}, not in image` };
  if (d.change === 'removed') return { explanation: `port ${d.key} closed (was ${d.before?.process ?? 'an unknown process'})` };
  return { explanation: `port ${d.key} now served by ${d.after?.process ?? '?'}, was ${d.before?.process ?? '?'}` };
}
