/**
 * Bench entry: the processes and ports collectors over this host's /proc (every
 * process, not only services), RUNS times, printing the CPU time (user + system) per run.
 * Usage: node dist/bench/collect-proc.js [RUNS] [--no-hash] [--dist DIR]
 * --no-hash: a one-byte scan budget, so that no image is hashed and the /proc reads alone
 * are measured (otherwise every image is hashed every run: no cache).
 * --dist DIR: load the collectors from another build's dist folder (default: this one),
 * to compare builds run alternately.
 */
import { fileURLToPath } from 'node:url';
import { dirname, resolve } from 'node:path';
import type { CollectContext, Collector } from '../agent/collectors/contract.js';
import { ByteBudget } from '../agent/hash.js';
import { emptyRuleSet } from '../agent/protocol/rules.js';

const args = process.argv.slice(2);
const runs = Number(args.find((a) => /^\d+$/.test(a)) ?? 10);
const distAt = args.indexOf('--dist');
const dist = resolve(distAt >= 0 ? (args[distAt + 1] ?? '.') : dirname(dirname(fileURLToPath(import.meta.url))));
const { processesCollector } = (await import(`${dist}/agent/collectors/processes.js`)) as { processesCollector: Collector<'processes'> };
const { portsCollector } = (await import(`${dist}/agent/collectors/ports.js`)) as { portsCollector: Collector<'ports'> };
const noHash = args.includes('--no-hash');
let processes = 0;
let ports = 0;
const cpu = process.cpuUsage();
for (let i = 0; i < runs; i++) {
  const ctx: CollectContext = { root: '/', proc: '/proc', rules: emptyRuleSet(), stateDir: null, forceRehash: true, processScope: 'all', ...(noHash ? { budget: new ByteBudget(1, 1) } : {}) };
  const [p, s] = await Promise.all([processesCollector.collect(ctx), portsCollector.collect(ctx)]);
  processes = Object.keys(p.entries).length;
  ports = Object.keys(s.entries).length;
}
const used = process.cpuUsage(cpu);
process.stdout.write(`${JSON.stringify({ dist, runs, noHash, processes, ports, cpuMsPerRun: Math.round((used.user + used.system) / runs / 100) / 10 })}\n`);
