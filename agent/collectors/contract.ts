import type { PackageEntry, SectionName, Sections, Unread } from '../protocol/manifest.js';
import type { RuleSet } from '../protocol/rules.js';
import type { ByteBudget } from '../hash.js';

/** What every collector is given. Collectors report facts; they never judge. */
export interface CollectContext {
  /** Root folder to read: `/` for the live host, or a mounted image, chroot or fixture. */
  root: string;
  /** The /proc to read, or null when live state is not collected (an offline root). */
  proc: string | null;
  /** Watch and ignore globs decide which paths the files collector reads. */
  rules: RuleSet;
  /** Folder for caches (the stat cache); null disables caching. */
  stateDir: string | null;
  /** Re-hash every file even where the stat cache says it is unchanged. */
  forceRehash: boolean;
  /** The per-file and per-scan byte budgets shared by the collectors of one scan (default: ByteBudget's defaults). */
  budget?: ByteBudget;
  /** The sections to collect (`--sections`); all of them when absent. */
  sections?: readonly SectionName[] | undefined;
  /**
   * Which processes (and the ports they hold) to record: `services` (the default)
   * leaves out login sessions and what they start; `all` records every process.
   */
  processScope?: 'services' | 'all' | undefined;
}

/** Who installed a path, as the package database records it. */
export interface PathOwner {
  /** `manager:name`, e.g. `dpkg:openssh-server`. */
  owner: string;
  conffile: boolean;
}

/** Path → owner, as the files section needs it: a Map, or the packages collector's compact index. */
export interface OwnerLookup {
  get(path: string): PathOwner | undefined;
}

/**
 * What a collector returns. A source that fails partly records what it could not
 * read in `unread` and carries on; it throws only when it cannot run at all.
 */
export interface CollectResult<T> {
  entries: Record<string, T>;
  unread: Unread[];
  /** Packages collectors only: path → owning package, for the files section. */
  owners?: OwnerLookup;
}

/** What one package database gives: its packages and a map of the paths it lists. */
export type PackageDbResult = CollectResult<PackageEntry> & { owners: Map<string, PathOwner> };

/** One source of facts, behind one method. */
export interface Collector<S extends keyof Sections> {
  readonly section: S;
  collect(ctx: CollectContext): Promise<CollectResult<Sections[S][string]>>;
}
