import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { must } from './run.js';

/** The cached debootstrap (minbase) root that test/setup.sh builds. */
export const debianMinbase = join(process.env['DRIFT_TEST_CACHE'] ?? '/var/cache/drift-tests', 'debian-minbase');

/** A full copy of a root (owners, modes, links and all), for a test to change freely. */
export async function copyRoot(src: string, dst: string): Promise<string> {
  await must('cp', ['-a', `${src}/.`, dst]);
  return dst;
}

/**
 * Build a small real .deb with dpkg-deb: `files` maps paths (relative to /) to
 * content; `conffiles` lists those the package declares as conffiles.
 */
export async function buildDeb(workDir: string, pkg: { name: string; version: string; files: Record<string, string>; conffiles?: string[] }): Promise<string> {
  const dir = join(workDir, `${pkg.name}_${pkg.version}`);
  await mkdir(join(dir, 'DEBIAN'), { recursive: true });
  await writeFile(join(dir, 'DEBIAN', 'control'), [
    `Package: ${pkg.name}`, `Version: ${pkg.version}`, 'Architecture: all', 'Maintainer: drift tests <tests@drift.invalid>',
    'Priority: optional', 'Section: misc', `Description: ${pkg.name} for drift tests`, '',
  ].join('\n'));
  if (pkg.conffiles?.length) await writeFile(join(dir, 'DEBIAN', 'conffiles'), `${pkg.conffiles.join('\n')}\n`);
  for (const [path, content] of Object.entries(pkg.files)) {
    const full = join(dir, path);
    await mkdir(join(full, '..'), { recursive: true });
    await writeFile(full, content, { mode: path.includes('/bin/') ? 0o755 : 0o644 });
  }
  const deb = `${dir}.deb`;
  await must('dpkg-deb', ['--build', '--root-owner-group', dir, deb]);
  return deb;
}
