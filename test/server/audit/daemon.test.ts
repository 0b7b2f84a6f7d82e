import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { parseAuditConfig } from '../../../server/audit/config.js';
import { driftBin, repoRoot } from '../../helpers/paths.js';
import { drift } from '../../helpers/run.js';
import { ADMIN, auditWorld, MIN, seedFleet } from './helpers.js';

/**
 * `drift audit --config FILE` as a daemon: the real process, through bin/drift.js,
 * against a real collector on 127.0.0.1, with schedules that fire every second.
 * Every wait is for a log line, bounded.
 */

const GUARDS = { minReports: 2, minPersistMs: 5 * MIN, minHealthy: 0.8 };

interface Log { msg: string; [k: string]: unknown }

/** The daemon's JSON log lines (stdout) as they come, and a bounded wait for the n-th matching one. */
function watch(child: ChildProcess): { lines: Log[]; stderr: () => string; waitFor: (msg: string, n?: number, ms?: number) => Promise<Log[]> } {
  const lines: Log[] = [];
  let buf = '';
  let err = '';
  const waiters = new Set<() => void>();
  child.stdout?.on('data', (b: Buffer) => {
    buf += b.toString('utf8');
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      try { lines.push(JSON.parse(line) as Log); } catch { lines.push({ msg: `(not JSON) ${line}` }); }
    }
    for (const w of waiters) w();
  });
  child.stderr?.on('data', (b: Buffer) => { err += b.toString('utf8'); });
  const waitFor = (msg: string, n = 1, ms = 15_000): Promise<Log[]> => new Promise((resolve, reject) => {
    const check = (): void => {
      const hits = lines.filter((l) => l.msg === msg);
      if (hits.length >= n) { done(); resolve(hits); }
    };
    const onExit = (code: number | null): void => { done(); reject(new Error(`drift audit exited ${code ?? '?'} before ${n} × "${msg}"; stderr: ${err}; log: ${JSON.stringify(lines)}`)); };
    const timer = setTimeout(() => { done(); reject(new Error(`no ${n} × "${msg}" within ${ms} ms; stderr: ${err}; log: ${JSON.stringify(lines.map((l) => l.msg))}`)); }, ms);
    const done = (): void => { clearTimeout(timer); waiters.delete(check); child.off('exit', onExit); };
    waiters.add(check);
    child.once('exit', onExit);
    check();
  });
  return { lines, stderr: () => err, waitFor };
}

function exited(child: ChildProcess, ms = 15_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve, reject) => {
    if (child.exitCode !== null || child.signalCode !== null) { resolve({ code: child.exitCode, signal: child.signalCode }); return; }
    const timer = setTimeout(() => reject(new Error(`drift audit still running ${ms} ms after SIGTERM`)), ms);
    child.once('exit', (code, signal) => { clearTimeout(timer); resolve({ code, signal }); });
  });
}

t.test('daemon: cron passes fire every second against the collector, SIGTERM stops it with exit 0', async (t) => {
  const w = await auditWorld(t);
  seedFleet(w, 10, { 2: ['/etc/ssh/sshd_config'] });
  const tokenFile = join(w.dir, 'admin.token');
  writeFileSync(tokenFile, `${ADMIN}\n`, { mode: 0o600 });
  const reports = join(w.dir, 'reports');
  const config = join(w.dir, 'audit.yaml');
  const every = '* * * * * *';
  writeFileSync(config, stringify({
    collector: w.url, adminTokenFile: tokenFile, guards: GUARDS,
    schedules: { enforce: every, verify: every, silent: every, report: every },
    provider: { kind: 'command', argv: ['/bin/true'] }, report: { dir: reports },
  }));
  const child = spawn(process.execPath, [driftBin, 'audit', '--config', config], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); });
  const log = watch(child);

  const [started] = await log.waitFor('started');
  t.match(started, { mode: 'dry-run', provider: 'command', collector: w.url, schedules: { enforce: every, verify: every, silent: every, report: every } });
  // dry-run has no pass at start: these lines come from the cron ticks, at least two of each.
  const plans = await log.waitFor('dry-run: would replace', 2);
  t.same(plans.slice(0, 2).map((l) => l['host']), ['h2', 'h2'], 'the enforce pass planned the drifted host on two ticks');
  const written = await log.waitFor('fleet report written', 2);
  const files = written.flatMap((l) => l['files'] as string[]);
  t.equal(new Set(files).size, files.length, 'each report tick wrote its own files');
  t.ok(files.every((f) => f.startsWith(reports)), 'into report.dir');
  t.match(readFileSync(files[0] as string, 'utf8'), /## Actions \(dry-run\)/);
  // Real time is months after the fleet's last report: the silent pass names every host.
  const silent = await log.waitFor('host silent', 10);
  t.same(new Set(silent.map((l) => l['host'])).size, 10);

  t.ok(child.kill('SIGTERM'));
  const end = await exited(child);
  t.same(end, { code: 0, signal: null }, 'SIGTERM: exit 0');
  // A pass a tick started just before SIGTERM may still log after this line, then the process ends.
  t.match(log.lines.filter((l) => /^stopped/.test(l.msg)), [{ msg: 'stopped; actions under way resume at the next start', service: 'drift-audit' }], 'it logs its stop, once');
  t.notOk(log.lines.some((l) => l.msg === 'pass failed'), `no pass failed: ${JSON.stringify(log.lines.filter((l) => l.msg === 'pass failed'))}`);
  t.equal(log.stderr(), '', 'nothing on stderr');
  t.same(w.ledger.list(), [], 'dry-run wrote nothing to the ledger');
  t.same(readdirSync(reports).filter((f) => f.endsWith('.tmp')), [], 'no half-written report');
});

