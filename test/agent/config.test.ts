import t from 'tap';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultStateDir, parseDuration, parseSections, parseSize, resolveAgentConfig } from '../../agent/config.js';

t.test('durations', async (t) => {
  t.equal(parseDuration('5m'), 300_000);
  t.equal(parseDuration('1h30m'), 5_400_000);
  t.equal(parseDuration('250ms'), 250);
  t.equal(parseDuration('30'), 30_000, 'a bare number is seconds');
  t.equal(parseDuration('5 minutes'), null);
  t.equal(parseDuration(''), null);
  t.equal(parseDuration('5mx'), null);
});

t.test('sizes', async (t) => {
  t.equal(parseSize('268435456'), 268_435_456);
  t.equal(parseSize('256MiB'), 256 * 1024 * 1024);
  t.equal(parseSize('512k'), 512 * 1024);
  t.equal(parseSize('1GiB'), 1024 ** 3);
  t.equal(parseSize('lots'), null);
  t.equal(parseSize('1.5MiB'), null);
});

t.test('defaults: the live host reads /proc, an offline root does not', async (t) => {
  const live = await resolveAgentConfig({ collector: 'http://c:1', 'enroll-secret-file': '/s' }, { DRIFT_STATE_DIR: '/tmp/st' });
  t.match(live, { root: '/', proc: '/proc', stateDir: '/tmp/st', intervalMs: 300_000, splayMs: 30_000, spoolMax: 1000, spoolMaxBytes: 256 * 1024 * 1024, once: false, hostId: null, role: null });
  const offline = await resolveAgentConfig({ collector: 'http://c:1', 'enroll-secret-file': '/s', root: '/mnt/img' });
  t.equal(offline.proc, null);
  const withProc = await resolveAgentConfig({ collector: 'http://c:1', 'enroll-secret-file': '/s', root: '/mnt/img', proc: '/mnt/proc' });
  t.equal(withProc.proc, '/mnt/proc');
  t.ok(Object.isFrozen(live), 'the config is frozen');
  t.equal(defaultStateDir({ STATE_DIRECTORY: '/var/lib/drift:/other' }), '/var/lib/drift', 'systemd StateDirectory= is honoured');
});

t.test('a YAML file with the flag names; flags win; paths relative to the file', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'drift-agent-config-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'agent.yaml');
  await writeFile(file, 'collector: http://from-file:8750\nenroll-secret-file: enroll-secret\ninterval: 10m\nsplay: 1m\nrole: web\nrules: [rules.d]\nspool-max: 50\nspool-max-bytes: 64MiB\n');
  const cfg = await resolveAgentConfig({ config: file, interval: '2m', rules: ['/site'] });
  t.equal(cfg.collector, 'http://from-file:8750');
  t.equal(cfg.enrollSecretFile, join(dir, 'enroll-secret'));
  t.equal(cfg.intervalMs, 120_000, 'the flag wins over the file');
  t.equal(cfg.splayMs, 60_000);
  t.equal(cfg.role, 'web');
  t.equal(cfg.spoolMax, 50);
  t.equal(cfg.spoolMaxBytes, 64 * 1024 * 1024, 'spool-max-bytes from the file');
  const flagged = await resolveAgentConfig({ config: file, 'spool-max-bytes': '1000000' });
  t.equal(flagged.spoolMaxBytes, 1_000_000, 'the flag wins');
  t.same(cfg.rules, [join(dir, 'rules.d'), '/site'], 'file rule folders, then flag ones');
});

t.test('mistakes are refused with the file and key', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'drift-agent-config-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const typo = join(dir, 'typo.yaml');
  await writeFile(typo, 'collector: http://c:1\nintervall: 5m\n');
  await t.rejects(resolveAgentConfig({ config: typo }), { code: 'DRIFT_ERR_CONFIG', message: new RegExp(`${typo}: unknown setting "intervall"`) });
  const bad = join(dir, 'bad.yaml');
  await writeFile(bad, 'collector: [\n');
  await t.rejects(resolveAgentConfig({ config: bad }), { code: 'DRIFT_ERR_CONFIG', message: new RegExp(`${bad}:\\d+:\\d+: `) });
  await t.rejects(resolveAgentConfig({ collector: 'http://c:1', 'enroll-secret-file': '/s', interval: 'soon' }), { code: 'DRIFT_ERR_USAGE', message: /interval: "soon" is not a duration/ });
  await t.rejects(resolveAgentConfig({ collector: 'http://c:1', 'enroll-secret-file': '/s', interval: '5 minutes' }), { message: /^[^:]*: interval: "5 minutes" is not a duration \(use 30s, 5m, 1h\)$/ }, 'the key is named once');
  await t.rejects(resolveAgentConfig({ 'enroll-secret-file': '/s' }), { code: 'DRIFT_ERR_USAGE', message: /needs --collector/ });
  await t.rejects(resolveAgentConfig({ collector: 'http://c:1', 'enroll-secret-file': '/s', interval: '1m', splay: '2m' }), { message: /splay .* must not exceed the interval/ });
  await t.rejects(resolveAgentConfig({ collector: 'http://c:1', 'enroll-secret-file': '/s', 'spool-max': '0' }), { message: /spool-max must be at least 1/ });
  await t.rejects(resolveAgentConfig({ collector: 'http://c:1', 'enroll-secret-file': '/s', 'spool-max-bytes': 'lots' }), { code: 'DRIFT_ERR_USAGE', message: /spool-max-bytes: "lots" is not a size/ });
  await t.rejects(resolveAgentConfig({ collector: 'http://c:1', 'enroll-secret-file': '/s', 'spool-max-bytes': '0' }), { message: /spool-max-bytes: "0" is not a size of at least 1 byte/ });
});

t.test('sections: a comma-separated subset in manifest order, from a flag or a list in the file', async (t) => {
  const base = { collector: 'http://127.0.0.1:9', 'enroll-secret-file': '/dev/null' };
  t.same((await resolveAgentConfig({ ...base, sections: 'ports, files' })).sections, ['files', 'ports']);
  t.equal((await resolveAgentConfig(base)).sections, null, 'all sections by default');
  const dir = await mkdtemp(join(tmpdir(), 'drift-config-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'agent.yaml'), 'sections: [processes, packages]\n');
  t.same((await resolveAgentConfig({ ...base, config: join(dir, 'agent.yaml') })).sections, ['packages', 'processes']);
  await t.rejects(resolveAgentConfig({ ...base, sections: 'files,users' }), { code: 'DRIFT_ERR_USAGE', message: /unknown: "users"/ });
  await t.rejects(resolveAgentConfig({ ...base, sections: ',' }), { code: 'DRIFT_ERR_USAGE' });
  t.same(parseSections('files,files'), ['files'], 'duplicates collapse');
});
