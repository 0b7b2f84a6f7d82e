/**
 * How long a report decided on the main thread holds the collector's event loop
 * (not a test): an in-process collector with report workers, real SQLite file in /tmp,
 * and reports at the main thread's bounds (server/http/decide.ts INLINE_BOUNDS,
 * server/http/ingest.ts INLINE_PARSE_BYTES) in the shapes that cost it most, plus
 * shapes just past them (decided in a worker after the main thread gave up). For each
 * shape, `--runs` reports (each a new host), and prints JSON per shape: where they were
 * decided, the longest event-loop block (perf_hooks.monitorEventLoopDelay, 1 ms
 * resolution) and the time the event loop was busy per report
 * (performance.eventLoopUtilization: the main thread only, not the workers).
 *
 * Usage: node dist/bench/load/inline.js [--runs 5] [--files 3000] [--only TEXT]
 * (`--only`: the shapes whose name contains TEXT.)
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { gzipSync } from 'node:zlib';
import { compare } from '../../agent/engine/compare.js';
import { computeDigests } from '../../agent/manifest.js';
import { canonicalJson } from '../../agent/protocol/canonical.js';
import { MANIFEST_SCHEMA, type Baseline, type FileEntry, type Sections } from '../../agent/protocol/manifest.js';
import { loadRuleSet } from '../../agent/rules/load.js';
import { buildApp } from '../../server/http/app.js';
import { INLINE_BOUNDS } from '../../server/http/decide.js';
import { Store } from '../../server/store/store.js';

const arg = (name: string, def: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const RUNS = arg('runs', 5);
const FILES = arg('files', 3000);
const ENROLL = 'bench-enroll-secret-0123456789';
const ADMIN = 'bench-admin-token-0123456789';
const hex = (s: string): string => createHash('sha256').update(s).digest('hex');

/** A Debian-like image (as bench/load/run.ts): `files` files, a tenth as many packages. */
function imageSections(files: number, small = false): Sections {
  const f: Sections['files'] = {};
  for (let i = 0; i < files; i++) {
    const path = `/usr/lib/x86_64-linux-gnu/f${String(i).padStart(5, '0')}`;
    f[path] = small ? { type: 'dir', mode: '0755', uid: 0, gid: 0 } : { type: 'file', mode: '0644', uid: 0, gid: 0, size: 1000 + i, sha256: hex(`${i}`), owner: `dpkg:pkg${i % 300}` };
  }
  const packages: Sections['packages'] = {};
  for (let i = 0; i < (small ? 0 : files / 10); i++) packages[`dpkg:pkg${i}:amd64`] = { version: `1.${i % 17}-1`, source: `src${i}` };
  return { packages, files: f, processes: { '/usr/sbin/sshd|root': { count: 1, deleted: false } }, ports: { 'tcp:0.0.0.0:22': { process: '/usr/sbin/sshd' } } };
}

function manifest(sections: Sections, host: string, image: string): Baseline {
  return {
    schema: MANIFEST_SCHEMA, host: { hostname: host, machineId: host, image: { id: image } }, collectedAt: '2026-12-01T00:00:00.000Z',
    agent: { version: 'bench' }, digests: computeDigests(sections), ...sections, unread: [],
  };
}

/** `n` lines of `width` characters sharing a long prefix (the costliest lines to tell apart). */
const lines = (tag: string, n: number, width = 200): string => Array.from({ length: n }, (_, i) => `${tag.repeat(width - 8)}${String(i).padStart(8, '0')}\n`).join('');

interface Shape { name: string; image: string; report: (s: Sections) => void }

const half = Math.floor(INLINE_BOUNDS.contentLines / 2);
const shapes: Shape[] = [
  { name: 'clean', image: 'big', report: () => {} },
  { name: 'drifted: 2 files and 1 package changed (the load bench)', image: 'big', report: (s) => {
    const f = Object.keys(s.files);
    for (const k of f.slice(0, 2)) s.files[k] = { ...(s.files[k] as FileEntry), sha256: hex(`changed:${k}`) };
    const p = Object.keys(s.packages)[0] as string;
    s.packages[p] = { version: '9.9-1' };
  } },
  { name: `${INLINE_BOUNDS.changed} files added, deep 1.6 KiB paths`, image: 'big', report: (s) => {
    for (let i = 0; i < INLINE_BOUNDS.changed; i++) s.files[`${'/d'.repeat(800)}/${String(i).padStart(4, '0')}`] = { type: 'file', mode: '4755', uid: 0, gid: 0, size: 1, sha256: hex(`${i}`) };
  } },
  { name: `content: ${half} lines against ${INLINE_BOUNDS.contentLines - half} other lines`, image: 'content', report: (s) => {
    s.files['/etc/app.conf'] = { ...(s.files['/etc/app.conf'] as FileEntry), content: lines('b', INLINE_BOUNDS.contentLines - half), sha256: hex('b') };
  } },
  { name: `${INLINE_BOUNDS.entries} entries parsed (small image), ${INLINE_BOUNDS.changed} added`, image: 'small', report: (s) => {
    for (let i = 0; i < INLINE_BOUNDS.changed; i++) s.files[`/x/${i}`] = { type: 'dir', mode: '0755', uid: 0, gid: 0 };
  } },
  { name: `past the bounds: ${INLINE_BOUNDS.changed + 1} files added`, image: 'big', report: (s) => {
    for (let i = 0; i <= INLINE_BOUNDS.changed; i++) s.files[`/x/${i}`] = { type: 'dir', mode: '0755', uid: 0, gid: 0 };
  } },
  { name: `past the bounds: ${INLINE_BOUNDS.entries * 2} small entries added`, image: 'big', report: (s) => {
    for (let i = 0; i < INLINE_BOUNDS.entries * 2; i++) s.files[`/x/${i}`] = { type: 'dir', mode: '0755', uid: 0, gid: 0 };
  } },
];

