/**
 * Package version ordering, the way the package managers themselves order versions,
 * so that a finding can say "upgraded" or "downgraded" and be right about it.
 * Pure string code, no I/O.
 */

/** -1, 0 or 1, like a comparator for `Array.prototype.sort`. */
export type Ordering = -1 | 0 | 1;

const sign = (n: number): Ordering => (n < 0 ? -1 : n > 0 ? 1 : 0);

const isDigit = (c: number): boolean => c >= 48 && c <= 57;
const isAlpha = (c: number): boolean => (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
const TILDE = 126;
const CARET = 94;

/** A Debian version split into its parts (deb-version(7)). */
export interface DebianVersion {
  epoch: number;
  upstream: string;
  revision: string;
}

/**
 * Split `[epoch:]upstream[-revision]` as dpkg does: the epoch is the digits before the
 * first colon, the revision whatever follows the last hyphen. A malformed epoch is
 * kept as part of the upstream version rather than refused: this is for ordering
 * versions that a package manager already accepted, not for validating them.
 */
export function parseDebianVersion(version: string): DebianVersion {
  let rest = version.trim();
  let epoch = 0;
  const colon = rest.indexOf(':');
  if (colon > 0 && /^[0-9]+$/.test(rest.slice(0, colon))) {
    epoch = Number(rest.slice(0, colon));
    rest = rest.slice(colon + 1);
  }
  const hyphen = rest.lastIndexOf('-');
  if (hyphen >= 0) return { epoch, upstream: rest.slice(0, hyphen), revision: rest.slice(hyphen + 1) };
  return { epoch, upstream: rest, revision: '' };
}

// dpkg's order() in lib/dpkg/version.c: `~` before everything, even the end of the
// string; then the end; then letters; then every other character.
function dpkgOrder(c: number | undefined): number {
  if (c === undefined || isDigit(c)) return 0;
  if (isAlpha(c)) return c;
  if (c === TILDE) return -1;
  return c + 256;
}

/** dpkg's verrevcmp: alternate non-digit runs (by dpkgOrder) and digit runs (numerically). */
function verrevcmp(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    let firstDiff = 0;
    while ((i < a.length && !isDigit(a.charCodeAt(i))) || (j < b.length && !isDigit(b.charCodeAt(j)))) {
      const ac = dpkgOrder(i < a.length ? a.charCodeAt(i) : undefined);
      const bc = dpkgOrder(j < b.length ? b.charCodeAt(j) : undefined);
      if (ac !== bc) return ac - bc;
      i++;
      j++;
    }
    while (a.charCodeAt(i) === 48) i++;
    while (b.charCodeAt(j) === 48) j++;
    while (i < a.length && isDigit(a.charCodeAt(i)) && j < b.length && isDigit(b.charCodeAt(j))) {
      if (firstDiff === 0) firstDiff = a.charCodeAt(i) - b.charCodeAt(j);
      i++;
      j++;
    }
    if (i < a.length && isDigit(a.charCodeAt(i))) return 1;
    if (j < b.length && isDigit(b.charCodeAt(j))) return -1;
    if (firstDiff !== 0) return firstDiff;
  }
  return 0;
}

/**
 * Order two Debian versions as `dpkg --compare-versions` does (Debian policy §5.6.12):
 * epoch numerically, then upstream version, then revision; `~` sorts before
 * everything, even the end of the string (`1.0~rc1` < `1.0`). A missing revision
 * equals `0`.
 */
export function compareDebianVersions(a: string, b: string): Ordering {
  if (a === b) return 0;
  const va = parseDebianVersion(a);
  const vb = parseDebianVersion(b);
  if (va.epoch !== vb.epoch) return va.epoch > vb.epoch ? 1 : -1;
  const up = verrevcmp(va.upstream, vb.upstream);
  if (up !== 0) return sign(up);
  return sign(verrevcmp(va.revision, vb.revision));
}

