/**
 * Pure parsers of dpkg's database files (`var/lib/dpkg/status`, `updates/*`,
 * `info/*.list`, `info/*.md5sums`, `diversions`). They take text and return plain
 * data; reading the files is the caller's job (dpkg.ts, agent/verify/).
 */

/** One conffile as the status `Conffiles` field records it. */
export interface DpkgConffile {
  /** Absolute path, as recorded (`/etc/ssh/sshd_config`). */
  path: string;
  /** The md5 dpkg installed, or a marker such as `newconffile` (compared as-is, like dpkg does). */
  hash: string;
  /** Flagged `obsolete`: no longer shipped by the package but still on disk and still owned. */
  obsolete: boolean;
  /** Flagged `remove-on-upgrade`. */
  removeOnUpgrade: boolean;
}

/** The fields of one status paragraph that drift uses. */
export interface DpkgRecord {
  package: string;
  /** As recorded: `amd64`, `all`, … (empty when the paragraph has none). */
  arch: string;
  version: string;
  /** Source package name without the version in parentheses; the package name when absent (as `${source:Package}`). */
  source: string;
  /** The three words of `Status:`: want, error flag, state (`install ok installed`). */
  want: string;
  eflag: string;
  state: string;
  /** `same`, `foreign`, `allowed` or `no`; decides the name of the info files. */
  multiArch: string;
  conffiles: DpkgConffile[];
}

/**
 * States in which a package counts as installed for drift: `installed`, and the
 * two trigger states (`triggers-pending`, `triggers-awaited`) of a package that is
 * configured and only waits for trigger processing. In `dpkg-query -W -f
 * '${db:Status-Abbrev}'` terms: second letter `i`, `t` or `W` (any want, including
 * `hold`, and any error flag). Not installed: `n` not-installed, `c` config-files,
 * `H` half-installed, `U` unpacked, `F` half-configured — their files or
 * configuration are not what the package manager completed.
 */
export const DPKG_INSTALLED_STATES: ReadonlySet<string> = new Set(['installed', 'triggers-pending', 'triggers-awaited']);

/** True when the record is installed in the sense of {@link DPKG_INSTALLED_STATES}. */
export function isDpkgInstalled(rec: DpkgRecord): boolean {
  return DPKG_INSTALLED_STATES.has(rec.state);
}

/**
 * Split deb822 text into paragraphs of fields. A continuation line (starting
 * with a space or tab) extends the previous field's value with a newline; field
 * names are kept as written. Lines before any field and comment lines are ignored.
 */
export function parseDeb822(text: string): Array<Map<string, string>> {
  const out: Array<Map<string, string>> = [];
  let cur: Map<string, string> | null = null;
  let last: string | null = null;
  for (const line of text.split('\n')) {
    if (line.trim() === '') {
      if (cur && cur.size > 0) out.push(cur);
      cur = null;
      last = null;
      continue;
    }
    if (line[0] === ' ' || line[0] === '\t') {
      if (cur && last !== null) cur.set(last, `${cur.get(last) ?? ''}\n${line.slice(1)}`);
      continue;
    }
    if (line[0] === '#') continue;
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    cur ??= new Map();
    last = line.slice(0, colon);
    cur.set(last, line.slice(colon + 1).trim());
  }
  if (cur && cur.size > 0) out.push(cur);
  return out;
}

/** Parse the `Conffiles` field value (lines `path hash [obsolete] [remove-on-upgrade]`). */
export function parseConffiles(value: string): DpkgConffile[] {
  const out: DpkgConffile[] = [];
  for (const raw of value.split('\n')) {
    const words = raw.trim().split(/\s+/);
    if (words.length < 2 || !words[0]) continue;
    // A path may hold spaces: the hash is the first word after the path, flags follow it.
    let flagsFrom = words.length;
    while (flagsFrom > 2 && (words[flagsFrom - 1] === 'obsolete' || words[flagsFrom - 1] === 'remove-on-upgrade')) flagsFrom--;
    const flags = words.slice(flagsFrom);
    out.push({
      path: words.slice(0, flagsFrom - 1).join(' '),
      hash: words[flagsFrom - 1] ?? '',
      obsolete: flags.includes('obsolete'),
      removeOnUpgrade: flags.includes('remove-on-upgrade'),
    });
  }
  return out;
}

