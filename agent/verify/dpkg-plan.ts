import { divertedPath, type DpkgDiversion, type DpkgRecord } from '../collectors/packages/dpkg-parse.js';

/** One path to check on disk, with what dpkg expects of it. */
export interface VerifyCheck {
  /** Absolute path inside the root, diversions applied (what dpkg prints). */
  path: string;
  package: string;
  arch: string;
  /** The md5 the content must have, or null when only its existence is checked (folders, symlinks). */
  md5: string | null;
  /** dpkg's `c` attribute: some package declares the path a conffile. */
  conffile: boolean;
}

/** Per-package inputs of the plan, read from `info/` by the caller. */
export interface PackageFiles {
  /** Parsed `info/*.list` (null when the package has no files list). */
  list: string[] | null;
  /** Parsed `info/*.md5sums` (null when absent). */
  md5sums: Map<string, string> | null;
}

/**
 * Decide what `dpkg --verify` checks, replaying dpkg 1.21's `verify_package()`
 * over every package that is not `not-installed`, in the given record order:
 * each package's md5sums are loaded into one table shared by all packages (as
 * dpkg's file-name hash is), its conffiles are marked (their status md5 is the
 * fallback digest, first package wins, and the mark is what prints `c`), then
 * every listed path is checked at its diverted location: it must exist (lstat),
 * and, where a digest is known, be a regular file with that md5.
 */
export function planDpkgVerify(
  records: readonly DpkgRecord[],
  files: (rec: DpkgRecord) => PackageFiles,
  diversions: ReadonlyMap<string, DpkgDiversion>,
): VerifyCheck[] {
  const newhash = new Map<string, string>();
  const oldhash = new Map<string, string>();
  const conffile = new Set<string>();
  const out: VerifyCheck[] = [];
  for (const rec of records) {
    if (rec.state === 'not-installed' || rec.state === '') continue;
    const { list, md5sums } = files(rec);
    for (const [path, md5] of md5sums ?? []) newhash.set(path, md5);
    for (const c of rec.conffiles) {
      conffile.add(c.path);
      if (!oldhash.has(c.path)) oldhash.set(c.path, c.hash);
    }
    for (const listed of list ?? []) {
      const path = divertedPath(listed, rec.package, diversions);
      let md5 = newhash.get(path) ?? null;
      if (md5 === null) {
        const old = oldhash.get(path);
        if (old !== undefined) {
          // dpkg copies the conffile digest into the shared table here; later packages see it.
          newhash.set(path, old);
          md5 = old;
        }
      }
      out.push({ path, package: rec.package, arch: rec.arch, md5, conffile: conffile.has(path) });
    }
  }
  return out;
}
