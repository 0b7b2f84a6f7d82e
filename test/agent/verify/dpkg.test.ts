import t from 'tap';
import { appendFileSync, mkdirSync, rmSync, writeFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { verifyDpkg, formatProblem, type VerifyProblem } from '../../../agent/verify/dpkg.js';
import { dpkgVerifyPaths, makeDpkgRoot } from './debroot.js';

const pathsOf = (problems: VerifyProblem[]): string[] => [...new Set(problems.map((p) => p.path))].sort();
const byPath = (problems: VerifyProblem[], path: string): VerifyProblem | undefined => problems.find((p) => p.path === path);

t.test('a freshly installed root verifies clean, like dpkg --root R --verify', async (t) => {
  const root = makeDpkgRoot();
  t.teardown(() => rmSync(join(root, '..'), { recursive: true, force: true }));
  const report = await verifyDpkg(root);
  t.same(report.problems, []);
  t.same(dpkgVerifyPaths(root), []);
  t.ok(report.checked >= 10, `checked ${report.checked} listed paths`);
});

t.test('edits, a changed binary, deletions and a removed listed folder: same set as dpkg --root R --verify', async (t) => {
  const root = makeDpkgRoot();
  t.teardown(() => rmSync(join(root, '..'), { recursive: true, force: true }));
  writeFileSync(join(root, 'etc/drift-demo-a/a.conf'), 'key=2\n'); // conffile, md5 from dpkg-generated md5sums
  writeFileSync(join(root, 'etc/drift-demo-b.conf'), 'b=2\n'); // conffile, md5 only in the status Conffiles field
  appendFileSync(join(root, 'usr/bin/drift-demo-a'), 'echo changed\n');
  unlinkSync(join(root, 'usr/share/drift-demo-a/other.txt'));
  rmSync(join(root, 'usr/share/drift-demo-a/sub'), { recursive: true });
  rmSync(join(root, 'usr/share/drift-demo-a/empty'), { recursive: true });
  const report = await verifyDpkg(root);
  const expected = [
    '/etc/drift-demo-a/a.conf',
    '/etc/drift-demo-b.conf',
    '/usr/bin/drift-demo-a',
    '/usr/share/drift-demo-a/empty',
    '/usr/share/drift-demo-a/other.txt',
    '/usr/share/drift-demo-a/sub',
    '/usr/share/drift-demo-a/sub/file.txt',
  ];
  t.same(dpkgVerifyPaths(root), expected, 'dpkg reports what the test changed');
  t.same(pathsOf(report.problems), expected, 'drift reports the same set');
  t.match(byPath(report.problems, '/etc/drift-demo-b.conf'), { status: 'changed', checks: '??5??????', conffile: true, package: 'drift-demo-b' });
  t.match(byPath(report.problems, '/usr/share/drift-demo-a/sub'), { status: 'missing', checks: 'missing  ', conffile: false });
  const line = formatProblem(byPath(report.problems, '/etc/drift-demo-a/a.conf') as VerifyProblem);
  t.equal(line, '??5?????? c /etc/drift-demo-a/a.conf  [drift-demo-a:all]');
});

t.test('a parent turned into a file, a file turned into a symlink, a local diversion', async (t) => {
  const root = makeDpkgRoot();
  t.teardown(() => rmSync(join(root, '..'), { recursive: true, force: true }));
  rmSync(join(root, 'etc/drift-demo-a'), { recursive: true });
  writeFileSync(join(root, 'etc/drift-demo-a'), 'now a file\n');
  const readme = join(root, 'usr/share/drift-demo-b/readme');
  unlinkSync(readme);
  writeFileSync(`${readme}.real`, 'hello\n');
  const { symlinkSync } = await import('node:fs');
  symlinkSync('readme.real', readme);
  const { execFileSync } = await import('node:child_process');
  execFileSync('dpkg-divert', ['--root', root, '--local', '--rename', '--divert', '/usr/bin/drift-demo-a.distrib', '--add', '/usr/bin/drift-demo-a'], { stdio: 'ignore' });
  const report = await verifyDpkg(root);
  t.same(pathsOf(report.problems), dpkgVerifyPaths(root));
  t.match(byPath(report.problems, '/etc/drift-demo-a/a.conf'), { status: 'missing', reason: 'Not a directory', conffile: true });
  t.match(byPath(report.problems, '/usr/share/drift-demo-b/readme'), { status: 'changed', checks: '?M.??????' }, 'same content through a symlink: mode only');
  t.notOk(byPath(report.problems, '/usr/bin/drift-demo-a'), 'the diverted binary is checked at its new place');
});

t.test('a file that became a folder is reported (dpkg aborts there)', async (t) => {
  const root = makeDpkgRoot();
  t.teardown(() => rmSync(join(root, '..'), { recursive: true, force: true }));
  const p = join(root, 'usr/share/drift-demo-a/other.txt');
  unlinkSync(p);
  mkdirSync(p);
  const report = await verifyDpkg(root);
  t.same(report.problems.map((x) => [x.path, x.checks, x.reason]), [['/usr/share/drift-demo-a/other.txt', '?M???????', 'Is a directory']]);
});

t.test('trouble: a root that is not a folder, a root without dpkg, an unreadable status', async (t) => {
  await t.rejects(verifyDpkg('/nonexistent/drift-root'), { code: 'DRIFT_ERR_USAGE', message: /not a readable folder/ });
  const root = makeDpkgRoot();
  t.teardown(() => rmSync(join(root, '..'), { recursive: true, force: true }));
  await t.rejects(verifyDpkg(join(root, 'usr')), { code: 'DRIFT_ERR_NOT_FOUND', message: /no dpkg database/ });
  const status = join(root, 'var/lib/dpkg/status');
  unlinkSync(status);
  mkdirSync(status);
  await t.rejects(verifyDpkg(root), { code: 'DRIFT_ERR_IO', message: /cannot read the dpkg database/ });
});

t.test('this machine: the same set of paths as dpkg --verify (nothing modified)', async (t) => {
  const [report, dpkg] = await Promise.all([verifyDpkg('/'), Promise.resolve().then(() => dpkgVerifyPaths(null))]);
  t.same(pathsOf(report.problems), dpkg);
  t.ok(report.checked > 1000, `checked ${report.checked} paths`);
});

t.test('hostile files in place of listed ones: a FIFO and a symlink to /dev/zero are reported, never read', async (t) => {
  const root = makeDpkgRoot();
  t.teardown(() => rmSync(join(root, '..'), { recursive: true, force: true }));
  const { execFileSync } = await import('node:child_process');
  const { symlinkSync } = await import('node:fs');
  // A FIFO nobody writes to: a blocking open would hang the verification for good.
  const fifo = join(root, 'usr/share/drift-demo-a/other.txt');
  unlinkSync(fifo);
  execFileSync('mkfifo', [fifo]);
  // /dev/zero through a symlink: a plain read would never end.
  const zero = join(root, 'usr/share/drift-demo-b/readme');
  unlinkSync(zero);
  symlinkSync('/dev/zero', zero);
  const started = Date.now();
  const report = await verifyDpkg(root);
  t.ok(Date.now() - started < 60_000, 'finished');
  t.match(byPath(report.problems, '/usr/share/drift-demo-a/other.txt'), { status: 'changed', checks: '?M???????', reason: /not a regular file when opened \(a FIFO\)/ });
  t.match(byPath(report.problems, '/usr/share/drift-demo-b/readme'), { status: 'changed', checks: '?M???????', reason: /not a regular file when opened \(a character device\)/ });
  // (dpkg --verify itself blocks for good on the FIFO: no comparison with it here.)
  t.same(pathsOf(report.problems), ['/usr/share/drift-demo-a/other.txt', '/usr/share/drift-demo-b/readme'], 'nothing else is reported');
});