const images: Record<string, Sections> = {
  big: imageSections(FILES),
  small: imageSections(INLINE_BOUNDS.entries - INLINE_BOUNDS.changed - 2, true),
  content: (() => { const s = imageSections(FILES); s.files['/etc/app.conf'] = { type: 'file', mode: '0644', uid: 0, gid: 0, size: 1, sha256: hex('a'), content: lines('a', half) }; return s; })(),
};

const dir = mkdtempSync(join(tmpdir(), 'drift-bench-inline-'));
const store = Store.open(join(dir, 'drift.db'));
const rules = await loadRuleSet([]);
const app = buildApp({ store, enrollSecret: ENROLL, adminToken: ADMIN, baselineKeys: [], rules, compare, maxBody: 64 * 1024 * 1024, silentAfterMs: 15 * 60_000, reportWorkers: { size: 1 } });
// Report workers are unref()'d (they never hold a collector open): hold this process while they decide.
const alive = setInterval(() => {}, 60_000);
try {
  for (const [image, sections] of Object.entries(images)) {
    const b = manifest(sections, 'bake', image);
    const put = await app.inject({ method: 'PUT', url: `/v1/baselines/${image}`, headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, payload: canonicalJson(b) });
    if (put.statusCode !== 200) throw new Error(`baseline ${image}: ${put.statusCode} ${put.body}`);
  }
  const out: Record<string, unknown>[] = [];
  let host = 0;
  const only = process.argv.indexOf('--only');
  for (const shape of shapes) {
    if (only > 0 && !shape.name.includes(process.argv[only + 1] ?? '')) continue;
    const blocks: number[] = [];
    const cpu: number[] = [];
    const turns: Array<{ wall: number; cpu: number }> = [];
    const where = { ...app.metrics.reportsDecided };
    let bytes = 0;
    for (let r = 0; r < RUNS; r++) {
      const id = `h${++host}`;
      const e = await app.inject({ method: 'POST', url: '/v1/enroll', headers: { authorization: `Bearer ${ENROLL}`, 'content-type': 'application/json' }, payload: JSON.stringify({ hostId: id, hostname: id, imageId: shape.image }) });
      const key = (JSON.parse(e.body) as { nodeKey: string }).nodeKey;
      const s = structuredClone(images[shape.image] as Sections);
      shape.report(s);
      const m = manifest(s, id, shape.image);
      const text = canonicalJson({ schema: 'drift.report-request/v1', seq: 1, collectedAt: m.collectedAt, host: m.host, digests: m.digests, manifest: m });
      bytes = Buffer.byteLength(text);
      const body = gzipSync(text);
      const h = monitorEventLoopDelay({ resolution: 1 });
      h.enable();
      const u0 = performance.eventLoopUtilization();
      // The longest turn of the event loop, wall and CPU (process-wide: the worker is idle while the main thread decides).
      let turn = { wall: 0, cpu: 0 };
      let probing = true;
      let last = { t: performance.now(), c: process.cpuUsage() };
      const probe = (): void => {
        const now = { t: performance.now(), c: process.cpuUsage() };
        const wall = now.t - last.t;
        if (wall > turn.wall) turn = { wall, cpu: (now.c.user + now.c.system - last.c.user - last.c.system) / 1000 };
        last = now;
        if (probing) setImmediate(probe);
      };
      setImmediate(probe);
      const a = await app.inject({ method: 'POST', url: '/v1/reports', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'content-encoding': 'gzip' }, payload: body });
      probing = false;
      const u = performance.eventLoopUtilization(u0);
      h.disable();
      if (a.statusCode !== 200) throw new Error(`${shape.name}: ${a.statusCode} ${a.body}`);
      blocks.push(h.max / 1e6);
      cpu.push(u.active);
      turns.push(turn);
    }
    const r1 = (x: number): number => Math.round(x * 10) / 10;
    out.push({
      shape: shape.name, bodyBytes: bytes,
      main: app.metrics.reportsDecided.main - where.main, worker: app.metrics.reportsDecided.worker - where.worker,
      maxBlockMs: r1(Math.max(...blocks)), blockMs: blocks.map(r1), longestTurnMs: turns.map((x) => `${r1(x.wall)} (cpu ${r1(x.cpu)})`), mainActiveMs: cpu.map(r1),
    });
  }
  console.log(JSON.stringify({ runs: RUNS, files: FILES, bounds: INLINE_BOUNDS, shapes: out }, null, 2));
} finally {
  clearInterval(alive);
  await app.close();
  store.close();
  rmSync(dir, { recursive: true, force: true });
}
