import t from 'tap';
import { readFileSync } from 'node:fs';
import { fixtures } from '../../../helpers/paths.js';
import {
  divertedPath, dpkgInfoName, isDpkgInstalled, parseConffiles, parseDiversions, parseDpkgList, parseDpkgStatus, parseMd5sums,
} from '../../../../agent/collectors/packages/dpkg-parse.js';
import { parseRpmQuery, rpmSourceName } from '../../../../agent/collectors/packages/rpm-parse.js';
import { parseApkInstalled } from '../../../../agent/collectors/packages/apk-parse.js';

const fx = (...p: string[]): string => readFileSync(fixtures('packages', ...p), 'utf8');

t.test('dpkg status (recorded from Debian 12): versions with epochs, Source without its version, multi-line fields, conffiles', async (t) => {
  const recs = parseDpkgStatus(fx('dpkg', 'status'));
  t.same(recs.map((r) => `${r.package}:${r.arch}=${r.version}/${r.source}`), [
    'openssl:amd64=3.0.19-1~deb12u2/openssl',
    'bash:amd64=5.2.15-2+b8/bash',
    'tzdata:all=2025b-0+deb12u2/tzdata',
    'libc6:amd64=2.36-9+deb12u14/glibc',
    'base-files:amd64=12.4+deb12u11/base-files',
    'zlib1g:amd64=1:1.2.13.dfsg-1/zlib',
    'diffutils:amd64=1:3.8-4/diffutils',
  ]);
  const openssl = recs[0];
  t.same(openssl?.conffiles, [{ path: '/etc/ssl/openssl.cnf', hash: 'fe1993ec22f6b8a46cb9706acd8fc68f', obsolete: false, removeOnUpgrade: false }]);
  t.ok(recs.every(isDpkgInstalled));
  t.equal(dpkgInfoName(recs[3]!), 'libc6:amd64', 'Multi-Arch: same packages have arch-qualified info files');
  t.equal(dpkgInfoName(recs[0]!), 'openssl');
});

t.test('dpkg installed states: hold counts, half-configured does not; updates journal overrides status', async (t) => {
  const status = 'Package: a\nStatus: hold ok installed\nArchitecture: all\nVersion: 1\n\n'
    + 'Package: b\nStatus: install ok half-configured\nArchitecture: all\nVersion: 1\n\n'
    + 'Package: c\nStatus: install ok triggers-pending\nArchitecture: all\nVersion: 1\n\n'
    + 'Package: d\nStatus: deinstall ok config-files\nArchitecture: all\nVersion: 1\n';
  const recs = parseDpkgStatus(status, ['Package: d\nStatus: install ok installed\nArchitecture: all\nVersion: 2\n']);
  t.same(recs.filter(isDpkgInstalled).map((r) => `${r.package}=${r.version}`), ['a=1', 'c=1', 'd=2']);
});

t.test('dpkg conffile flags, list and md5sums files, diversions', async (t) => {
  t.same(parseConffiles('\n /etc/x 0123 obsolete\n /etc/y newconffile remove-on-upgrade'), [
    { path: '/etc/x', hash: '0123', obsolete: true, removeOnUpgrade: false },
    { path: '/etc/y', hash: 'newconffile', obsolete: false, removeOnUpgrade: true },
  ]);
  const list = parseDpkgList(fx('dpkg', 'info', 'openssl.list'));
  t.equal(list[0], '/', 'the /. line is the root');
  t.ok(list.includes('/usr/bin/openssl'));
  t.ok(list.includes('/etc/ssl/openssl.cnf'));
  const sums = parseMd5sums(fx('dpkg', 'info', 'openssl.md5sums'));
  t.match(sums.get('/usr/bin/openssl'), /^[0-9a-f]{32}$/);
  t.notOk(sums.has('/etc/ssl/openssl.cnf'), 'Debian md5sums leave conffiles out');
  const div = new Map(parseDiversions(fx('dpkg', 'diversions')).map((d) => [d.from, d]));
  t.same(div.get('/bin/sh'), { from: '/bin/sh', to: '/bin/sh.distrib', by: 'dash' });
  t.equal(divertedPath('/usr/bin/pg_config', 'libpq-dev', div), '/usr/bin/pg_config.libpq-dev');
  t.equal(divertedPath('/usr/bin/pg_config', 'postgresql-common', div), '/usr/bin/pg_config', 'the diverting package keeps its path');
  t.same(parseDiversions('/a\n/b\n:\n'), [{ from: '/a', to: '/b', by: null }], 'a local diversion');
});

t.test('rpm -qa --qf output: [epoch:]version-release, source name, %config flags, keys without files', async (t) => {
  const pkgs = parseRpmQuery(fx('rpm', 'qa-output.txt'));
  t.same(pkgs.map((p) => `${p.name}:${p.arch}=${p.version}/${p.source ?? '-'}`), [
    'drift-demo:noarch=2:1.4-3.el9/drift-demo',
    'bash:x86_64=5.1.8-9.el9/bash',
    'gpg-pubkey:(none)=350d275d-6279464b/-',
    'openssl-libs:x86_64=1:3.0.7-27.el9/openssl',
  ]);
  t.same(pkgs[0]?.files, [
    { path: '/etc/drift-demo', config: false },
    { path: '/etc/drift-demo/demo.conf', config: true },
    { path: '/usr/share/drift-demo', config: false },
    { path: '/usr/share/drift-demo/data.txt', config: false },
  ]);
  t.same(pkgs[2]?.files, []);
  t.equal(rpmSourceName('python3-libs-3.9.18-3.el9.src.rpm'), 'python3-libs');
});

t.test('apk installed db: P/V/A/o, F folders with their R files', async (t) => {
  const pkgs = parseApkInstalled(fx('apk', 'installed'));
  t.same(pkgs.map((p) => `${p.name}:${p.arch}=${p.version}/${p.origin}`), [
    'musl:x86_64=1.2.4-r2/musl',
    'busybox-binsh:x86_64=1.36.1-r15/busybox',
    'alpine-baselayout-data:x86_64=3.4.3-r2/alpine-baselayout',
  ]);
  t.same(pkgs[0]?.files, ['/lib/ld-musl-x86_64.so.1', '/lib/libc.musl-x86_64.so.1']);
  t.same(pkgs[2]?.dirs, ['/etc', '/etc/apk', '/etc/apk/protected_paths.d']);
  t.same(pkgs[2]?.files, ['/etc/fstab', '/etc/group', '/etc/hostname']);
});
