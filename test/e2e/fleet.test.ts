import t from 'tap';
import { execFile } from 'node:child_process';
import { appendFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BaselineSchema } from '../../agent/protocol/manifest.js';
import { fetchFleet, fetchHost, fetchHosts, pushBaseline } from '../../agent/transport/client.js';
import { promisify } from 'node:util';
import { drift } from '../helpers/run.js';
import { exited, makeRoot, startServer } from './helpers.js';

/**
 * The "Done when": a real collector (`drift server`, a child process, a real
 * SQLite file), a signed baseline pushed to it, five hosts of that image reporting with
 * `drift agent --once`, one of them drifted; /v1/hosts and /v1/fleet must name exactly
 * that host as the snowflake, and say why.
 */

const HOSTS = ['web-1', 'web-2', 'web-3', 'web-4', 'web-5'];
const machineIdOf = (name: string): string => `${name.replace(/\D/g, '').padStart(2, '0')}`.padEnd(32, 'a');
const DRIFTED = 'web-3';

t.test('five hosts of one image; the one that drifted is the snowflake', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'drift-fleet-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const enroll = join(dir, 'enroll.secret');
  const admin = join(dir, 'admin.token');
  await writeFile(enroll, 'enroll-secret-for-the-fleet-test\n', { mode: 0o600 });
  await writeFile(admin, 'admin-token-for-the-fleet-test\n', { mode: 0o600 });
  const adminToken = 'admin-token-for-the-fleet-test';

  // Bake: key pair, image root, signed baseline, stamp.
  const keygen = await drift(['keygen', '--out', join(dir, 'bake')]);
  t.equal(keygen.code, 0, `drift keygen: ${keygen.stderr}`);
  const image = await makeRoot(join(dir, 'image'), { machineId: 'f'.repeat(32), hostname: 'bake' });
  // The collector, trusting the bake key only.
  const server = await startServer(['--listen', '127.0.0.1:0', '--db', join(dir, 'collector', 'drift.db'), '--state-dir', join(dir, 'collector'),
    '--enroll-secret-file', enroll, '--admin-token-file', admin, '--baseline-pubkey', join(dir, 'bake.pub')]);
  t.teardown(() => { if (server.child.exitCode === null) server.child.kill('SIGKILL'); });

  // The bake signs, writes and pushes the baseline, then stamps the image (which has no
  // /etc/drift before: the stamp's folder must not count as drift).
  const bake = await drift(['baseline', '--root', image, '--image-id', 'img-1', '--sign-key', join(dir, 'bake.key'),
    '--out', join(dir, 'baseline.json'), '--stamp', '--state-dir', join(dir, 'bake-state'),
    '--push', server.url, '--admin-token-file', admin]);
  t.equal(bake.code, 0, `drift baseline --push: ${bake.stderr}`);
  t.match(bake.stderr, /pushed baseline of image img-1 to http/);
  const baseline = BaselineSchema.parse(JSON.parse(await readFile(join(dir, 'baseline.json'), 'utf8')));
  const unsigned = await pushBaseline(server.url, adminToken, { ...baseline, signature: undefined }).then(() => 'accepted', (e: Error) => e.message);
  t.match(unsigned, /not signed/, 'an unsigned baseline is refused when keys are configured');

  // Hosts: copies of the image, each with its own identity; one drifts.
  for (const name of HOSTS) {
    const root = join(dir, 'hosts', name);
    await mkdir(root, { recursive: true });
    await promisify(execFile)('cp', ['-a', `${image}/.`, root]);
    await writeFile(join(root, 'etc/machine-id'), `${machineIdOf(name)}\n`);
    await writeFile(join(root, 'etc/hostname'), `${name}\n`);
    if (name === DRIFTED) {
      await mkdir(join(root, 'usr/local/bin'), { recursive: true });
      await writeFile(join(root, 'usr/local/bin/backdoor'), '#!/bin/sh\nnc -l 4444\n', { mode: 0o755 });
      await appendFile(join(root, 'etc/ssh/sshd_config'), 'PermitRootLogin yes\n');
    }
  }
  for (const name of HOSTS) {
    const r = await drift(['agent', '--once', '--collector', server.url, '--enroll-secret-file', enroll,
      '--root', join(dir, 'hosts', name), '--state-dir', join(dir, 'agents', name), '--splay', '0s']);
    t.equal(r.code, 0, `drift agent --once for ${name} delivered: ${r.stderr}`);
  }

  // /v1/hosts: exactly one drifted host, and it is the snowflake.
  const { hosts } = await fetchHosts(server.url, adminToken);
  t.equal(hosts.length, HOSTS.length, 'every host reported');
  const byName = new Map(hosts.map((h) => [h['hostname'], h]));
  for (const name of HOSTS) {
    const h = byName.get(name);
    t.equal(h?.['id'], machineIdOf(name), `${name} is known by its machine-id`);
    t.equal(h?.['imageId'], 'img-1');
    if (name === DRIFTED) {
      t.equal(h?.['status'], 'drifted', `${name} is drifted`);
      t.ok(Number(h?.['findings']) >= 2, `${name} has its findings counted`);
      t.ok((h?.['snowflake'] as { score?: number } | null)?.score, `${name} is a snowflake`);
    } else {
      t.equal(h?.['status'], 'clean', `${name} is clean`);
      t.equal(h?.['findings'], 0);
      t.equal(h?.['snowflake'], null, `${name} is no snowflake`);
    }
  }

  // /v1/hosts/{id}: the findings say what changed.
  const detail = await fetchHost(server.url, adminToken, machineIdOf(DRIFTED));
  const findings = detail['findings'] as Array<{ kind: string; key: string; change: string; explanation: string }>;
  const keys = findings.map((f) => `${f.kind} ${f.key} ${f.change}`);
  t.ok(keys.includes('file /etc/ssh/sshd_config modified'), 'sshd_config edit found');
  t.ok(keys.includes('file /usr/local/bin/backdoor added'), 'the new binary found');

  // /v1/fleet: one cohort of five, one snowflake named with its rare findings, nothing fleet-wide.
  const { cohorts } = await fetchFleet(server.url, adminToken);
  t.equal(cohorts.length, 1, 'one cohort');
  const cohort = cohorts[0] as { imageId: string; hosts: number; drifted: number; fleetWide: unknown[]; snowflakes: Array<{ hostId: string; hostname: string; score: number; findings: Array<{ kind: string; key: string; change: string }>; why: string }> };
  t.equal(cohort.imageId, 'img-1');
  t.equal(cohort.hosts, 5);
  t.equal(cohort.drifted, 1);
  t.same(cohort.fleetWide, [], 'no fleet-wide drift');
  t.equal(cohort.snowflakes.length, 1, 'exactly one snowflake');
  const flake = cohort.snowflakes[0];
  t.equal(flake?.hostId, machineIdOf(DRIFTED));
  t.equal(flake?.hostname, DRIFTED);
  t.ok((flake?.score ?? 0) > 0 && (flake?.score ?? 2) <= 1, `score in (0,1]: ${flake?.score}`);
  const rare = (flake?.findings ?? []).map((f) => `${f.kind} ${f.key} ${f.change}`);
  t.ok(rare.includes('file /usr/local/bin/backdoor added') && rare.includes('file /etc/ssh/sshd_config modified'), `its rare findings are named: ${rare.join(', ')}`);
  t.ok((flake?.why ?? '').length > 0, `and why: ${flake?.why}`);

  // A second round changes nothing: digests only, the same verdict.
  const again = await drift(['agent', '--once', '--collector', server.url, '--enroll-secret-file', enroll,
    '--root', join(dir, 'hosts', 'web-1'), '--state-dir', join(dir, 'agents', 'web-1')]);
  t.equal(again.code, 0, 'a second round is delivered');
  t.match(again.stderr, /"msg":"report accepted".*"sent":"digests"/, 'as digests only');

  // The same view through drift scan --collector, with a local scan's formats and exit codes.
  const fleetScan = await drift(['scan', '--collector', server.url, '--admin-token-file', admin, '--fleet']);
  t.equal(fleetScan.code, 1, 'scan --fleet exits 1: a host drifted');
  t.match(fleetScan.stdout, /drift fleet: 5 hosts, 1 drifted/);
  t.match(fleetScan.stdout, new RegExp(`snowflake: ${DRIFTED} \\(${machineIdOf(DRIFTED)}\\) score`));
  t.match(fleetScan.stdout, /\/usr\/local\/bin\/backdoor added/);
  const hostScan = await drift(['scan', '--collector', server.url, '--admin-token-file', admin, '--host', machineIdOf(DRIFTED), '--format', 'json']);
  t.equal(hostScan.code, 1, 'scan --host of the drifted host exits 1');
  const hostReport = JSON.parse(hostScan.stdout) as { schema: string; baseline: { imageId: string; digest: string }; findings: Array<{ key: string }> };
  t.equal(hostReport.schema, 'drift.report/v1');
  t.equal(hostReport.baseline.imageId, 'img-1');
  t.ok(hostReport.findings.some((f) => f.key === '/etc/ssh/sshd_config'));
  const cleanScan = await drift(['scan', '--collector', server.url, '--admin-token-file', admin, '--host', machineIdOf('web-1')]);
  t.equal(cleanScan.code, 0, `scan --host of a clean host exits 0: ${cleanScan.stdout}`);
  const missing = await drift(['scan', '--collector', server.url, '--admin-token-file', admin, '--host', 'nope']);
  t.equal(missing.code, 2, 'an unknown host is trouble');
  t.match(missing.stderr, /no host with id or hostname "nope"/);

  const done = exited(server.child);
  server.child.kill('SIGTERM');
  t.same(await done, { code: 0, signal: null }, 'the collector stops cleanly on SIGTERM');
});
