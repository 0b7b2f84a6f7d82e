/**
 * What one hostile but well-formed report costs the collector (not a test): an
 * enrolled host reports its image plus N added files (default 200,000, ~600 KB of
 * gzip). Runs the app in-process on a real SQLite file, listening on 127.0.0.1, and
 * prints JSON: the request's wall time, /healthz latency (over HTTP) while it was
 * decided, the findings stored in full and summarised, and this process's peak RSS.
 *
 * Usage: node dist/bench/load/hostile.js [--added 200000] [--workers N] (default: the
 * collector's default, min(2, cores); 0 decides on the main thread)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { gzipSync } from 'node:zlib';
import { loadRuleSet } from '../../agent/rules/load.js';
import { compare } from '../../agent/engine/compare.js';
import { buildApp } from '../../server/http/app.js';
import { defaultWorkers } from '../../server/http/pool.js';
import { Store } from '../../server/store/store.js';
import { baselineOf, fullReport, imageSections, manifestOf } from '../../test/server/helpers/fleet.js';

const i = process.argv.indexOf('--added');
const ADDED = i > 0 ? Number(process.argv[i + 1]) : 200_000;
const w = process.argv.indexOf('--workers');
const WORKERS = w > 0 ? Number(process.argv[w + 1]) : defaultWorkers();
const ENROLL = 'bench-enroll-secret-0123456789';
const ADMIN = 'bench-admin-token-0123456789';

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'drift-hostile-'));
  const store = Store.open(join(dir, 'drift.db'));
  const app = buildApp({ store, enrollSecret: ENROLL, adminToken: ADMIN, baselineKeys: [], rules: await loadRuleSet([]), compare, maxBody: 64 << 20, silentAfterMs: 1e9, reportWorkers: { size: WORKERS } });
  const base = await app.listen({ host: '127.0.0.1', port: 0 });
  const auth = (k: string): Record<string, string> => ({ authorization: `Bearer ${k}` });
  await app.inject({ method: 'PUT', url: '/v1/baselines/ami-1', headers: auth(ADMIN), payload: baselineOf('ami-1').baseline });
  const key = (await app.inject({ method: 'POST', url: '/v1/enroll', headers: auth(ENROLL), payload: { hostId: 'h1', hostname: 'h1', imageId: 'ami-1' } })).json<{ nodeKey: string }>().nodeKey;
  const s = imageSections();
  for (let n = 0; n < ADDED; n++) s.files[`/etc/added/f${n}`] = { type: 'file', mode: '0644', uid: 0, gid: 0, size: 0, sha256: 'b'.repeat(64) };
  const body = gzipSync(JSON.stringify(fullReport(1, manifestOf(s, { hostname: 'h1', machineId: 'h1', imageId: 'ami-1' }))));
  const t0 = performance.now();
  let done = false;
  const sent = fetch(`${base}/v1/reports`, { method: 'POST', headers: { ...auth(key), 'content-type': 'application/json', 'content-encoding': 'gzip' }, body })
    .then((r) => { done = true; return r; });
  const healthz: number[] = [];
  for (let n = 0; n < 100_000 && !done; n++) {
    const h0 = performance.now();
    await (await fetch(`${base}/healthz`)).text();
    if (!done) healthz.push(performance.now() - h0);
    // A probe every 20 ms, as a monitor (or another host) would: not a busy loop taking a core from the report.
    await new Promise<void>((resolve) => setTimeout(resolve, 20));
  }
  const res = { statusCode: (await sent).status };
  const ms = Math.round(performance.now() - t0);
  healthz.sort((a, b) => a - b);
  const q = (p: number): number => Math.round((healthz[Math.min(healthz.length - 1, Math.floor(healthz.length * p))] ?? 0) * 10) / 10;
  const host = (await app.inject({ url: '/v1/hosts/h1', headers: auth(ADMIN) })).json<{ findings: unknown[]; findingsOmitted: { count: number } | null }>();
  console.log(JSON.stringify({
    added: ADDED, workers: WORKERS, gzipBytes: body.length, status: res.statusCode, reportMs: ms,
    healthzProbes: healthz.length, healthzMedianMs: q(0.5), healthzP99Ms: q(0.99), healthzMaxMs: q(1),
    findingsStored: host.findings.length, findingsOmitted: host.findingsOmitted?.count ?? 0,
    peakRssMb: Math.round(process.resourceUsage().maxRSS / 1024),
  }, null, 2));
  await app.close();
  store.close();
  rmSync(dir, { recursive: true, force: true });
}

await main();
