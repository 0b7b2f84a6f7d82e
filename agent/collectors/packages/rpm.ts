import { execFile } from 'node:child_process';
import { access } from 'node:fs/promises';
import { errnoOf } from '../../protocol/errors.js';
import type { PackageEntry, Unread } from '../../protocol/manifest.js';
import type { PackageDbResult, PathOwner } from '../contract.js';
import { underRoot } from './dpkg.js';
import { parseRpmQuery, rpmEntries, RPM_QUERY_FORMAT } from './rpm-parse.js';

/** The places an rpm database lives, relative to the root, and the files that make one. */
const RPM_DB_DIRS = ['/var/lib/rpm', '/usr/lib/sysimage/rpm'] as const;
const RPM_DB_FILES = ['rpmdb.sqlite', 'Packages.db', 'Packages'] as const;

/** The database folder (as seen inside the root) holding an rpm database, or null. An empty folder is not a database. */
export async function findRpmDb(root: string): Promise<string | null> {
  for (const dir of RPM_DB_DIRS) {
    for (const file of RPM_DB_FILES) {
      try {
        await access(underRoot(root, `${dir}/${file}`));
        return dir;
      } catch {
        // try the next candidate
      }
    }
  }
  return null;
}

/** Run rpm; resolves with stdout, rejects with an error carrying `code` and stderr. */
function runRpm(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('rpm', args, { maxBuffer: 1 << 30, env: { ...process.env, LC_ALL: 'C' } }, (err, stdout, stderr) => {
      if (err) reject(Object.assign(err, { stderr: String(stderr).trim() }));
      else resolve(stdout);
    });
  });
}

/**
 * Collect installed rpm packages (keys `rpm:name:arch`, or `rpm:name:arch:version`
 * for each of several installed instances, see rpmEntries; version
 * `[epoch:]version-release`) and file ownership (`%config` files flagged), by
 * running `rpm -qa --root ROOT --dbpath DIR --qf …`. No rpm database under the
 * root → empty result; a database but no `rpm` binary, or rpm failing → one
 * `unread` entry for the database folder saying why.
 */
export async function collectRpm(root: string): Promise<PackageDbResult> {
  const entries: Record<string, PackageEntry> = {};
  const owners = new Map<string, PathOwner>();
  const dbDir = await findRpmDb(root);
  if (!dbDir) return { entries, unread: [], owners };
  let out: string;
  try {
    out = await runRpm(['-qa', '--root', root, '--dbpath', dbDir, '--qf', RPM_QUERY_FORMAT]);
  } catch (err) {
    const code = errnoOf(err);
    const reason = code === 'ENOENT'
      ? 'rpm database present but the rpm program is not installed (install rpm to read it)'
      : `rpm -qa failed: ${(err as { stderr?: string }).stderr || code}`;
    const unread: Unread[] = [{ path: dbDir, reason }];
    return { entries, unread, owners };
  }
  const pkgs = parseRpmQuery(out).sort((a, b) => (`${a.name}:${a.arch}` < `${b.name}:${b.arch}` ? -1 : 1));
  Object.assign(entries, rpmEntries(pkgs));
  for (const p of pkgs) {
    for (const f of p.files) if (!owners.has(f.path)) owners.set(f.path, { owner: `rpm:${p.name}`, conffile: f.config });
  }
  return { entries, unread: [], owners };
}
