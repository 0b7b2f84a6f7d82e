import t from 'tap';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixtures } from '../../../helpers/paths.js';
import { createPackagesCollector, packagesCollector } from '../../../../agent/collectors/packages/index.js';
import { OwnerIndex } from '../../../../agent/collectors/packages/owners.js';
import { PACKAGES_CACHE_FILE } from '../../../../agent/collectors/packages/cache.js';
import type { CollectContext } from '../../../../agent/collectors/contract.js';

const ctx = (root: string): CollectContext => ({ root, proc: null, rules: {} as CollectContext['rules'], stateDir: null, forceRehash: false });

function tempRoot(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'drift-pkgroot-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('this machine: the dpkg set equals dpkg-query -W for installed packages (name:arch and version)', async (t) => {
  const out = execFileSync('dpkg-query', ['-W', '-f', '${db:Status-Abbrev}\t${Package}\t${Architecture}\t${Version}\n'], { encoding: 'utf8' });
  const expected: Record<string, string> = {};
  for (const line of out.split('\n')) {
    const [abbrev = '', name, arch, version = ''] = line.split('\t');
    // The second letter of db:Status-Abbrev is the state: i installed, t/W trigger states (see DPKG_INSTALLED_STATES).
    if (name && 'itW'.includes(abbrev[1] ?? 'n')) expected[`dpkg:${name}:${arch}`] = version;
  }
  const r = await packagesCollector.collect(ctx('/'));
  const got: Record<string, string> = {};
  for (const [k, v] of Object.entries(r.entries)) if (k.startsWith('dpkg:')) got[k] = v.version;
  t.same(got, expected);
  t.ok(Object.keys(got).length > 100);
  t.same(r.unread, []);
  t.same(r.owners?.get('/etc/ssl/openssl.cnf'), { owner: 'dpkg:openssl', conffile: true });
  t.same(r.owners?.get('/usr/bin/dpkg'), { owner: 'dpkg:dpkg', conffile: false });
  // A diverted path holds the diverting package's copy (or nobody's): other packages' copies live at the target.
  const div = readFileSync('/var/lib/dpkg/diversions', 'utf8').split('\n');
  for (let i = 0; i + 2 < div.length; i += 3) {
    const owner = r.owners?.get(div[i] ?? '')?.owner;
    if (owner !== undefined) t.equal(owner, `dpkg:${div[i + 2]}`, `${div[i]} is owned by its diverting package`);
  }
});

t.test('a root built from recorded dpkg files; no managers → nothing; unreadable status → unread', async (t) => {
  const root = tempRoot(t);
  const admin = join(root, 'var/lib/dpkg');
  mkdirSync(admin, { recursive: true });
  cpSync(fixtures('packages', 'dpkg'), admin, { recursive: true });
  const r = await packagesCollector.collect(ctx(root));
  t.same(r.entries['dpkg:zlib1g:amd64'], { version: '1:1.2.13.dfsg-1', source: 'zlib' });
  t.same(r.entries['dpkg:tzdata:all'], { version: '2025b-0+deb12u2', source: 'tzdata' });
  t.same(r.owners?.get('/etc/ssl/openssl.cnf'), { owner: 'dpkg:openssl', conffile: true });
  t.same(r.owners?.get('/etc/debian_version'), { owner: 'dpkg:base-files', conffile: true });
  // The recorded root holds the files lists of two packages only: the others are reported, not skipped.
  t.ok(r.unread.some((u) => u.path === '/var/lib/dpkg/info/bash.list' && u.reason === 'ENOENT'));

  const empty = tempRoot(t);
  const none = await packagesCollector.collect(ctx(empty));
  t.same([none.entries, none.unread, (none.owners as OwnerIndex).size], [{}, [], 0]);

  const broken = tempRoot(t);
  mkdirSync(join(broken, 'var/lib/dpkg/status'), { recursive: true });
  mkdirSync(join(broken, 'lib/apk/db/installed'), { recursive: true });
  const rb = await packagesCollector.collect(ctx(broken));
  const folder = 'not a regular file when opened (a folder)';
  t.same(rb.unread, [{ path: '/var/lib/dpkg/status', reason: folder }, { path: '/lib/apk/db/installed', reason: folder }]);
});

