/**
 * Benchmark of the compare engine: two synthetic manifests of N files each (default
 * 100,000) with realistic paths and about 1% differences (content, mode, owner,
 * added, removed), plus packages, processes and ports, compared under a realistic
 * rule set. Prints the median, min and max of RUNS timed compare() calls after
 * WARMUP untimed ones, and fails (exit 1) when the median exceeds the budget.
 *
 *   node dist/bench/compare.js [--files N] [--runs R] [--warmup W] [--budget-ms B]
 */
import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { MANIFEST_SCHEMA, type FileEntry, type Manifest, type PackageEntry } from '../agent/protocol/manifest.js';
import type { RuleSet } from '../agent/protocol/rules.js';
import { compare } from '../agent/engine/compare.js';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : fallback;
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} needs a positive number`);
  return v;
}

const FILES = arg('files', 100_000);
const RUNS = arg('runs', 15);
const WARMUP = arg('warmup', 5);
const BUDGET = arg('budget-ms', 200);

const hex = (s: string): string => createHash('sha256').update(s).digest('hex');

// A deterministic PRNG, so that every run benchmarks the same manifests.
let seed = 42;
const rand = (): number => ((seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648) / 2_147_483_648);

const DIRS = ['/usr/bin', '/usr/sbin', '/usr/lib/x86_64-linux-gnu', '/usr/share/doc', '/usr/share/locale/de/LC_MESSAGES', '/usr/lib/python3/dist-packages/yaml', '/etc', '/etc/ssh', '/etc/systemd/system', '/usr/share/man/man1', '/opt/app/node_modules/lodash', '/boot/grub/i386-pc'];
const EXT = ['', '.so.6', '.gz', '.py', '.conf', '.mo', '.js', '.service', '.mod'];

function build(): { baseline: Manifest; manifest: Manifest } {
  const bFiles: Record<string, FileEntry> = {};
  const mFiles: Record<string, FileEntry> = {};
  const bPkgs: Record<string, PackageEntry> = {};
  const mPkgs: Record<string, PackageEntry> = {};
  for (let p = 0; p < 1500; p++) {
    const key = `dpkg:pkg${p}:amd64`;
    bPkgs[key] = { version: `1.${p % 17}.${p % 5}-1~deb12u1` };
    mPkgs[key] = p % 100 === 0 ? { version: `1.${p % 17}.${(p % 5) + 1}-1~deb12u1` } : { version: `1.${p % 17}.${p % 5}-1~deb12u1` };
  }
  for (let i = 0; i < FILES; i++) {
    const dir = DIRS[i % DIRS.length] as string;
    const path = `${dir}/${(i * 2_654_435_761 % 4_294_967_296).toString(36)}-${i}${EXT[i % EXT.length] ?? ''}`;
    const content = `file ${i}`;
    const entry: FileEntry = { type: 'file', mode: dir.includes('bin') ? '0755' : '0644', uid: 0, gid: 0, size: 1000 + (i % 9000), sha256: hex(content), owner: `dpkg:pkg${i % 1500}` };
    if (dir.startsWith('/etc')) entry.content = `# ${path}\nkey = ${i}\n`;
    bFiles[path] = entry;
    const r = rand();
    if (r < 0.002) continue; // removed
    if (r < 0.004) mFiles[path] = { ...entry, mode: '4755' };
    else if (r < 0.006) mFiles[path] = { ...entry, uid: 1000 };
    else if (r < 0.010) {
      const changed = { ...entry, sha256: hex(`${content} changed`), size: (entry.size ?? 0) + 1 };
      if (entry.content !== undefined) changed.content = `${entry.content}extra = true\n`;
      mFiles[path] = changed;
    } else mFiles[path] = { ...entry };
  }
  for (let i = 0; i < FILES / 500; i++) mFiles[`/usr/local/bin/added-${i}`] = { type: 'file', mode: '0755', uid: 0, gid: 0, size: 10, sha256: hex(`added ${i}`) };
  const base = { schema: MANIFEST_SCHEMA, collectedAt: '2026-01-01T00:00:00Z', agent: { version: 'bench' }, digests: { root: `sha256:${'0'.repeat(64)}` }, unread: [] } as const;
  return {
    baseline: { ...base, host: { hostname: 'bake', machineId: 'b' }, packages: bPkgs, files: bFiles, processes: { '/usr/sbin/sshd|root': { count: 1, deleted: false } }, ports: { 'tcp:0.0.0.0:22': { process: '/usr/sbin/sshd' } }, unread: [] },
    manifest: { ...base, host: { hostname: 'web-1', machineId: 'm' }, packages: mPkgs, files: mFiles, processes: { '/usr/sbin/sshd|root': { count: 3, deleted: false } }, ports: { 'tcp:0.0.0.0:22': { process: '/usr/sbin/sshd' } }, unread: [] },
  };
}

const rules: RuleSet = {
  vars: { cloudInitUser: 'admin' },
  watch: [],
  ignore: [{ path: '/etc/machine-id', why: 'x' }, { path: '/var/lib/cloud/**', why: 'x' }, { process: 'sshd: *', why: 'x' }, { package: 'linux-image-*', why: 'x' }],
  expect: [{ path: '/etc/passwd', lines: ['^${cloudInitUser}:'], why: 'x' }, { path: '/etc/hostname', why: 'x' }, { path: '/etc/ssh/ssh_host_*', change: 'added', why: 'x' }],
  policy: [
    { match: { kind: 'package' }, severity: 'high', action: 'replace' },
    { match: { kind: 'file', path: '/etc/**' }, severity: 'high', action: 'report' },
    { match: { kind: 'file', path: '/etc/ssh/**' }, severity: 'critical', action: 'replace' },
    { match: { kind: 'file', path: '/usr/{bin,sbin,lib}/**' }, severity: 'critical', action: 'replace' },
  ],
};

// Round-trip through JSON: real manifests come from JSON.parse (dictionary-mode objects).
const built = build();
const baseline = JSON.parse(JSON.stringify(built.baseline)) as Manifest;
const manifest = JSON.parse(JSON.stringify(built.manifest)) as Manifest;
let findings = 0;
for (let i = 0; i < WARMUP; i++) findings = compare({ baseline, manifest, rules }).length;
// Wall time, and CPU time of this process (user + system): on a shared, loaded machine
// the CPU time is what compare() itself costs; the wall time also counts waiting for a core.
const wall: number[] = [];
const cpu: number[] = [];
for (let i = 0; i < RUNS; i++) {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  findings = compare({ baseline, manifest, rules }).length;
  wall.push(performance.now() - t0);
  const c = process.cpuUsage(c0);
  cpu.push((c.user + c.system) / 1000);
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const fmt = (ms: number): string => ms.toFixed(1);
const wallMedian = median(wall);
const cpuMedian = median(cpu);
process.stdout.write(
  `compare: ${Object.keys(baseline.files ?? {}).length} vs ${Object.keys(manifest.files ?? {}).length} files, ${findings} findings; ` +
  `${RUNS} runs after ${WARMUP} warm-up: wall median ${fmt(wallMedian)} ms (min ${fmt(Math.min(...wall))}, max ${fmt(Math.max(...wall))}), ` +
  `CPU median ${fmt(cpuMedian)} ms (min ${fmt(Math.min(...cpu))}); budget ${BUDGET} ms\n`,
);
process.exitCode = wallMedian <= BUDGET ? 0 : 1;
