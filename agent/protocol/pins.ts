import { z } from 'zod';
import { FileEntrySchema } from './manifest.js';

/**
 * First-boot pins (`drift.pins/v1`). Expect rules say what first boot MAY change;
 * pins say that it happens once: the first scan of a host (or its first report to a
 * collector) records the values the expectations accepted, and from then on a pinned
 * path that holds anything else is drift. Declared once here, for the local pin file
 * of `drift scan` and for the collector's admin API.
 */
export const PINS_SCHEMA = 'drift.pins/v1';

/**
 * At most this many pinned paths per host: first boot changes a dozen paths, and a
 * host that shows thousands of "expected" changes must not grow the pin store
 * without bound. Expected changes beyond it are reported, not pinned.
 */
export const MAX_PINS = 1000;

/** Pinned content is kept up to this many characters; beyond it the sha256 alone pins the file. */
export const PIN_CONTENT_MAX = 8192;

/** Longest pinned path accepted from a pin file or a store. */
export const MAX_PIN_PATH = 4096;

/** What one path held when it was pinned. `entry` is null when first boot removed it. */
export const PinSchema = z.strictObject({
  /** RFC 3339 time of the scan or report that pinned the value. */
  firstSeen: z.string().max(64),
  /** The manifest entry as first boot left it, without package metadata (`owner`, `conffile`). */
  entry: FileEntrySchema.omit({ owner: true, conffile: true }).strict().nullable(),
});
export type Pin = z.infer<typeof PinSchema>;
export type PinnedEntry = NonNullable<Pin['entry']>;

/**
 * How the default user's `authorized_keys` was judged: `verified` against the keys of
 * the instance's metadata (cloud-init's instance-data), or pinned on `trust` because
 * no metadata was readable.
 */
export const KEY_SOURCES = ['verified', 'trust'] as const;
export type KeySource = (typeof KEY_SOURCES)[number];

/** The pins of one host. */
export const PinBookSchema = z.strictObject({
  schema: z.literal(PINS_SCHEMA),
  /** RFC 3339 time of the first scan or report (the host's first boot as drift saw it). */
  pinnedAt: z.string().max(64),
  files: z.record(z.string().min(1).max(MAX_PIN_PATH), PinSchema)
    .refine((files) => Object.keys(files).length <= MAX_PINS, `at most ${MAX_PINS} pinned paths`),
});
export type PinBook = z.infer<typeof PinBookSchema>;

/** What a report says about first-boot pinning (absent where nothing is pinned, e.g. a saved manifest). */
export const FirstBootSchema = z.object({
  /** When the host's first-boot values were pinned. */
  pinnedAt: z.string(),
  /** Number of pinned paths. */
  pins: z.number().int().nonnegative(),
  /** How the default user's SSH keys were judged; null when the host has no such keys file. */
  keys: z.enum(KEY_SOURCES).nullable(),
  /** The default user these keys belong to (the rules' `cloudInitUser`). */
  user: z.string().nullable(),
});
export type FirstBoot = z.infer<typeof FirstBootSchema>;
