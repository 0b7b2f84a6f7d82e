/**
 * Cohort maths (DESIGN.md §5), pure: from each host's finding keys, which drift a
 * cohort shares (fleet-wide: rebake or add a rule, never replace) and which hosts
 * are snowflakes (findings rare in their cohort) with a score.
 *
 * A cohort is the hosts of one (imageId, role). Shares are over the hosts of the
 * cohort that have reported at least once.
 *
 * First-boot pins count too: hosts of a cohort launched alike pin the same values
 * for the paths first boot writes alike (the default user's keys when they share a
 * key pair, passwd, sudoers). Where one value of a path is held by more than
 * `fleetWideShare` of the hosts that pinned it, a host whose value is held by at most
 * `rareShare` of them is a snowflake like one with a rare finding, named as
 * `{ kind: 'file', key: path, change: 'pinned' }`. Paths whose values differ on every
 * host (hostname, host keys) have no such majority and never count. The store finds
 * those rare values (`PinStore.rareValues`, grouped in SQLite with these same
 * thresholds); here they only weigh in the score.
 */

/** What cohort maths needs to know about one host. */
export interface CohortHost {
  id: string;
  hostname: string;
  imageId: string | null;
  role: string | null;
  /** False for a host that enrolled but never reported: it does not count in shares. */
  reported: boolean;
  findings: FindingKey[];
  /** Its first-boot values that are rare in its cohort (see the module comment). */
  rarePins?: RarePin[];
}

/** A host's pinned value of `path`, held by `hosts` of the `of` hosts of its cohort that pinned the path. */
export interface RarePin {
  path: string;
  hosts: number;
  of: number;
}

/** The identity of a finding across hosts. */
export interface FindingKey {
  kind: string;
  key: string;
  change: string;
}

/** Thresholds, as shares of a cohort's reporting hosts. */
export interface CohortOptions {
  /** A finding shared by MORE than this share is fleet-wide (default 0.5). */
  fleetWideShare: number;
  /** A finding shared by AT MOST this share is rare (default 0.1). */
  rareShare: number;
  /**
   * Smallest cohort (reporting hosts) in which a host can be a snowflake (default 3):
   * in a cohort of two, one host's finding is one in two, not an oddity. In cohorts
   * smaller than 1/rareShare, a finding held by exactly one host still counts as rare,
   * so that a small fleet still names its odd host.
   */
  minCohort: number;
}

export const DEFAULT_COHORT_OPTIONS: Readonly<CohortOptions> = Object.freeze({ fleetWideShare: 0.5, rareShare: 0.1, minCohort: 3 });

export interface FleetWideFinding extends FindingKey {
  hosts: number;
  share: number;
  recommendation: 'rebake or add a rule';
}

export interface Snowflake {
  hostId: string;
  hostname: string;
  /** In (0, 1]: grows with the number and the rarity of the host's rare findings. */
  score: number;
  /** The host's rare findings. */
  findings: FindingKey[];
  why: string;
}

export interface Cohort {
  imageId: string | null;
  role: string | null;
  hosts: number;
  /** Reporting hosts with at least one finding. */
  drifted: number;
  fleetWide: FleetWideFinding[];
  /** Highest score first. */
  snowflakes: Snowflake[];
}

export interface FleetView {
  cohorts: Cohort[];
  /** Snowflake score by host id (hosts that are not snowflakes are absent). */
  scores: Map<string, number>;
}

const keyOf = (f: FindingKey): string => `${f.kind}\0${f.key}\0${f.change}`;

/**
 * Group hosts into cohorts and find fleet-wide drift and snowflakes. Linear in the
 * number of (host, finding) pairs. Cohorts come sorted by imageId then role.
 *
 * Score of a snowflake: 1 − Π (share of each rare finding), so one finding held by
 * 1 host of 100 scores 0.99, one held by 1 of 10 scores 0.9, and each further rare
 * finding pushes the score towards 1.
 */
