import t from 'tap';
import { computeFleet, type CohortHost } from '../../../server/fleet/cohorts.js';

const host = (id: string, findings: string[], over: Partial<CohortHost> = {}): CohortHost => ({
  id, hostname: `n-${id}`, imageId: 'ami-1', role: null, reported: true,
  findings: findings.map((k) => ({ kind: 'file', key: k, change: 'modified' })), ...over,
});

t.test('fleet-wide: shared by more than half of the reporting hosts', async (t) => {
  const hosts = [host('a', ['/x']), host('b', ['/x']), host('c', ['/x']), host('d', []), host('e', [], { reported: false })];
  const { cohorts } = computeFleet(hosts);
  t.equal(cohorts.length, 1);
  t.equal(cohorts[0]?.hosts, 5);
  t.equal(cohorts[0]?.drifted, 3);
  t.same(cohorts[0]?.fleetWide, [{ kind: 'file', key: '/x', change: 'modified', hosts: 3, share: 0.75, recommendation: 'rebake or add a rule' }]);
  t.same(cohorts[0]?.snowflakes, [], 'fleet-wide drift makes nobody a snowflake');
  const half = computeFleet([host('a', ['/x']), host('b', ['/x']), host('c', []), host('d', [])]);
  t.same(half.cohorts[0]?.fleetWide, [], 'exactly half is not more than half');
});

t.test('snowflake: rare findings, score grows with their number and rarity', async (t) => {
  const clean = Array.from({ length: 97 }, (_, i) => host(`c${i}`, []));
  const hosts = [...clean, host('one', ['/a']), host('two', ['/a', '/b']), host('three', ['/c'])];
  const { cohorts, scores } = computeFleet(hosts);
  const flakes = cohorts[0]?.snowflakes ?? [];
  t.same(flakes.map((f) => f.hostId), ['two', 'three', 'one'], 'highest score first');
  const s = (id: string): number => scores.get(id) ?? 0;
  t.equal(s('three'), 0.99, 'one finding on 1 host of 100');
  t.equal(s('one'), 0.98, 'a finding on 2 hosts of 100 is less rare');
  t.ok(s('two') > s('three'), 'two rare findings beat one');
  t.ok(s('two') <= 1);
  t.equal(scores.has('c0'), false);
  t.match(flakes.find((f) => f.hostId === 'two')?.why, /2 findings rare in its cohort of 100: file \/a modified \(2 of 100 hosts\); file \/b modified \(only this host\)/);
});

t.test('rare threshold: at most 10% of the cohort, a single host in small cohorts, none below 3 hosts', async (t) => {
  const common = Array.from({ length: 20 }, (_, i) => host(`h${i}`, i < 3 ? ['/shared-by-3'] : []));
  t.equal(computeFleet(common).cohorts[0]?.snowflakes.length, 0, '3 of 20 is 15%, not rare');
  const atTen = Array.from({ length: 20 }, (_, i) => host(`h${i}`, i < 2 ? ['/shared-by-2'] : []));
  t.equal(computeFleet(atTen).cohorts[0]?.snowflakes.length, 2, '2 of 20 is 10%: rare');
  const small = [host('a', ['/odd']), host('b', []), host('c', [])];
  t.same(computeFleet(small).cohorts[0]?.snowflakes.map((f) => f.hostId), ['a'], 'one host of three');
  t.equal(computeFleet(small).scores.get('a'), 0.667);
  t.equal(computeFleet([host('a', ['/odd']), host('b', [])]).cohorts[0]?.snowflakes.length, 0, 'two hosts: no reference');
  t.equal(computeFleet(small, { minCohort: 4 }).cohorts[0]?.snowflakes.length, 0, 'minCohort is configurable');
  const strict = Array.from({ length: 20 }, (_, i) => host(`h${i}`, i < 2 ? ['/x'] : []));
  t.equal(computeFleet(strict, { rareShare: 0.05 }).cohorts[0]?.snowflakes.length, 0, 'rareShare is configurable');
});

t.test('cohorts are (image, role), sorted', async (t) => {
  const hosts = [host('a', [], { imageId: 'ami-2' }), host('b', [], { role: 'web' }), host('c', []), host('d', [], { imageId: null })];
  const { cohorts } = computeFleet(hosts);
  t.same(cohorts.map((c) => [c.imageId, c.role, c.hosts]), [[null, null, 1], ['ami-1', null, 1], ['ami-1', 'web', 1], ['ami-2', null, 1]]);
  t.same(computeFleet([]).cohorts, []);
});

t.test('10,000 hosts stay linear', async (t) => {
  const hosts = Array.from({ length: 10_000 }, (_, i) => host(`h${i}`, i % 100 === 0 ? [`/drift/${i}`, '/common'] : []));
  const { cohorts } = computeFleet(hosts);
  t.equal(cohorts[0]?.snowflakes.length, 100);
  t.equal(cohorts[0]?.drifted, 100);
});
