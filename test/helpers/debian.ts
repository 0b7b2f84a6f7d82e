import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { must } from './run.js';

/** The cached debootstrap (minbase) root that test/setup.sh builds. */
export const debianMinbase = join(process.env['DRIFT_TEST_CACHE'] ?? '/var/cache/drift-tests', 'debian-minbase');

/** A full copy of a root (owners, modes, links and all), for a test to change freely. */
export async function copyRoot(src: string, dst: string): Promise<string> {
  await must('cp', ['-a', `${src}/.`, dst]);
  return dst;
}

/** A package to build: `files` maps paths (relative to /) to content, or null for an empty folder. */
export interface DebSpec {
  name: string;
  version: string;
  files: Record<string, string | null>;
  /** Paths the package declares as conffiles. */
  conffiles?: string[];
  /** Paths installed mode 0755 (default: those under a bin/ folder). */
  executables?: string[];
  /** Ship DEBIAN/md5sums without the conffiles (as dh_md5sums does); otherwise dpkg computes them at install. */
  md5sums?: boolean;
}

/** Build a small real .deb with dpkg-deb in `workDir`; returns its path. */
export function buildDeb(workDir: string, pkg: DebSpec): string {
  const dir = join(workDir, `${pkg.name}_${pkg.version.replace(/:/g, '%')}`);
  mkdirSync(join(dir, 'DEBIAN'), { recursive: true });
  writeFileSync(join(dir, 'DEBIAN', 'control'), [
    `Package: ${pkg.name}`, `Version: ${pkg.version}`, 'Architecture: all', 'Maintainer: drift tests <tests@drift.invalid>',
    'Priority: optional', 'Section: misc', `Description: ${pkg.name} for drift tests`, '',
  ].join('\n'));
  const conffiles = pkg.conffiles ?? [];
  if (conffiles.length) writeFileSync(join(dir, 'DEBIAN', 'conffiles'), `${conffiles.join('\n')}\n`);
  const sums: string[] = [];
  for (const [path, content] of Object.entries(pkg.files)) {
    const full = join(dir, path);
    if (content === null) {
      mkdirSync(full, { recursive: true });
      continue;
    }
    mkdirSync(dirname(full), { recursive: true });
    const executable = pkg.executables ? pkg.executables.includes(path) : path.includes('/bin/');
    writeFileSync(full, content, { mode: executable ? 0o755 : 0o644 });
    if (!conffiles.includes(path)) sums.push(`${createHash('md5').update(content).digest('hex')}  ${path.slice(1)}\n`);
  }
  if (pkg.md5sums) writeFileSync(join(dir, 'DEBIAN', 'md5sums'), sums.join(''));
  const deb = `${dir}.deb`;
  execFileSync('dpkg-deb', ['--build', '--root-owner-group', dir, deb], { stdio: 'ignore' });
  return deb;
}