export function computeFleet(hosts: readonly CohortHost[], options: Partial<CohortOptions> = {}): FleetView {
  const opts: CohortOptions = { ...DEFAULT_COHORT_OPTIONS, ...options };
  const groups = new Map<string, CohortHost[]>();
  for (const h of hosts) {
    const g = `${h.imageId ?? ''}\0${h.role ?? ''}`;
    let list = groups.get(g);
    if (!list) groups.set(g, (list = []));
    list.push(h);
  }
  const cohorts: Cohort[] = [];
  const scores = new Map<string, number>();
  for (const members of groups.values()) {
    const first = members[0] as CohortHost;
    const reporting = members.filter((h) => h.reported);
    const n = reporting.length;
    // `of`: for a rare pinned value, the hosts that pinned its path.
    const counts = new Map<string, { f: FindingKey; hosts: number; of?: number }>();
    for (const h of reporting) {
      const seen = new Set<string>();
      for (const f of h.findings) {
        const k = keyOf(f);
        if (seen.has(k)) continue;
        seen.add(k);
        const c = counts.get(k);
        if (c) c.hosts++;
        else counts.set(k, { f: { kind: f.kind, key: f.key, change: f.change }, hosts: 1 });
      }
    }
    const fleetWide: FleetWideFinding[] = [];
    for (const { f, hosts: count } of counts.values()) {
      const share = count / n;
      if (share > opts.fleetWideShare) fleetWide.push({ ...f, hosts: count, share: round(share), recommendation: 'rebake or add a rule' });
    }
    fleetWide.sort((a, b) => b.hosts - a.hosts || cmp(keyOf(a), keyOf(b)));

    const rareMax = Math.max(1, Math.floor(opts.rareShare * n));
    for (const h of reporting) {
      for (const r of h.rarePins ?? []) {
        const key: FindingKey = { kind: 'file', key: r.path, change: 'pinned' };
        const prev = counts.get(keyOf(key));
        if (!prev || r.hosts < prev.hosts) counts.set(keyOf(key), { f: key, hosts: r.hosts, of: r.of });
      }
    }
    const snowflakes: Snowflake[] = [];
    if (n >= opts.minCohort) {
      for (const h of reporting) {
        const rare: FindingKey[] = [];
        let product = 1;
        const seen = new Set<string>();
        for (const r of h.rarePins ?? []) {
          rare.push({ kind: 'file', key: r.path, change: 'pinned' });
          product *= r.hosts / r.of;
        }
        for (const f of h.findings) {
          const k = keyOf(f);
          if (seen.has(k)) continue;
          seen.add(k);
          const count = counts.get(k)?.hosts ?? 0;
          if (count > rareMax || count / n > opts.fleetWideShare) continue;
          rare.push({ kind: f.kind, key: f.key, change: f.change });
          product *= count / n;
        }
        if (rare.length === 0) continue;
        rare.sort((a, b) => cmp(keyOf(a), keyOf(b)));
        const score = round(1 - product) || 0.01;
        scores.set(h.id, score);
        snowflakes.push({ hostId: h.id, hostname: h.hostname, score, findings: rare, why: explain(rare, counts, n) });
      }
    }
    snowflakes.sort((a, b) => b.score - a.score || cmp(a.hostId, b.hostId));
    cohorts.push({
      imageId: first.imageId, role: first.role, hosts: members.length,
      drifted: reporting.filter((h) => h.findings.length > 0).length, fleetWide, snowflakes,
    });
  }
  cohorts.sort((a, b) => cmp(a.imageId ?? '', b.imageId ?? '') || cmp(a.role ?? '', b.role ?? ''));
  return { cohorts, scores };
}

function explain(rare: FindingKey[], counts: Map<string, { hosts: number; of?: number }>, n: number): string {
  const shown = rare.slice(0, 3).map((f) => {
    const c = counts.get(keyOf(f));
    const hosts = c?.hosts ?? 1;
    if (f.change === 'pinned') {
      return `first-boot value of ${f.key} (${hosts === 1 ? 'only this host' : `${hosts} hosts`} of ${c?.of ?? n} that pinned it; the others share another)`;
    }
    return `${f.kind} ${f.key} ${f.change} (${hosts === 1 ? 'only this host' : `${hosts} of ${n} hosts`})`;
  });
  const more = rare.length > 3 ? ` and ${rare.length - 3} more` : '';
  return `${rare.length} finding${rare.length === 1 ? '' : 's'} rare in its cohort of ${n}: ${shown.join('; ')}${more}`;
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
