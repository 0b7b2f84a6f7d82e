/**
 * Bounds of a file entry's attribute lists, shared by the manifest schema and the
 * files collector. Kept apart from manifest.ts so that the collector, which only
 * needs these numbers, does not load the schema library with them.
 */

/** Extended attributes recorded per path at most (the collector lists the rest as unread). */
export const MAX_XATTRS = 64;
/** POSIX ACL entries per ACL at most (a real one has a handful; the kernel allows ~8,000). */
export const MAX_ACL_ENTRIES = 256;
