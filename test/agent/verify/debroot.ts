import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { buildDeb } from '../../helpers/debian.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Make a tiny dpkg root in a temp folder and install two small packages into it
 * with the real dpkg (`dpkg --root R -i`, run as root): `drift-demo-a` (a
 * conffile under /etc, dpkg-generated md5sums) and `drift-demo-b` (its own
 * md5sums without conffiles, so the Conffiles md5 is what is checked). Returns
 * the root.
 */
export function makeDpkgRoot(): string {
  const dir = mkdtempSync(join(tmpdir(), 'drift-debroot-'));
  const root = join(dir, 'root');
  mkdirSync(join(root, 'var/lib/dpkg/info'), { recursive: true });
  mkdirSync(join(root, 'var/lib/dpkg/updates'), { recursive: true });
  writeFileSync(join(root, 'var/lib/dpkg/status'), '');
  const a = buildDeb(dir, {
    name: 'drift-demo-a',
    version: '1:1.0-1',
    files: {
      '/etc/drift-demo-a/a.conf': 'key=1\n',
      '/usr/bin/drift-demo-a': '#!/bin/sh\necho a\n',
      '/usr/share/drift-demo-a/sub/file.txt': 'data\n',
      '/usr/share/drift-demo-a/other.txt': 'other\n',
      '/usr/share/drift-demo-a/empty': null,
    },
    conffiles: ['/etc/drift-demo-a/a.conf'],
  });
  const b = buildDeb(dir, {
    name: 'drift-demo-b',
    version: '2.0',
    files: { '/etc/drift-demo-b.conf': 'b=1\n', '/usr/share/drift-demo-b/readme': 'hello\n' },
    conffiles: ['/etc/drift-demo-b.conf'],
    md5sums: true,
  });
  execFileSync('dpkg', ['--root', root, '-i', a, b], { stdio: 'ignore', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  return root;
}

/** The paths `dpkg [--root R] --verify` reports, each once, sorted. */
export function dpkgVerifyPaths(root: string | null): string[] {
  const args = root ? ['--root', root, '--verify'] : ['--verify'];
  const out = execFileSync('dpkg', args, { encoding: 'utf8', maxBuffer: 1 << 28 });
  return pathsOfDpkgLines(out);
}

/** Paths of dpkg --verify lines (`<9 chars> <attr> <path>[ (<error>)]`), each once, sorted. */
export function pathsOfDpkgLines(out: string): string[] {
  const set = new Set<string>();
  for (const line of out.split('\n')) {
    if (line.length < 12) continue;
    set.add(line.slice(12).replace(/ \([^()]*\)$/, ''));
  }
  return [...set].sort();
}
