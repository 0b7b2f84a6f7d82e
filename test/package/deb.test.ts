import t from 'tap';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { debianChroot, packaged, type Artefacts, type Chroot } from '../helpers/package.js';
import { run } from '../helpers/run.js';

// `npm run package` (cached by the hash of its inputs), then the .deb installed into a
// copy of the debootstrap root, used there with no Node.js, and removed again.
let art: Artefacts;
let ch: Chroot;

t.before(async () => {
  art = await packaged();
  ch = await debianChroot();
});
t.teardown(async () => { await ch?.dispose(); });

t.test('the executable carries the host commands and needs nothing beside its rules', async (t) => {
  const v = await run(art.exe, ['--version']);
  t.equal(v.code, 0, v.stderr);
  t.equal(v.stdout.trim(), art.version);
  t.equal(v.stderr, '', 'no SEA warning');
  const help = await run(art.exe, ['--help']);
  t.match(help.stdout, /agent/);
  t.match(help.stdout, /scan/);
  t.notMatch(help.stdout, /\bserver\b/, 'the collector is not in the executable');
  const server = await run(art.exe, ['server']);
  t.equal(server.code, 2);
  t.match(server.stderr, /unknown command 'server'/);
  const rules = await run(art.exe, ['rules', 'check']);
  t.equal(rules.code, 0, rules.stderr);
  t.match(rules.stdout, /6 files, \d+ rules: OK/);
});

t.test('the .deb is lintian-clean', { skip: existsSync('/usr/bin/lintian') ? false : 'lintian is not installed (test/setup.sh installs it)' }, async (t) => {
  const r = await run('lintian', ['--allow-root', '--tag-display-limit', '0', art.deb]);
  t.equal(r.code, 0, r.stdout + r.stderr);
  t.equal(r.stdout.trim(), '', 'no tags');
});

t.test('the .deb installs into a Debian root without Node.js and enables the agent without starting it', async (t) => {
  t.notOk(existsSync(join(ch.root, 'usr/bin/node')), 'no node in the root');
  t.not((await ch.run('sh', ['-c', 'command -v node nodejs'])).code, 0, 'no node on PATH in the root');
  copyFileSync(art.deb, join(ch.root, 'tmp/drift-agent.deb'));
  const r = await ch.run('dpkg', ['-i', '/tmp/drift-agent.deb']);
  t.equal(r.code, 0, r.stdout + r.stderr);
  t.match(r.stderr, /image build detected: drift-agent.service enabled, not started/);
  t.equal(statSync(join(ch.root, 'usr/bin/drift')).mode & 0o777, 0o755);
  t.ok(existsSync(join(ch.root, 'usr/lib/drift/rules/90-policy.yaml')));
  t.equal(readlinkSync(join(ch.root, 'etc/systemd/system/multi-user.target.wants/drift-agent.service')), '/lib/systemd/system/drift-agent.service');
  const status = await ch.run('dpkg', ['-s', 'drift-agent']);
  t.match(status.stdout, /Status: install ok installed/);
  t.match(status.stdout, /Conffiles:\n \/etc\/drift\/agent.yaml [0-9a-f]{32}/);
  const ps = await run('pgrep', ['-f', `${ch.root}/usr/bin/drift`]);
  t.not(ps.code, 0, 'no agent process started');
  const rules = await ch.run('drift', ['rules', 'check']);
  t.equal(rules.code, 0, rules.stderr);
  t.match(rules.stdout, /6 files/, 'finds /usr/lib/drift/rules');
});

t.test('inside the root, /usr/bin/drift baselines with --stamp and scans', async (t) => {
  // An empty /proc: the chroot's /proc is the build machine's, whose processes come and go.
  const base = ['--proc', '/tmp/no-proc', '--state-dir', '/tmp/drift-state'];
  await ch.run('mkdir', ['-p', '/tmp/no-proc']);
  const b = await ch.run('drift', ['baseline', '--image-id', 'debian-12-test', '--image-version', '1', '--out', '/etc/drift/baseline.json', '--stamp', ...base]);
  t.equal(b.code, 0, b.stderr);
  const stamp = JSON.parse(readFileSync(join(ch.root, 'etc/drift/image.json'), 'utf8')) as { id: string; baselineDigest: string };
  t.equal(stamp.id, 'debian-12-test');
  t.match(stamp.baselineDigest, /^sha256:[0-9a-f]{64}$/);
  const clean = await ch.run('drift', ['scan', '--baseline', '/etc/drift/baseline.json', ...base]);
  t.equal(clean.code, 0, clean.stdout + clean.stderr);
  writeFileSync(join(ch.root, 'etc/passwd'), `${readFileSync(join(ch.root, 'etc/passwd'), 'utf8')}intruder:x:0:0::/root:/bin/sh\n`);
  const drifted = await ch.run('drift', ['scan', '--baseline', '/etc/drift/baseline.json', '--format', 'json', ...base]);
  t.equal(drifted.code, 1, drifted.stderr);
  t.match(drifted.stdout, /"key": "\/etc\/passwd"/);
});

t.test('systemd-analyze verify accepts the installed unit', { skip: existsSync('/usr/bin/systemd-analyze') ? false : 'systemd-analyze is not installed' }, async (t) => {
  // The root has no systemd to verify against: verify the installed unit on this machine,
  // with ExecStart pointing at the installed executable inside the root.
  const installed = readFileSync(join(ch.root, 'lib/systemd/system/drift-agent.service'), 'utf8');
  t.match(installed, /^ExecStart=\/usr\/bin\/drift agent /m);
  const dir = mkdtempSync(join(tmpdir(), 'drift-unit-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const unit = join(dir, 'drift-agent.service');
  writeFileSync(unit, installed.replace(/^ExecStart=\/usr\/bin\/drift /m, `ExecStart=${ch.root}/usr/bin/drift `));
  const r = await run('systemd-analyze', ['verify', unit]);
  t.equal(r.code, 0, r.stdout + r.stderr);
  t.equal(r.stderr.trim(), '', 'no warnings');
  // The check can fail: without the executable the same unit is refused.
  await ch.run('mv', ['/usr/bin/drift', '/usr/bin/drift.away']);
  const broken = await run('systemd-analyze', ['verify', unit]);
  await ch.run('mv', ['/usr/bin/drift.away', '/usr/bin/drift']);
  t.not(broken.code, 0, 'a unit whose /usr/bin/drift is missing fails verify');
});

t.test('removal keeps the edited conffile, purge removes it and the agent state', async (t) => {
  await ch.run('mkdir', ['-p', '/var/lib/drift']);
  writeFileSync(join(ch.root, 'etc/drift/agent.yaml'), 'collector: https://drift.internal:8750\n');
  const rm = await ch.run('dpkg', ['-r', 'drift-agent']);
  t.equal(rm.code, 0, rm.stderr);
  t.notOk(existsSync(join(ch.root, 'usr/bin/drift')));
  t.ok(existsSync(join(ch.root, 'etc/drift/agent.yaml')), 'conffile kept on remove');
  const purge = await ch.run('dpkg', ['-P', 'drift-agent']);
  t.equal(purge.code, 0, purge.stderr);
  t.notOk(existsSync(join(ch.root, 'etc/drift/agent.yaml')), 'conffile purged');
  t.notOk(existsSync(join(ch.root, 'var/lib/drift')), 'state purged');
  t.notOk(existsSync(join(ch.root, 'etc/systemd/system/multi-user.target.wants/drift-agent.service')), 'no longer enabled');
});
