/**
 * Pure parser of `rpm -qa --qf RPM_QUERY_FORMAT` output. Each package is one
 * header line starting with `@@` followed by one line per file with its flags.
 */

/**
 * The query format whose output {@link parseRpmQuery} reads: a header line
 * `@@\tNAME\tEPOCH\tVERSION\tRELEASE\tARCH\tSOURCERPM`, then `path\tflags` lines.
 * rpm prints `(none)` for an absent tag.
 */
export const RPM_QUERY_FORMAT = '@@\\t%{NAME}\\t%{EPOCH}\\t%{VERSION}\\t%{RELEASE}\\t%{ARCH}\\t%{SOURCERPM}\\n[%{FILENAMES}\\t%{FILEFLAGS}\\n]';

/** rpm's `RPMFILE_CONFIG` bit of FILEFLAGS (`%config`). */
export const RPMFILE_CONFIG = 1;

/** One installed rpm package and its files. */
export interface RpmPackage {
  name: string;
  /** `(none)` when the package has no architecture (gpg-pubkey). */
  arch: string;
  /** `[epoch:]version-release`. */
  version: string;
  /** Source package name from SOURCERPM (`bash-5.1.8-6.el9.src.rpm` → `bash`); absent when rpm records none. */
  source?: string;
  files: Array<{ path: string; config: boolean }>;
}

/** `bash-5.1.8-6.el9.src.rpm` → `bash`: drop `.src.rpm`/`.nosrc.rpm`, then the version and release. */
export function rpmSourceName(sourcerpm: string): string | undefined {
  if (!sourcerpm || sourcerpm === '(none)') return undefined;
  const base = sourcerpm.replace(/\.(no)?src\.rpm$/, '');
  const parts = base.split('-');
  return parts.length >= 3 ? parts.slice(0, -2).join('-') : base;
}

/** Parse the output of `rpm -qa --qf RPM_QUERY_FORMAT`. Lines that fit neither shape are ignored. */
export function parseRpmQuery(text: string): RpmPackage[] {
  const out: RpmPackage[] = [];
  let cur: RpmPackage | null = null;
  for (const line of text.split('\n')) {
    if (line.startsWith('@@\t')) {
      const [, name = '', epoch = '', version = '', release = '', arch = '', sourcerpm = ''] = line.split('\t');
      const evr = `${epoch && epoch !== '(none)' ? `${epoch}:` : ''}${version}-${release}`;
      cur = { name, arch, version: evr, files: [] };
      const source = rpmSourceName(sourcerpm);
      if (source !== undefined) cur.source = source;
      out.push(cur);
      continue;
    }
    const tab = line.lastIndexOf('\t');
    if (!cur || tab <= 0) continue;
    const path = line.slice(0, tab);
    const flags = Number(line.slice(tab + 1));
    // A package without files prints `(none)` once for the whole array.
    if (path === '(none)' || !path.startsWith('/')) continue;
    cur.files.push({ path, config: Number.isInteger(flags) && (flags & RPMFILE_CONFIG) !== 0 });
  }
  return out;
}

/**
 * The manifest entries of installed rpm packages, keyed `rpm:name:arch`. A name
 * and architecture installed more than once at the same time (kernels, their
 * modules, `gpg-pubkey`: rpm keeps every version it was told to install) gets one
 * entry per instance, keyed `rpm:name:arch:version`, so that every installed
 * kernel and every trusted key shows; a single instance keeps the short key, so
 * that an upgrade reads as one package changing version.
 */
export function rpmEntries(pkgs: readonly RpmPackage[]): Record<string, { version: string; source?: string }> {
  const count = new Map<string, number>();
  for (const p of pkgs) count.set(`${p.name}:${p.arch}`, (count.get(`${p.name}:${p.arch}`) ?? 0) + 1);
  const entries: Record<string, { version: string; source?: string }> = {};
  const keyed = pkgs.map((p) => ({ p, key: (count.get(`${p.name}:${p.arch}`) ?? 0) > 1 ? `rpm:${p.name}:${p.arch}:${p.version}` : `rpm:${p.name}:${p.arch}` }));
  keyed.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  for (const { p, key } of keyed) {
    const entry: { version: string; source?: string } = { version: p.version };
    if (p.source !== undefined) entry.source = p.source;
    entries[key] = entry;
  }
  return entries;
}