/** Turn one status paragraph into a record; null when it has no `Package` field. */
export function dpkgRecordOf(p: Map<string, string>): DpkgRecord | null {
  const pkg = p.get('Package');
  if (!pkg) return null;
  const [want = '', eflag = '', state = ''] = (p.get('Status') ?? '').split(/\s+/);
  const source = (p.get('Source') ?? '').replace(/\s*\(.*\)\s*$/, '').trim();
  return {
    package: pkg,
    arch: p.get('Architecture') ?? '',
    version: p.get('Version') ?? '',
    source: source || pkg,
    want,
    eflag,
    state,
    multiArch: p.get('Multi-Arch') ?? 'no',
    conffiles: parseConffiles(p.get('Conffiles') ?? ''),
  };
}

/**
 * Parse a dpkg status file, then apply journal entries (`updates/NNNN` texts, in
 * numeric order) the way dpkg does when it opens its database: a later paragraph
 * for the same package and architecture replaces the earlier one. Records keep
 * the order of first appearance.
 */
export function parseDpkgStatus(status: string, updates: readonly string[] = []): DpkgRecord[] {
  const byKey = new Map<string, DpkgRecord>();
  for (const text of [status, ...updates]) {
    for (const para of parseDeb822(text)) {
      const rec = dpkgRecordOf(para);
      if (rec) byKey.set(`${rec.package}:${rec.arch}`, rec);
    }
  }
  return [...byKey.values()];
}

/**
 * Normalise a database path the way dpkg's file hash does: leading `/` and `./`
 * are skipped and one `/` is put back; `/.` (the root line of every .list) is `/`.
 */
export function dpkgPath(raw: string): string {
  let s = raw;
  for (;;) {
    if (s.startsWith('/')) s = s.slice(1);
    else if (s.startsWith('./')) s = s.slice(2);
    else if (s === '.') s = '';
    else break;
  }
  return `/${s}`;
}

/** Parse an `info/*.list` file: one path per line, normalised with {@link dpkgPath}. */
export function parseDpkgList(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) if (line !== '') out.push(dpkgPath(line));
  return out;
}

/** Parse an `info/*.md5sums` file (`<md5>  <path>` per line) into path → md5. */
export function parseMd5sums(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^([0-9a-fA-F]{32}) [ *]?(.+)$/.exec(line);
    if (m?.[1] && m[2]) out.set(dpkgPath(m[2]), m[1].toLowerCase());
  }
  return out;
}

/** One diversion: `from` is installed as `to`; `by` is the diverting package, or null for a local diversion. */
export interface DpkgDiversion {
  from: string;
  to: string;
  by: string | null;
}

/** Parse `var/lib/dpkg/diversions` (groups of three lines: from, to, package or `:` for local). */
export function parseDiversions(text: string): DpkgDiversion[] {
  const lines = text.split('\n');
  const out: DpkgDiversion[] = [];
  for (let i = 0; i + 2 < lines.length; i += 3) {
    const from = lines[i];
    const to = lines[i + 1];
    const by = lines[i + 2];
    if (!from || !to || !by) break;
    out.push({ from: dpkgPath(from), to: dpkgPath(to), by: by === ':' ? null : by });
  }
  return out;
}

/**
 * The path a package's file really lives at, as dpkg's `namenodetouse()` decides:
 * a path diverted by another package (or locally) is installed under the
 * diversion's target; the diverting package's own copy stays at the path.
 */
export function divertedPath(path: string, pkg: string, diversions: ReadonlyMap<string, DpkgDiversion>): string {
  const d = diversions.get(path);
  if (!d || d.by === pkg) return path;
  return d.to;
}

/**
 * The base name of a package's files in `info/`: `name:arch` for a
 * `Multi-Arch: same` package, else `name` (dpkg's `pnaw_same` rule).
 */
export function dpkgInfoName(rec: DpkgRecord): string {
  return rec.multiArch === 'same' ? `${rec.package}:${rec.arch}` : rec.package;
}
