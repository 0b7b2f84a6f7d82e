import type { Finding } from '../protocol/finding.js';
import type { FileEntry, Manifest } from '../protocol/manifest.js';
import { MAX_PINS, PIN_CONTENT_MAX, PINS_SCHEMA, type FirstBoot, type KeySource, type Pin, type PinBook, type PinnedEntry } from '../protocol/pins.js';
import { compareWithDrops, fileChanges, rulesFor, type CompareBaseline, type CompareInput, type ExpectVerdict, type FirstBootJudge, type Held } from './compare.js';
import type { Drop } from '../protocol/finding.js';
import type { FileDifference } from './explain.js';
import { compileRules, isIgnored, type CompiledRules } from './policy.js';

/**
 * First boot happens once. Expect rules say what first boot may change; pins say it
 * happens once: the first compare of a host (its first scan, or its first report to
 * a collector) records, per path, the value the expectations accepted — the whole
 * file entry (type, mode, owner, digest, content where kept). From then on:
 *
 * - an expected difference whose value equals its pin is dropped, as before;
 * - a pinned path holding anything else (or gone, or back to the image's value) is a
 *   finding whose `before` is the pinned value: "changed after first boot";
 * - an expected difference on a path that was not pinned is a finding too: first
 *   boot did not change it, so whatever changed it later was not first boot;
 * - expect rules with `pin: false` (resolv.conf) are never pinned.
 *
 * And the cloud-init default user's `authorized_keys` is held to exactly the keys of
 * the instance's metadata where the manifest carries them (`host.instanceKeys`): an
 * extra key is a finding even on the first compare, and is never pinned.
 *
 * Pure: everything comes from the inputs; the caller stores the returned book.
 */

/** How compare should treat pins. */
export interface PinsInput {
  /** The host's pins; null before its first compare (this compare pins). */
  book: PinBook | null;
  /** RFC 3339 time stamped on new pins. */
  now: string;
  /**
   * Re-pin (an operator's explicit action): the listed paths, or all when empty,
   * take the value this compare accepts, as at first boot.
   */
  repin?: { paths: readonly string[] };
}

/** What a compare with pins gives. */
export interface PinnedCompare {
  findings: Finding[];
  /** What each ignore, expect and policy-ignore rule dropped (see `compareWithDrops`). */
  dropped: Drop[];
  /** The pins after this compare (new at the first compare, changed by a re-pin, else the same). */
  book: PinBook;
  /** Paths whose pins this compare added, replaced or removed. */
  changed: string[];
  firstBoot: FirstBoot;
}


/** Compare a manifest with its baseline under rules and first-boot pins. */
export function compareWithPins(input: Omit<CompareInput, 'firstBoot'>, pins: PinsInput): PinnedCompare {
  const check = new FirstBootCheck(input, pins);
  const { findings, dropped } = compareWithDrops({ ...input, firstBoot: check });
  return { findings, dropped, ...check.result() };
}

/** The pin key of the cloud-init default user's SSH keys. */
export function defaultUserKeysPath(user: string): string {
  return `/home/${user}/.ssh/authorized_keys`;
}

/**
 * The per-compare state of pinning; `compare` calls `judge` for every file difference
 * that survives ignore rules and `unchanged` once after them.
 */
export class FirstBootCheck implements FirstBootJudge {
  private readonly compiled: CompiledRules;
  private readonly manifest: Manifest;
  private readonly baseline: CompareBaseline;
  private readonly book: PinBook | null;
  private readonly now: string;
  private readonly repinAll: boolean;
  private readonly repinPaths: ReadonlySet<string>;
  private readonly seen = new Set<string>();
  private readonly next = new Map<string, Pin | null>();
  private readonly user: string | null;
  private readonly keysPath: string | null;
  private keySource: KeySource | null = null;

  constructor(input: Omit<CompareInput, 'firstBoot'>, pins: PinsInput) {
    // The baseline's recorded scope decides what first boot may change, as it does for compare.
    const rules = rulesFor(input.baseline, input.rules);
    this.compiled = compileRules(rules);
    this.manifest = input.manifest;
    this.baseline = input.baseline;
    this.book = pins.book;
    this.now = pins.now;
    const paths = pins.repin?.paths ?? [];
    this.repinAll = pins.repin !== undefined && paths.length === 0;
    this.repinPaths = new Set(paths);
    const user = rules.vars['cloudInitUser'];
    this.user = user !== undefined && /^[A-Za-z0-9._][A-Za-z0-9._-]*$/.test(user) ? user : null;
    this.keysPath = this.user === null ? null : defaultUserKeysPath(this.user);
  }