t.test('apk root from the recorded installed db', async (t) => {
  const root = tempRoot(t);
  mkdirSync(join(root, 'lib/apk/db'), { recursive: true });
  cpSync(fixtures('packages', 'apk', 'installed'), join(root, 'lib/apk/db/installed'));
  const r = await packagesCollector.collect(ctx(root));
  t.same(Object.keys(r.entries), ['apk:alpine-baselayout-data:x86_64', 'apk:busybox-binsh:x86_64', 'apk:musl:x86_64']);
  t.same(r.entries['apk:busybox-binsh:x86_64'], { version: '1.36.1-r15', source: 'busybox' });
  t.same(r.owners?.get('/bin/sh'), { owner: 'apk:busybox-binsh', conffile: false });
});

t.test('rpm: a real rpm database built with rpm --root; no rpm program → unread', async (t) => {
  const dir = tempRoot(t);
  const top = join(dir, 'build');
  mkdirSync(join(top, 'SPECS'), { recursive: true });
  writeFileSync(join(top, 'SPECS', 'demo.spec'), [
    'Name: drift-demo', 'Epoch: 2', 'Version: 1.4', 'Release: 3', 'Summary: demo', 'License: MIT', 'BuildArch: noarch',
    '%description', 'demo', '%install', 'mkdir -p %{buildroot}/etc/drift-demo', 'echo a=1 > %{buildroot}/etc/drift-demo/demo.conf',
    '%files', '%dir /etc/drift-demo', '%config(noreplace) /etc/drift-demo/demo.conf', '',
  ].join('\n'));
  execFileSync('rpmbuild', ['--define', `_topdir ${top}`, '-bb', join(top, 'SPECS', 'demo.spec')], { stdio: 'ignore' });
  const root = join(dir, 'root');
  execFileSync('rpm', ['--root', root, '--dbpath', '/var/lib/rpm', '--initdb']);
  execFileSync('rpm', ['--root', root, '--dbpath', '/var/lib/rpm', '-i', '--nodeps', join(top, 'RPMS', 'noarch', 'drift-demo-1.4-3.noarch.rpm')], { stdio: 'ignore' });
  const r = await packagesCollector.collect(ctx(root));
  t.same(r.entries, { 'rpm:drift-demo:noarch': { version: '2:1.4-3', source: 'drift-demo' } });
  t.same(r.owners?.get('/etc/drift-demo/demo.conf'), { owner: 'rpm:drift-demo', conffile: true });
  t.same(r.owners?.get('/etc/drift-demo'), { owner: 'rpm:drift-demo', conffile: false });

  // A second version installed beside the first (rpm -i, as kernels are): both instances show.
  writeFileSync(join(top, 'SPECS', 'demo.spec'), readFileSync(join(top, 'SPECS', 'demo.spec'), 'utf8')
    .replace('Version: 1.4', 'Version: 1.5').replaceAll('/etc/drift-demo/demo.conf', '/etc/drift-demo/demo-1.5.conf')
    .replace('%dir /etc/drift-demo\n', ''));
  execFileSync('rpmbuild', ['--define', `_topdir ${top}`, '-bb', join(top, 'SPECS', 'demo.spec')], { stdio: 'ignore' });
  execFileSync('rpm', ['--root', root, '--dbpath', '/var/lib/rpm', '-i', '--nodeps', join(top, 'RPMS', 'noarch', 'drift-demo-1.5-3.noarch.rpm')], { stdio: 'ignore' });
  const two = await packagesCollector.collect(ctx(root));
  t.same(two.entries, {
    'rpm:drift-demo:noarch:2:1.4-3': { version: '2:1.4-3', source: 'drift-demo' },
    'rpm:drift-demo:noarch:2:1.5-3': { version: '2:1.5-3', source: 'drift-demo' },
  }, 'two installed instances of one name and arch: one entry each');

  const path = process.env.PATH;
  process.env.PATH = '/nonexistent';
  try {
    const r2 = await packagesCollector.collect(ctx(root));
    t.same(r2.entries, {});
    t.match(r2.unread, [{ path: '/var/lib/rpm', reason: /rpm program is not installed/ }]);
  } finally {
    process.env.PATH = path;
  }
});