t.test('daemon in enforce mode: acts at start, before the first tick', async (t) => {
  const w = await auditWorld(t);
  seedFleet(w, 10, { 4: ['/usr/bin/sudo'] });
  const tokenFile = join(w.dir, 'admin.token');
  writeFileSync(tokenFile, `${ADMIN}\n`, { mode: 0o600 });
  const calls = join(w.dir, 'calls');
  const config = join(w.dir, 'audit.yaml');
  writeFileSync(config, stringify({
    collector: w.url, adminTokenFile: tokenFile, mode: 'enforce', guards: GUARDS,
    // Once a year (at 00:00:00 on 1 January): no tick in this test, so only the start pass acts.
    schedules: { enforce: '0 0 0 1 1 *' },
    provider: { kind: 'command', argv: ['/bin/sh', '-c', `echo "$DRIFT_HOST_ID" >> ${calls}`] }, report: { dir: join(w.dir, 'reports') },
  }));
  const child = spawn(process.execPath, [driftBin, 'audit', '--config', config], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); });
  const log = watch(child);
  const [replaced] = await log.waitFor('replaced');
  t.match(replaced, { host: 'h4' });
  t.equal(readFileSync(calls, 'utf8'), 'h4\n', 'the provider ran once');
  t.match(w.ledger.list(), [{ hostId: 'h4', state: 'succeeded', provider: 'command' }]);
  t.ok(child.kill('SIGTERM'));
  t.same(await exited(child), { code: 0, signal: null });
  t.equal(log.lines.filter((l) => /^stopped/.test(l.msg)).length, 1, 'it logs its stop');
});

t.test('a bad schedule is refused before anything runs: exit 2 with the file, the key and the way to write it', async (t) => {
  const w = await auditWorld(t);
  const tokenFile = join(w.dir, 'admin.token');
  writeFileSync(tokenFile, `${ADMIN}\n`, { mode: 0o600 });
  const base = { collector: w.url, adminTokenFile: tokenFile, provider: { kind: 'command', argv: ['/bin/true'] } };
  const config = join(w.dir, 'bad.yaml');
  writeFileSync(config, stringify({ ...base, schedules: { report: '* * * * * * *' } }));
  const r = await drift(['audit', '--config', config]);
  t.equal(r.code, 2);
  t.equal(r.stdout, '', 'no pass ran, nothing logged');
  t.match(r.stderr, `drift: ${config}: schedules.report: schedule "* * * * * * *" must be a 5-field cron expression (minute hour day month weekday), or 6 fields with seconds first, e.g. "*/5 * * * *" or "*/30 * * * * *"; see README "Enforcement" for an example`);

  writeFileSync(config, stringify({ ...base, schedules: { verify: '61 * * * * *' } }));
  const r2 = await drift(['audit', '--config', config]);
  t.equal(r2.code, 2);
  t.match(r2.stderr, /bad.yaml: schedules.verify: schedule "61 \* \* \* \* \*" is not a cron expression: .*61.*out of range/);

  const parse = (s: string): unknown => parseAuditConfig({ ...base, schedules: { silent: s } }, 'a.yaml');
  t.throws(() => parse('* 25 * * *'), { code: 'DRIFT_ERR_CONFIG', message: /a.yaml: schedules.silent: schedule "\* 25 \* \* \*" is not a cron expression/ });
  t.throws(() => parse('every minute'), { message: /must be a 5-field cron expression/ });
  t.throws(() => parse('x'.repeat(101)), { message: /schedules.silent: Too big/i });
  t.match(parse('*/30 * * * * *'), { schedules: { silent: '*/30 * * * * *' } }, 'seconds first: accepted');
  t.match(parse('*/5 * * * *'), { schedules: { silent: '*/5 * * * *' } }, '5 fields: accepted');
});