  private pinning(path: string): boolean {
    return this.book === null || this.repinAll || this.repinPaths.has(path);
  }

  /** The verdict on one file difference: null to drop it, or what to report. */
  judge(d: FileDifference, verdict: ExpectVerdict): Held | null {
    this.seen.add(d.key);
    if (d.key === this.keysPath) {
      const keys = this.checkKeys(d.after);
      if (keys !== null) return { d, note: keys };
    }
    if (!verdict.expected) return { d, note: verdict.note };
    if (!verdict.pin) return null;
    const after = d.after === null ? null : pinnedEntry(d.after);
    if (this.pinning(d.key)) {
      if (this.countAfter(d.key) > MAX_PINS) {
        return { d, note: `expected at first boot, but not pinned: this host has more than ${MAX_PINS} first-boot changes` };
      }
      this.next.set(d.key, { firstSeen: this.now, entry: after });
      return null;
    }
    const pin = this.book?.files[d.key];
    if (pin === undefined) {
      return { d, note: `expected only at first boot, but changed after it: this path was not changed at first boot (pinned ${this.book?.pinnedAt ?? '?'}); if this change is wanted, re-pin it (drift pins repin)` };
    }
    if (sameEntry(pin.entry, after)) return null;
    return this.broken(d.key, pin, d.after);
  }

  /** Pinned paths that showed no difference against the baseline (back to the image's value, or both absent). */
  unchanged(): Held[] {
    const out: Held[] = [];
    if (this.book === null || !this.manifest.files || !this.baseline.files) return out;
    const unread = new Set(this.manifest.unread.map((u) => u.path));
    for (const path of Object.keys(this.book.files).sort()) {
      if (this.seen.has(path) || unread.has(path) || isIgnored(this.compiled, 'file', path)) continue;
      const pin = this.book.files[path] as Pin;
      if (this.pinning(path)) {
        // Re-pinned to the image's own value: nothing is pinned any more.
        this.next.set(path, null);
        continue;
      }
      const current = this.manifest.files[path] ?? null;
      if (sameEntry(pin.entry, current === null ? null : pinnedEntry(current))) continue;
      out.push(this.broken(path, pin, current));
    }
    return out;
  }

  /** A pinned path that no longer holds its pinned value: judged against the pin. */
  private broken(path: string, pin: Pin, current: FileEntry | null): Held {
    const before = pin.entry;
    const change: FileDifference['change'] = before === null ? 'added' : current === null ? 'removed' : 'modified';
    const changed = before !== null && current !== null ? fileChanges(before, current) : [];
    const d: FileDifference = { kind: 'file', key: path, change, changed, before, after: current };
    const was = before === null ? 'absent' : describePinned(before);
    return { d, note: `changed after first boot: first seen ${pin.firstSeen}, pinned value ${was}`, pinned: { firstSeen: pin.firstSeen } };
  }

  /** Pins this compare would hold after adding `path`. */
  private countAfter(path: string): number {
    const kept = this.book === null || this.repinAll ? 0 : Object.keys(this.book.files).filter((p) => !this.repinPaths.has(p)).length;
    return kept + this.next.size + (this.next.has(path) ? 0 : 1);
  }

  /**
   * The default user's keys against the instance's metadata: null when they match (or
   * there is no metadata: then they are pinned on trust), else what is wrong.
   */
  private checkKeys(after: FileEntry | null): string | null {
    const meta = this.manifest.host.instanceKeys;
    if (!meta) {
      if (after !== null) this.keySource = 'trust';
      return null;
    }
    this.keySource = 'verified';
    if (after === null) return null;
    if (after.type !== 'file') return `the default user's authorized_keys is a ${after.type}, not the file of the instance's keys (${meta.source})`;
    if (after.content === undefined) return `content not recorded, so the default user's keys cannot be checked against the instance's metadata (${meta.source}); watch it with content: true`;
    const expected = new Set(meta.keys.map(keyIdentity));
    const present = authorizedKeys(after.content);
    const extra = present.filter((k) => !expected.has(keyIdentity(k)));
    const have = new Set(present.map(keyIdentity));
    const missing = meta.keys.filter((k) => !have.has(keyIdentity(k)));
    if (extra.length === 0 && missing.length === 0) return null;
    const parts: string[] = [];
    if (extra.length > 0) parts.push(`${extra.length} key${extra.length === 1 ? '' : 's'} not in the instance's metadata (${meta.source}): ${extra.slice(0, 3).map(shortKey).join(', ')}${extra.length > 3 ? ` and ${extra.length - 3} more` : ''}`);
    if (missing.length > 0) parts.push(`${missing.length} key${missing.length === 1 ? '' : 's'} of the instance's metadata missing: ${missing.slice(0, 3).map(shortKey).join(', ')}`);
    return parts.join('; ');
  }