t.test('with a state folder, the packages are cached while the databases do not change; a bad cache is never used', async (t) => {
  const root = tempRoot(t);
  const admin = join(root, 'var/lib/dpkg');
  mkdirSync(admin, { recursive: true });
  cpSync(fixtures('packages', 'dpkg'), admin, { recursive: true });
  const state = join(tempRoot(t), 'state');
  mkdirSync(state, { mode: 0o700 });
  // The fixture was copied just now: a clock 5 s ahead lets the cache be written at once.
  const later = createPackagesCollector({ clock: () => new Date(Date.now() + 5000) });
  const withState: CollectContext = { ...ctx(root), stateDir: state };
  const plain = await packagesCollector.collect(ctx(root));
  const entriesOf = (r: { owners?: unknown }): Array<[string, unknown]> => [...(r.owners as OwnerIndex).entries()];
  const first = await later.collect(withState);
  t.same([first.entries, first.unread, entriesOf(first)], [plain.entries, plain.unread, entriesOf(plain)], 'the same result as without a state folder');
  const file = join(state, PACKAGES_CACHE_FILE);
  t.equal(statSync(file).mode & 0o777, 0o600, 'cache written 0600');

  // A list edited in place (dpkg never does: it renames a new one in) is not seen while the cache holds: proof that it is used.
  const list = join(admin, 'info', 'openssl.list');
  writeFileSync(list, readFileSync(list, 'utf8').replace('/etc/ssl/openssl.cnf\n', ''));
  const cached = await later.collect(withState);
  t.same(entriesOf(cached), entriesOf(plain), 'taken from the cache');
  t.same(cached.owners?.get('/etc/ssl/openssl.cnf'), { owner: 'dpkg:openssl', conffile: true });

  // dpkg changes the status file (a new inode): the lists are read again.
  const status = readFileSync(join(admin, 'status'));
  writeFileSync(join(admin, 'status.new'), status);
  renameSync(join(admin, 'status.new'), join(admin, 'status'));
  const fresh = await later.collect(withState);
  t.equal(fresh.owners?.get('/etc/ssl/openssl.cnf'), undefined, 'read again after the database changed');
  const truth = entriesOf(fresh);

  const bad: Array<[string, () => void]> = [
    ['not JSON', () => writeFileSync(file, '{ torn')],
    ['paths out of order', () => { const c = JSON.parse(readFileSync(file, 'utf8')); c.paths.reverse(); writeFileSync(file, JSON.stringify(c)); }],
    ['a code naming no owner', () => { const c = JSON.parse(readFileSync(file, 'utf8')); c.codes[0] = c.names.length * 2; writeFileSync(file, JSON.stringify(c)); }],
    ['another stamp', () => { const c = JSON.parse(readFileSync(file, 'utf8')); c.stamp = 'x'; c.paths = []; c.codes = []; writeFileSync(file, JSON.stringify(c)); }],
    ['a bad package entry', () => { const c = JSON.parse(readFileSync(file, 'utf8')); c.entries['dpkg:x:all'] = { version: 7 }; writeFileSync(file, JSON.stringify(c)); }],
    ['a symlink', () => { const real = `${file}.real`; renameSync(file, real); symlinkSync(real, file); }],
    ['a FIFO', () => { rmSync(file); execFileSync('mkfifo', [file]); }],
  ];
  for (const [what, make] of bad) {
    rmSync(file, { force: true });
    rmSync(`${file}.real`, { force: true });
    await later.collect(withState);
    make();
    const r = await later.collect(withState);
    t.same(entriesOf(r), truth, `${what}: not used`);
    t.notOk(r.entries['dpkg:x:all'], `${what}: nothing of it kept`);
  }
});
