import type { OwnerLookup, PathOwner } from '../contract.js';

/**
 * Who owns each packaged path, held compactly: the paths sorted in one array, a
 * parallel array of codes (owner index × 2, plus 1 for a conffile) and one shared
 * PathOwner object per code, instead of a Map of one object per path (a Debian host
 * lists over 100,000 paths: ~20 MB of heap as a Map). Looked up by binary search.
 */
export class OwnerIndex implements OwnerLookup {
  private constructor(
    /** Sorted by UTF-16 code unit (the default sort), no duplicates. */
    readonly paths: readonly string[],
    private readonly codes: Uint32Array,
    /** Owner names (`dpkg:openssl`), indexed by code >> 1. */
    readonly names: readonly string[],
    private readonly table: readonly PathOwner[],
  ) {}

  private static tableOf(names: readonly string[]): PathOwner[] {
    const table: PathOwner[] = [];
    for (const owner of names) table.push({ owner, conffile: false }, { owner, conffile: true });
    return table;
  }

  /** The index of a path → owner map (each path keeps its owner). */
  static fromMap(map: ReadonlyMap<string, PathOwner>): OwnerIndex {
    const paths = [...map.keys()].sort();
    const nameAt = new Map<string, number>();
    const names: string[] = [];
    const codes = new Uint32Array(paths.length);
    for (let i = 0; i < paths.length; i++) {
      const o = map.get(paths[i] as string) as PathOwner;
      let n = nameAt.get(o.owner);
      if (n === undefined) nameAt.set(o.owner, (n = names.push(o.owner) - 1));
      codes[i] = n * 2 + (o.conffile ? 1 : 0);
    }
    return new OwnerIndex(paths, codes, names, OwnerIndex.tableOf(names));
  }

  /**
   * The index of parts already in its form (read back from a cache): null unless the
   * paths are strictly ascending strings and every code names an owner.
   */
  static fromParts(paths: unknown, codes: unknown, names: unknown): OwnerIndex | null {
    if (!Array.isArray(paths) || !Array.isArray(codes) || !Array.isArray(names) || paths.length !== codes.length) return null;
    if (!names.every((n): n is string => typeof n === 'string')) return null;
    const out = new Uint32Array(codes.length);
    let last: string | null = null;
    for (let i = 0; i < paths.length; i++) {
      const p: unknown = paths[i];
      const c: unknown = codes[i];
      if (typeof p !== 'string' || (last !== null && !(last < p))) return null;
      if (typeof c !== 'number' || !Number.isInteger(c) || c < 0 || c >= names.length * 2) return null;
      out[i] = c;
      last = p;
    }
    return new OwnerIndex(paths as string[], out, names, OwnerIndex.tableOf(names));
  }

  get size(): number {
    return this.paths.length;
  }

  private indexOf(path: string): number {
    let lo = 0;
    let hi = this.paths.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const p = this.paths[mid] as string;
      if (p < path) lo = mid + 1;
      else if (p > path) hi = mid - 1;
      else return mid;
    }
    return -1;
  }

  get(path: string): PathOwner | undefined {
    const i = this.indexOf(path);
    return i < 0 ? undefined : this.table[this.codes[i] as number];
  }

  has(path: string): boolean {
    return this.indexOf(path) >= 0;
  }

  /** Every path and its owner, in path order. */
  *entries(): IterableIterator<[string, PathOwner]> {
    for (let i = 0; i < this.paths.length; i++) yield [this.paths[i] as string, this.table[this.codes[i] as number] as PathOwner];
  }

  /** The codes, for a cache to store beside `paths` and `names`. */
  codeList(): number[] {
    return Array.from(this.codes);
  }

  /**
   * This index with `more` added where a path has no owner yet (among `more`, the
   * first of a path wins): the two sorted lists merged, no map of every path built.
   */
  withAdded(more: ReadonlyArray<readonly [string, PathOwner]>): OwnerIndex {
    // Stable sort: the first of equal paths stays first.
    const add = more.map((pair, i) => ({ path: pair[0], owner: pair[1], i })).sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : a.i - b.i));
    const names = [...this.names];
    const nameAt = new Map<string, number>(names.map((n, i) => [n, i]));
    const codeOf = (o: PathOwner): number => {
      let n = nameAt.get(o.owner);
      if (n === undefined) nameAt.set(o.owner, (n = names.push(o.owner) - 1));
      return n * 2 + (o.conffile ? 1 : 0);
    };
    const paths: string[] = [];
    const codes: number[] = [];
    let i = 0;
    let k = 0;
    while (i < this.paths.length || k < add.length) {
      const mine = this.paths[i];
      const theirs = add[k];
      if (theirs === undefined || (mine !== undefined && mine <= theirs.path)) {
        if (theirs !== undefined && mine === theirs.path) k++;
        paths.push(mine as string);
        codes.push(this.codes[i++] as number);
      } else {
        if (paths[paths.length - 1] !== theirs.path) {
          paths.push(theirs.path);
          codes.push(codeOf(theirs.owner));
        }
        k++;
      }
    }
    if (paths.length === this.paths.length) return this;
    return new OwnerIndex(paths, Uint32Array.from(codes), names, OwnerIndex.tableOf(names));
  }
}