  /** The book after this compare, the paths whose pins changed, and the report's summary. */
  result(): { book: PinBook; changed: string[]; firstBoot: FirstBoot } {
    const files: Record<string, Pin> = {};
    if (this.book !== null && !this.repinAll) {
      for (const [path, pin] of Object.entries(this.book.files)) if (!this.repinPaths.has(path)) files[path] = pin;
    }
    const changed: string[] = [];
    for (const [path, pin] of this.next) {
      if (pin !== null) files[path] = pin;
      changed.push(path);
    }
    if (this.book !== null && (this.repinAll || this.repinPaths.size > 0)) {
      // A re-pinned path that is now neither expected nor different holds no pin.
      for (const path of Object.keys(this.book.files)) {
        if ((this.repinAll || this.repinPaths.has(path)) && !this.next.has(path)) changed.push(path);
      }
    }
    const sorted: Record<string, Pin> = {};
    for (const path of Object.keys(files).sort()) sorted[path] = files[path] as Pin;
    const book: PinBook = { schema: PINS_SCHEMA, pinnedAt: this.book?.pinnedAt ?? this.now, files: sorted };
    // Repins keep a pin whose value did not change out of `changed`.
    const really = [...new Set(changed)].filter((p) => !samePin(this.book?.files[p], book.files[p])).sort();
    return {
      book,
      changed: this.book === null ? Object.keys(sorted) : really,
      firstBoot: { pinnedAt: book.pinnedAt, pins: Object.keys(sorted).length, keys: this.keySource, user: this.user },
    };
  }
}

/**
 * A file entry as pinned: without package metadata (it moves with packages, reported
 * there), and without content above PIN_CONTENT_MAX (its sha256 still pins it): a
 * host that shows a thousand large "expected" files must not make its pins huge.
 * Both sides of a pin comparison go through here, so they stay comparable.
 */
export function pinnedEntry(e: FileEntry): PinnedEntry {
  // mtime is when each host's first boot wrote the file, different on every host: a pin
  // holds what the file is, so hosts of a cohort share their values and a rare one stands out.
  const { owner: _owner, conffile: _conffile, mtime: _mtime, ...rest } = e;
  if (rest.content !== undefined && rest.content.length > PIN_CONTENT_MAX) delete rest.content;
  return rest;
}

function sameEntry(a: PinnedEntry | null, b: PinnedEntry | null): boolean {
  if (a === null || b === null) return a === b;
  // Pin books written before pins left out mtime still hold one.
  return fileChanges(withoutMtime(a), withoutMtime(b)).length === 0 && (a.content === undefined) === (b.content === undefined);
}

function withoutMtime(e: PinnedEntry): PinnedEntry {
  if (e.mtime === undefined) return e;
  const { mtime: _mtime, ...rest } = e;
  return rest;
}

function samePin(a: Pin | undefined, b: Pin | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return sameEntry(a.entry, b.entry);
}

function describePinned(e: PinnedEntry): string {
  if (e.type === 'symlink') return `symlink → ${e.target ?? '?'}`;
  const digest = e.sha256 ? `, sha256 ${e.sha256.slice(0, 12)}…` : '';
  return `${e.type}, mode ${e.mode}, uid ${e.uid}, gid ${e.gid}${digest}`;
}

/** The key lines of an authorized_keys file: not blank, not comments. */
export function authorizedKeys(content: string): string[] {
  return content.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
}

const KEY_TYPE = /^(ssh-(rsa|dss|ed25519)|ecdsa-sha2-[a-z0-9-]+|sk-[a-z0-9@.-]+|ssh-ed448)$/;

/**
 * What identifies an authorized key: its options (if any), type and base64 blob;
 * the trailing comment is left out, so a key with another comment is the same key,
 * while a key with other options (`command=`, `from=`) is not.
 */
export function keyIdentity(line: string): string {
  const tokens = line.trim().split(/\s+/);
  const i = tokens.findIndex((t) => KEY_TYPE.test(t));
  if (i < 0 || i + 1 >= tokens.length) return tokens.join(' ');
  return tokens.slice(0, i + 2).join(' ');
}

function shortKey(line: string): string {
  const tokens = line.trim().split(/\s+/);
  const i = tokens.findIndex((t) => KEY_TYPE.test(t));
  if (i < 0) return JSON.stringify(line.slice(0, 40));
  const blob = tokens[i + 1] ?? '';
  const comment = tokens.slice(i + 2).join(' ');
  return `${tokens[i] ?? ''} …${blob.slice(-12)}${comment ? ` (${comment.slice(0, 40)})` : ''}`;
}
