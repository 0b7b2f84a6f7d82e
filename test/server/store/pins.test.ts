import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { Store } from '../../../server/store/store.js';
import { PINS_SCHEMA, type PinBook } from '../../../agent/protocol/pins.js';
import { computeFleet, type RarePin } from '../../../server/fleet/cohorts.js';

/** First-boot pins in a real SQLite store: shared values stored once, pruning keeps them, rare values per cohort. */

const sha = (s: string): string => createHash('sha256').update(s).digest('hex');
const entry = (content: string) => ({ type: 'file' as const, mode: '0644', uid: 0, gid: 0, size: content.length, sha256: sha(content), content });
const T = '2026-12-01T00:00:00.000Z';

function book(files: Record<string, string | null>): PinBook {
  return { schema: PINS_SCHEMA, pinnedAt: T, files: Object.fromEntries(Object.entries(files).map(([p, c]) => [p, { firstSeen: T, entry: c === null ? null : entry(c) }])) };
}

t.test('pins of a cohort: shared values stored once, kept by prune, journaled; rare values found per cohort', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'drift-pins-store-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const s = Store.open(join(dir, 'drift.db'));
  t.teardown(() => s.close());
  const rows: number[] = [];
  for (let i = 0; i < 12; i++) {
    const image = i < 10 ? 'img-a' : 'img-b';
    const h = s.enroll({ id: `host-${i}`, hostname: `h${i}`, imageId: image, keyHash: Buffer.alloc(16), now: 1 });
    s.db.prepare('UPDATE hosts SET last_seen = 1 WHERE rowid = ?').run(h.rowid);
    // Every host its own hostname; the default user's keys shared, except host 3's.
    const b = book({ '/etc/hostname': `h${i}\n`, '/home/admin/.ssh/authorized_keys': i === 3 ? 'ssh-ed25519 BBBB\n' : 'ssh-ed25519 AAAA\n', '/etc/gone': null });
    s.db.transaction(() => s.pins.write(h.rowid, { book: b, changed: Object.keys(b.files), keys: 'trust', instanceKeys: null, journal: { action: 'first-boot', by: null, reason: null } }, 1))();
    rows.push(h.rowid);
  }
  const blobs = Number(s.db.prepare('SELECT count(DISTINCT value) FROM pins').pluck().get());
  t.equal(blobs, 12 + 2, 'one blob per hostname, one per distinct key file');
  s.prune(Date.now());
  const back = s.pins.pinsOf(rows[0] as number);
  t.same(back?.book, book({ '/etc/gone': null, '/etc/hostname': 'h0\n', '/home/admin/.ssh/authorized_keys': 'ssh-ed25519 AAAA\n' }), 'read back whole after prune');
  t.equal(back?.keys, 'trust');
  t.match(s.pins.journal(rows[0] as number), [{ action: 'first-boot', paths: ['/etc/hostname', '/home/admin/.ssh/authorized_keys', '/etc/gone'] }]);

  const rare = s.pins.rareValues({ minCohort: 3, majority: 0.5, rareShare: 0.1 });
  t.same(rare, [{ host: rows[3], path: '/home/admin/.ssh/authorized_keys', hosts: 1, of: 10 }], 'only host 3, and not img-b\'s two hosts, nor per-host hostnames');
  const byHost = new Map<number, RarePin[]>(rare.map((r) => [r.host, [{ path: r.path, hosts: r.hosts, of: r.of }]]));
  const fleet = computeFleet(s.listHosts().map((h) => ({ id: h.id, hostname: h.hostname, imageId: h.imageId, role: h.role, reported: true, findings: [], rarePins: byHost.get(h.rowid) ?? [] })));
  const a = fleet.cohorts.find((c) => c.imageId === 'img-a');
  t.same(a?.snowflakes.map((x) => [x.hostId, x.score]), [['host-3', 0.9]], 'a snowflake scored like a finding held by 1 of 10');
  t.match(a?.snowflakes[0]?.why, /first-boot value of \/home\/admin\/.ssh\/authorized_keys \(only this host of 10 that pinned it/);
});
