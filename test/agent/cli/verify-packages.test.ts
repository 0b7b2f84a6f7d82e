import t from 'tap';
import { spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import { driftBin } from '../../helpers/paths.js';
import { register, runVerifyPackages } from '../../../agent/cli/commands/verify-packages.js';
import { makeDpkgRoot } from '../verify/debroot.js';

const drift = (...args: string[]) => spawnSync(process.execPath, [driftBin, ...args], { encoding: 'utf8', env: { ...process.env, CI: 'true' } });

t.test('the command registers with its options and help', async (t) => {
  const program = new Command('drift').exitOverride();
  register(program);
  const cmd = program.commands.find((c) => c.name() === 'verify-packages');
  t.ok(cmd);
  const help = cmd?.helpInformation() ?? '';
  t.match(help, /--root <dir>/);
  t.match(help, /--format <format>/);
});

t.test('exit codes and output on a built root: 0 clean, 1 differences (text and JSON), trouble thrown', async (t) => {
  const root = makeDpkgRoot();
  t.teardown(() => rmSync(join(root, '..'), { recursive: true, force: true }));
  let out = '';
  t.equal(await runVerifyPackages({ root, format: 'text', concurrency: 4 }, (s) => { out += s; }), 0);
  t.equal(out, '');
  writeFileSync(join(root, 'etc/drift-demo-b.conf'), 'changed\n');
  t.equal(await runVerifyPackages({ root, format: 'text', concurrency: 4 }, (s) => { out += s; }), 1);
  t.equal(out, '??5?????? c /etc/drift-demo-b.conf  [drift-demo-b:all]\n');
  out = '';
  t.equal(await runVerifyPackages({ root, format: 'json', concurrency: 4 }, (s) => { out += s; }), 1);
  t.same(JSON.parse(out), [{ path: '/etc/drift-demo-b.conf', status: 'changed', checks: '??5??????', conffile: true, package: 'drift-demo-b', arch: 'all' }]);
  await t.rejects(runVerifyPackages({ root: join(root, 'nope'), format: 'text', concurrency: 4 }, () => undefined), { code: 'DRIFT_ERR_USAGE' }, 'a missing root is a usage error (exit 2)');
});

t.test('node bin/drift.js verify-packages, as a user runs it', async (t) => {
  t.match(drift('--help').stdout, /^\s+verify-packages\b/m, 'drift --help lists verify-packages');
  const root = makeDpkgRoot();
  t.teardown(() => rmSync(join(root, '..'), { recursive: true, force: true }));
  const clean = drift('verify-packages', '--root', root);
  t.equal(clean.status, 0, clean.stderr);
  t.equal(clean.stdout, '');
  rmSync(join(root, 'usr/share/drift-demo-a/sub'), { recursive: true });
  const dirty = drift('verify-packages', '--root', root, '--format', 'json');
  t.equal(dirty.status, 1, dirty.stderr);
  t.same(JSON.parse(dirty.stdout).map((p: { path: string }) => p.path), ['/usr/share/drift-demo-a/sub', '/usr/share/drift-demo-a/sub/file.txt']);
  const problems = JSON.parse(dirty.stdout) as Array<Record<string, unknown>>;
  t.ok(problems.every((p) => JSON.stringify(Object.keys(p)) === JSON.stringify(Object.keys(p).sort())), 'keys sorted as in drift scan --format json');
  const text = drift('verify-packages', '--root', root);
  t.match(text.stdout, /^missing {5}\/usr\/share\/drift-demo-a\/sub {2}\[drift-demo-a:all\]$/m);
  const bad = drift('verify-packages', '--root', join(root, 'nope'));
  t.equal(bad.status, 2);
  t.match(bad.stderr, /^drift: root .* is not a readable folder/);
  const badFormat = drift('verify-packages', '--format', 'xml');
  t.equal(badFormat.status, 2);
});