/**
 * rpm's rpmvercmp (rpmio/rpmvercmp.c) over one version or release string: runs of
 * digits compare numerically (leading zeros ignored) and beat runs of letters;
 * separators only separate; `~` sorts before everything, `^` after the end of the
 * string but before anything else.
 */
export function rpmvercmp(a: string, b: string): Ordering {
  if (a === b) return 0;
  let i = 0;
  let j = 0;
  const sep = (s: string, k: number): boolean => {
    const c = s.charCodeAt(k);
    return k < s.length && !isDigit(c) && !isAlpha(c) && c !== TILDE && c !== CARET;
  };
  while (i < a.length || j < b.length) {
    while (sep(a, i)) i++;
    while (sep(b, j)) j++;
    const ac = i < a.length ? a.charCodeAt(i) : undefined;
    const bc = j < b.length ? b.charCodeAt(j) : undefined;

    if (ac === TILDE || bc === TILDE) {
      if (ac !== TILDE) return 1;
      if (bc !== TILDE) return -1;
      i++;
      j++;
      continue;
    }
    if (ac === CARET || bc === CARET) {
      if (ac === undefined) return -1;
      if (bc === undefined) return 1;
      if (ac !== CARET) return 1;
      if (bc !== CARET) return -1;
      i++;
      j++;
      continue;
    }
    if (ac === undefined || bc === undefined) break;

    const numeric = isDigit(ac);
    const inRun = numeric ? isDigit : isAlpha;
    let ie = i;
    let je = j;
    while (ie < a.length && inRun(a.charCodeAt(ie))) ie++;
    while (je < b.length && inRun(b.charCodeAt(je))) je++;
    // A numeric run against an alphabetic one: numbers are newer.
    if (je === j) return numeric ? 1 : -1;

    let sa = a.slice(i, ie);
    let sb = b.slice(j, je);
    if (numeric) {
      sa = sa.replace(/^0+/, '');
      sb = sb.replace(/^0+/, '');
      if (sa.length !== sb.length) return sa.length > sb.length ? 1 : -1;
    }
    if (sa !== sb) return sa > sb ? 1 : -1;
    i = ie;
    j = je;
  }
  if (i >= a.length && j >= b.length) return 0;
  return i < a.length ? 1 : -1;
}

/** An rpm version split into epoch, version and release (`[epoch:]version[-release]`). */
export interface RpmEvr {
  epoch: string;
  version: string;
  release: string;
}

/** Split `[epoch:]version[-release]`; the release follows the last hyphen. */
export function parseRpmEvr(evr: string): RpmEvr {
  let rest = evr.trim();
  let epoch = '0';
  const colon = rest.indexOf(':');
  if (colon > 0 && /^[0-9]+$/.test(rest.slice(0, colon))) {
    epoch = rest.slice(0, colon);
    rest = rest.slice(colon + 1);
  }
  const hyphen = rest.lastIndexOf('-');
  if (hyphen >= 0) return { epoch, version: rest.slice(0, hyphen), release: rest.slice(hyphen + 1) };
  return { epoch, version: rest, release: '' };
}

/**
 * Order two rpm `[epoch:]version[-release]` strings as rpm does (rpmverCmp): a missing
 * epoch is 0; the release is compared only when both sides have one.
 */
export function compareRpmVersions(a: string, b: string): Ordering {
  if (a === b) return 0;
  const va = parseRpmEvr(a);
  const vb = parseRpmEvr(b);
  const e = rpmvercmp(va.epoch, vb.epoch);
  if (e !== 0) return e;
  const v = rpmvercmp(va.version, vb.version);
  if (v !== 0) return v;
  if (va.release !== '' && vb.release !== '') return rpmvercmp(va.release, vb.release);
  return 0;
}

/** apk suffixes in apk-tools' order; a version without a suffix sits between `rc` and `cvs`. */
const APK_SUFFIXES = ['alpha', 'beta', 'pre', 'rc', '', 'cvs', 'svn', 'git', 'hg', 'p'] as const;
const APK_NO_SUFFIX = APK_SUFFIXES.indexOf('');

