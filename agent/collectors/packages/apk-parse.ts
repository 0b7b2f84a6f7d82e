/**
 * Pure parser of Alpine's installed database (`lib/apk/db/installed`): one
 * paragraph per package of `X:value` lines — P name, V version, A arch, o origin
 * (source), F folder, R file inside the last F folder (plus checksums and other
 * fields drift does not use).
 */

/** One installed apk package and the paths it owns. */
export interface ApkPackage {
  name: string;
  version: string;
  arch: string;
  /** The origin (source) package, when recorded. */
  origin?: string;
  /** Folders (from F:) and files (from R:, joined to the preceding F:), absolute. */
  dirs: string[];
  files: string[];
}

/** Parse `lib/apk/db/installed`. A paragraph without `P:` is skipped. */
export function parseApkInstalled(text: string): ApkPackage[] {
  const out: ApkPackage[] = [];
  let cur: ApkPackage | null = null;
  let dir = '';
  const finish = (): void => {
    if (cur && cur.name) out.push(cur);
    cur = null;
    dir = '';
  };
  for (const line of text.split('\n')) {
    if (line === '') {
      finish();
      continue;
    }
    if (line[1] !== ':') continue;
    const value = line.slice(2);
    cur ??= { name: '', version: '', arch: '', dirs: [], files: [] };
    switch (line[0]) {
      case 'P': cur.name = value; break;
      case 'V': cur.version = value; break;
      case 'A': cur.arch = value; break;
      case 'o': cur.origin = value; break;
      case 'F':
        dir = value;
        cur.dirs.push(`/${value}`);
        break;
      case 'R': cur.files.push(dir ? `/${dir}/${value}` : `/${value}`); break;
      default: break;
    }
  }
  finish();
  return out;
}
