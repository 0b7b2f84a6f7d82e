/**
 * What one hostile but well-formed report costs the collector (not a test): an
 * enrolled host reports its image plus N added files (default 200,000, ~600 KB of
 * gzip). Runs the app in-process on a real SQLite file and prints JSON: the request's
 * wall time, the findings stored in full and summarised, and this process's peak RSS.
 *
 * Usage: node dist/bench/load/hostile.js [--added 200000]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { gzipSync } from 'node:zlib';
import { loadRuleSet } from '../../agent/rules/load.js';
import { compare } from '../../agent/engine/compare.js';
import { buildApp } from '../../server/http/app.js';
import { Store } from '../../server/store/store.js';
import { baselineOf, fullReport, imageSections, manifestOf } from '../../test/server/helpers/fleet.js';

const i = process.argv.indexOf('--added');
const ADDED = i > 0 ? Number(process.argv[i + 1]) : 200_000;
const ENROLL = 'bench-enroll-secret-0123456789';
const ADMIN = 'bench-admin-token-0123456789';

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'drift-hostile-'));
  const store = Store.open(join(dir, 'drift.db'));
  const app = buildApp({ store, enrollSecret: ENROLL, adminToken: ADMIN, baselineKeys: [], rules: await loadRuleSet([]), compare, maxBody: 64 << 20, silentAfterMs: 1e9 });
  const auth = (k: string): Record<string, string> => ({ authorization: `Bearer ${k}` });
  await app.inject({ method: 'PUT', url: '/v1/baselines/ami-1', headers: auth(ADMIN), payload: baselineOf('ami-1').baseline });
  const key = (await app.inject({ method: 'POST', url: '/v1/enroll', headers: auth(ENROLL), payload: { hostId: 'h1', hostname: 'h1', imageId: 'ami-1' } })).json<{ nodeKey: string }>().nodeKey;
  const s = imageSections();
  for (let n = 0; n < ADDED; n++) s.files[`/etc/added/f${n}`] = { type: 'file', mode: '0644', uid: 0, gid: 0, size: 0, sha256: 'b'.repeat(64) };
  const body = gzipSync(JSON.stringify(fullReport(1, manifestOf(s, { hostname: 'h1', machineId: 'h1', imageId: 'ami-1' }))));
  const t0 = performance.now();
  const res = await app.inject({ method: 'POST', url: '/v1/reports', headers: { ...auth(key), 'content-type': 'application/json', 'content-encoding': 'gzip' }, payload: body });
  const ms = Math.round(performance.now() - t0);
  const host = (await app.inject({ url: '/v1/hosts/h1', headers: auth(ADMIN) })).json<{ findings: unknown[]; findingsOmitted: { count: number } | null }>();
  console.log(JSON.stringify({
    added: ADDED, gzipBytes: body.length, status: res.statusCode, reportMs: ms,
    findingsStored: host.findings.length, findingsOmitted: host.findingsOmitted?.count ?? 0,
    peakRssMb: Math.round(process.resourceUsage().maxRSS / 1024),
  }, null, 2));
  await app.close();
  store.close();
  rmSync(dir, { recursive: true, force: true });
}

await main();
