import type { Unread } from './manifest.js';

/**
 * The order of `unread` lists: by path, then reason (code-unit order). A module of
 * its own, with type-only imports, so that collectors can use it without loading zod.
 */
export function compareUnread(a: Unread, b: Unread): number {
  return a.path < b.path ? -1 : a.path > b.path ? 1 : a.reason < b.reason ? -1 : a.reason > b.reason ? 1 : 0;
}