/** A parsed apk version: `1.2.3b_rc1_p2~abc-r4`. */
export interface ApkVersion {
  /** The dot-separated number components, as written (leading zeros kept). */
  numbers: string[];
  letter: string;
  /** Suffixes as [rank in APK_SUFFIXES, number]. */
  suffixes: Array<[number, number]>;
  revision: number;
}

const APK_VERSION = /^(\d+(?:\.\d+)*)([a-z]?)((?:_(?:alpha|beta|pre|rc|cvs|svn|git|hg|p)\d*)*)(?:~[0-9a-f]+)?(?:-r(\d+))?$/;

/** Parse an apk version (apk-tools' grammar); null when it does not fit it. */
export function parseApkVersion(version: string): ApkVersion | null {
  const m = APK_VERSION.exec(version);
  if (!m) return null;
  const suffixes: Array<[number, number]> = [];
  for (const part of (m[3] ?? '').split('_').slice(1)) {
    const s = /^([a-z]+)(\d*)$/.exec(part);
    if (!s) return null;
    suffixes.push([APK_SUFFIXES.indexOf(s[1] as (typeof APK_SUFFIXES)[number]), s[2] ? Number(s[2]) : 0]);
  }
  return { numbers: (m[1] ?? '').split('.'), letter: m[2] ?? '', suffixes, revision: m[4] ? Number(m[4]) : 0 };
}

/**
 * Order two apk versions the way apk-tools does: number components one by one
 * (after the first, a component with a leading zero compares as a decimal
 * fraction, `1.02 < 1.1`), more components is newer; then the letter; then the
 * suffixes, where `_alpha < _beta < _pre < _rc <` none `< _cvs < _svn < _git <
 * _hg < _p` (so `1.2.3_rc1-r0 < 1.2.3-r0`); then the `-rN` revision. Versions
 * that do not parse compare as strings.
 */
export function compareApkVersions(a: string, b: string): Ordering {
  if (a === b) return 0;
  const va = parseApkVersion(a);
  const vb = parseApkVersion(b);
  if (!va || !vb) return a < b ? -1 : a > b ? 1 : 0;
  const n = Math.max(va.numbers.length, vb.numbers.length);
  for (let i = 0; i < n; i++) {
    const x = va.numbers[i];
    const y = vb.numbers[i];
    if (x === undefined) return -1;
    if (y === undefined) return 1;
    if (i > 0 && (x.startsWith('0') || y.startsWith('0'))) {
      // Decimal fractions: compare as strings padded to one length.
      const len = Math.max(x.length, y.length);
      const c = x.padEnd(len, '0') < y.padEnd(len, '0') ? -1 : x.padEnd(len, '0') > y.padEnd(len, '0') ? 1 : 0;
      if (c !== 0) return c;
      continue;
    }
    const c = sign(Number(BigInt(x) - BigInt(y)));
    if (c !== 0) return c;
  }
  if (va.letter !== vb.letter) return va.letter < vb.letter ? -1 : 1;
  const m = Math.max(va.suffixes.length, vb.suffixes.length);
  for (let i = 0; i < m; i++) {
    const [ra, na] = va.suffixes[i] ?? [APK_NO_SUFFIX, 0];
    const [rb, nb] = vb.suffixes[i] ?? [APK_NO_SUFFIX, 0];
    if (ra !== rb) return sign(ra - rb);
    if (na !== nb) return sign(na - nb);
  }
  return sign(va.revision - vb.revision);
}

/**
 * Order two versions of a package keyed `manager:name[:arch]`: rpm keys the rpm way,
 * apk keys the apk way, dpkg keys (and anything else) the dpkg way.
 */
export function comparePackageVersions(manager: string, a: string, b: string): Ordering {
  return manager === 'rpm' ? compareRpmVersions(a, b) : manager === 'apk' ? compareApkVersions(a, b) : compareDebianVersions(a, b);
}
