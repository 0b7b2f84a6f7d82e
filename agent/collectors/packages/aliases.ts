import { lstatSync, readlinkSync } from 'node:fs';
import { posix } from 'node:path';
import type { PathOwner } from '../contract.js';

/**
 * Package databases record paths as the package shipped them (`/bin/false`), but on a
 * merged-/usr system `/bin` is a symlink to `usr/bin`, so the files collector meets
 * the file as `/usr/bin/false`. This adds, for every owned path whose folder runs
 * through a symlinked folder under the root, the path as it resolves there, so that
 * ownership follows the file. Symlinks are resolved inside the root, never on the
 * host running drift; a path already owned keeps its owner.
 *
 * Synchronous on purpose: a few hundred cached lstat calls, microseconds each.
 */
export function addResolvedAliases(root: string, owners: Map<string, PathOwner>, readLink: (path: string) => string | null = localLinkTarget(root)): void {
  for (const [alias, owner] of resolvedAliases(root, owners, readLink)) if (!owners.has(alias)) owners.set(alias, owner);
}

/**
 * The aliases addResolvedAliases adds (the owned paths as they resolve through a
 * symlinked folder, each with its path's owner), in the order of `owned`, whether or
 * not the alias is owned already: for an index other than a Map.
 */
export function resolvedAliases(root: string, owned: Iterable<[string, PathOwner]>, readLink: (path: string) => string | null = localLinkTarget(root)): Array<[string, PathOwner]> {
  const resolved = new Map<string, string>();
  const linkTarget = readLink;

  // The folder as it resolves inside the root (`/bin` → `/usr/bin`); depth-limited against loops.
  const resolveDir = (dir: string, depth = 0): string => {
    const hit = resolved.get(dir);
    if (hit !== undefined) return hit;
    let result = dir;
    if (dir !== '/' && depth <= 40) {
      const parent = resolveDir(posix.dirname(dir), depth + 1);
      const here = posix.join(parent, posix.basename(dir));
      const target = linkTarget(here);
      result = target === null ? here : resolveDir(target.startsWith('/') ? posix.normalize(target) : posix.join(parent, target), depth + 1);
    }
    resolved.set(dir, result);
    return result;
  };

  // Only the first two levels are resolved (`/bin`, `/lib64`, `/usr/lib64`): that is where
  // packages list paths through a symlinked folder (merged /usr). Deeper links (such
  // as /usr/lib/jvm/default-java) are not how packages list their files.
  const moved = (prefix: string): string | null => {
    const to = resolveDir(prefix);
    return to === prefix ? null : to;
  };
  const aliases: Array<[string, PathOwner]> = [];
  for (const [path, owner] of owned) {
    const first = path.indexOf('/', 1);
    if (first < 0) continue;
    const second = path.indexOf('/', first + 1);
    let alias: string | null = null;
    if (second > 0) {
      const to = moved(path.slice(0, second));
      if (to !== null) alias = to + path.slice(second);
    }
    if (alias === null) {
      const to = moved(path.slice(0, first));
      if (to !== null) alias = to + path.slice(first);
    }
    if (alias !== null) aliases.push([alias, owner]);
  }
  return aliases;
}

/** The target of a symlink under a local root (path as seen from the root), or null when it is none. */
export function localLinkTarget(root: string): (path: string) => string | null {
  return (path) => {
    try {
      const full = posix.join(root, path);
      return lstatSync(full).isSymbolicLink() ? readlinkSync(full) : null;
    } catch {
      return null;
    }
  };
}

/**
 * The folders whose symlink targets addResolvedAliases may look up for `owners`:
 * the first one and two levels of every owned path (a reader that cannot look up
 * paths one at a time, as over SSH, reads these in one batch).
 */
export function aliasCandidates(owners: ReadonlyMap<string, PathOwner>): string[] {
  const out = new Set<string>();
  for (const path of owners.keys()) {
    const first = path.indexOf('/', 1);
    if (first < 0) continue;
    out.add(path.slice(0, first));
    const second = path.indexOf('/', first + 1);
    if (second > 0) out.add(path.slice(0, second));
  }
  return [...out].sort();
}
