import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';

/** A folder tree: path → file content (strings) or null for an empty folder. */
type Tree = Record<string, string | null>;

const md5 = (s: string): string => createHash('md5').update(s).digest('hex');

/**
 * Build a .deb from a tree with `dpkg-deb --build`. `md5sums: 'package'` ships a
 * DEBIAN/md5sums without the conffiles (as dh_md5sums does), so dpkg falls back
 * to the Conffiles md5; otherwise dpkg generates md5sums itself at install.
 */
function buildDeb(dir: string, name: string, version: string, tree: Tree, conffiles: string[], shipMd5sums: boolean, executables: string[] = []): string {
  const pkg = join(dir, `src-${name}`);
  mkdirSync(join(pkg, 'DEBIAN'), { recursive: true });
  writeFileSync(join(pkg, 'DEBIAN', 'control'), `Package: ${name}\nVersion: ${version}\nArchitecture: all\nMaintainer: drift tests <t@example.org>\nDescription: drift test package\n`);
  if (conffiles.length) writeFileSync(join(pkg, 'DEBIAN', 'conffiles'), conffiles.map((c) => `${c}\n`).join(''));
  const sums: string[] = [];
  for (const [path, content] of Object.entries(tree)) {
    const full = join(pkg, path);
    if (content === null) {
      mkdirSync(full, { recursive: true });
      continue;
    }
    mkdirSync(join(full, '..'), { recursive: true });
    writeFileSync(full, content);
    if (executables.includes(path)) chmodSync(full, 0o755);
    if (!conffiles.includes(path)) sums.push(`${md5(content)}  ${path.slice(1)}\n`);
  }
  if (shipMd5sums) writeFileSync(join(pkg, 'DEBIAN', 'md5sums'), sums.join(''));
  const deb = join(dir, `${name}.deb`);
  execFileSync('dpkg-deb', ['--root-owner-group', '--build', pkg, deb], { stdio: 'ignore' });
  return deb;
}

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
  const a = buildDeb(dir, 'drift-demo-a', '1:1.0-1', {
    '/etc/drift-demo-a/a.conf': 'key=1\n',
    '/usr/bin/drift-demo-a': '#!/bin/sh\necho a\n',
    '/usr/share/drift-demo-a/sub/file.txt': 'data\n',
    '/usr/share/drift-demo-a/other.txt': 'other\n',
    '/usr/share/drift-demo-a/empty': null,
  }, ['/etc/drift-demo-a/a.conf'], false, ['/usr/bin/drift-demo-a']);
  const b = buildDeb(dir, 'drift-demo-b', '2.0', {
    '/etc/drift-demo-b.conf': 'b=1\n',
    '/usr/share/drift-demo-b/readme': 'hello\n',
  }, ['/etc/drift-demo-b.conf'], true);
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
