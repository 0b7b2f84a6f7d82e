import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { compareApkVersions, compareDebianVersions, comparePackageVersions, compareRpmVersions, parseDebianVersion, rpmvercmp } from '../../../agent/engine/versions.js';

// dpkg's own test cases (lib/dpkg/t/t-version.c) and Debian policy §5.6.12.
const DPKG_CASES: Array<[string, string, -1 | 0 | 1]> = [
  ['1.0', '1.0', 0],
  ['0:1.0', '1.0', 0],
  ['1.0', '1.0-0', 0],
  ['1:1.0', '1.0', 1],
  ['1:0.1', '2.0', 1],
  ['1.0', '1.1', -1],
  ['1.0-1', '1.0-2', -1],
  ['1.0-1', '1.0.1-1', -1],
  ['1.2.3', '1.2.3a', -1],
  ['1.2a', '1.2+', -1],
  ['1.0~rc1', '1.0', -1],
  ['1.0~rc1', '1.0~rc2', -1],
  ['1.0~~', '1.0~~a', -1],
  ['1.0~~a', '1.0~', -1],
  ['1.0~', '1.0', -1],
  ['1.0', '1.0a', -1],
  ['1.10', '1.9', 1],
  ['1.001', '1.1', 0],
  ['2.30', '2.3', 1],
  ['1.2-3-4', '1.2-3-5', -1],
  ['3.0.11-1~deb12u2', '3.0.15-1~deb12u1', -1],
  ['1:9.2p1-2', '1:9.2p1-2+deb12u3', -1],
  ['9.2p1-2+deb12u3', '1:9.2p1-2', -1],
  ['2.36-9+deb12u4', '2.36-9+deb12u10', -1],
  ['1.2.3-r4', '1.2.3-r10', -1],
  ['0.1+git20240101', '0.1', 1],
  ['a', 'B', 1],
];

// rpm's own test cases (tests/rpmvercmp.at).
const RPM_CASES: Array<[string, string, -1 | 0 | 1]> = [
  ['1.0', '1.0', 0], ['1.0', '2.0', -1], ['2.0', '1.0', 1], ['2.0.1', '2.0.1', 0], ['2.0', '2.0.1', -1],
  ['2.0.1', '2.0', 1], ['2.0.1a', '2.0.1a', 0], ['2.0.1a', '2.0.1', 1], ['2.0.1', '2.0.1a', -1],
  ['5.5p1', '5.5p1', 0], ['5.5p1', '5.5p2', -1], ['5.5p2', '5.5p1', 1], ['5.5p10', '5.5p10', 0],
  ['5.5p1', '5.5p10', -1], ['5.5p10', '5.5p1', 1], ['10xyz', '10.1xyz', -1], ['10.1xyz', '10xyz', 1],
  ['xyz10', 'xyz10', 0], ['xyz10', 'xyz10.1', -1], ['xyz10.1', 'xyz10', 1], ['xyz.4', 'xyz.4', 0],
  ['xyz.4', '8', -1], ['8', 'xyz.4', 1], ['xyz.4', '2', -1], ['2', 'xyz.4', 1], ['5.5p2', '5.6p1', -1],
  ['5.6p1', '5.5p2', 1], ['5.6p1', '6.5p1', -1], ['6.5p1', '5.6p1', 1], ['6.0.rc1', '6.0', 1],
  ['6.0', '6.0.rc1', -1], ['10b2', '10a1', 1], ['10a2', '10b2', -1], ['1.0aa', '1.0aa', 0],
  ['1.0a', '1.0aa', -1], ['1.0aa', '1.0a', 1], ['10.0001', '10.0001', 0], ['10.0001', '10.1', 0],
  ['10.1', '10.0001', 0], ['10.0001', '10.0039', -1], ['10.0039', '10.0001', 1], ['4.999.9', '5.0', -1],
  ['5.0', '4.999.9', 1], ['20101121', '20101121', 0], ['20101121', '20101122', -1], ['20101122', '20101121', 1],
  ['2_0', '2_0', 0], ['2.0', '2_0', 0], ['2_0', '2.0', 0], ['a', 'a', 0], ['a+', 'a+', 0], ['a+', 'a_', 0],
  ['a_', 'a+', 0], ['+a', '+a', 0], ['+a', '_a', 0], ['_a', '+a', 0], ['+_', '+_', 0], ['_+', '+_', 0],
  ['_+', '_+', 0], ['+', '_', 0], ['_', '+', 0], ['1.0~rc1', '1.0~rc1', 0], ['1.0~rc1', '1.0', -1],
  ['1.0', '1.0~rc1', 1], ['1.0~rc1', '1.0~rc2', -1], ['1.0~rc2', '1.0~rc1', 1],
  ['1.0~rc1~git123', '1.0~rc1~git123', 0], ['1.0~rc1~git123', '1.0~rc1', -1], ['1.0~rc1', '1.0~rc1~git123', 1],
  ['1.0^', '1.0^', 0], ['1.0^', '1.0', 1], ['1.0', '1.0^', -1], ['1.0^git1', '1.0^git1', 0],
  ['1.0^git1', '1.0', 1], ['1.0', '1.0^git1', -1], ['1.0^git1', '1.0^git2', -1], ['1.0^git2', '1.0^git1', 1],
  ['1.0^git1', '1.01', -1], ['1.01', '1.0^git1', 1], ['1.0^20160101', '1.0^20160101', 0],
  ['1.0^20160101', '1.0.1', -1], ['1.0.1', '1.0^20160101', 1], ['1.0^20160101^git1', '1.0^20160101^git1', 0],
  ['1.0^20160102', '1.0^20160101^git1', 1], ['1.0^20160101^git1', '1.0^20160102', -1],
  ['1.0~rc1^git1', '1.0~rc1^git1', 0], ['1.0~rc1^git1', '1.0~rc1', 1], ['1.0~rc1', '1.0~rc1^git1', -1],
  ['1.0^git1~pre', '1.0^git1~pre', 0], ['1.0^git1', '1.0^git1~pre', 1], ['1.0^git1~pre', '1.0^git1', -1],
];

t.test('dpkg ordering: documented cases, both directions', async (t) => {
  for (const [a, b, want] of DPKG_CASES) {
    t.equal(compareDebianVersions(a, b), want, `${a} vs ${b}`);
    t.equal(compareDebianVersions(b, a), -want, `${b} vs ${a}`);
  }
});

t.test('dpkg ordering agrees with this machine\'s dpkg --compare-versions', async (t) => {
  for (const [a, b] of DPKG_CASES) {
    const real = (['lt', 'eq', 'gt'] as const).find((op) => spawnSync('dpkg', ['--compare-versions', a, op, b]).status === 0);
    const want = real === 'lt' ? -1 : real === 'eq' ? 0 : 1;
    t.equal(compareDebianVersions(a, b), want, `${a} ${real ?? '?'} ${b}`);
  }
});

t.test('a Debian version splits into epoch, upstream and revision', async (t) => {
  t.same(parseDebianVersion('1:9.2p1-2+deb12u3'), { epoch: 1, upstream: '9.2p1', revision: '2+deb12u3' });
  t.same(parseDebianVersion('1.2-3-4'), { epoch: 0, upstream: '1.2-3', revision: '4' });
  t.same(parseDebianVersion('2.0'), { epoch: 0, upstream: '2.0', revision: '' });
});

t.test('rpmvercmp: documented cases', async (t) => {
  for (const [a, b, want] of RPM_CASES) t.equal(rpmvercmp(a, b), want, `${a} vs ${b}`);
});

const hasRpm = spawnSync('rpm', ['--version']).status === 0;
t.test('rpmvercmp agrees with this machine\'s rpm (rpm.vercmp)', { skip: hasRpm ? false : 'rpm is not installed (test/setup.sh installs it)' }, async (t) => {
  const lua = RPM_CASES.map(([a, b]) => `print(rpm.vercmp(${JSON.stringify(a)}, ${JSON.stringify(b)}) .. "\\n")`).join(' ');
  const lines = execFileSync('rpm', ['--eval', `%{lua: ${lua}}`], { encoding: 'utf8' }).trim().split('\n');
  t.equal(lines.length, RPM_CASES.length);
  RPM_CASES.forEach(([a, b], i) => t.equal(rpmvercmp(a, b), Number(lines[i]), `${a} vs ${b}`));
});

t.test('rpm EVR: epoch first, release only when both sides have one', async (t) => {
  t.equal(compareRpmVersions('1:1.0-1', '2.0-1'), 1);
  t.equal(compareRpmVersions('0:1.0-1', '1.0-1'), 0);
  t.equal(compareRpmVersions('1.0-1.el9', '1.0-2.el9'), -1);
  t.equal(compareRpmVersions('1.0', '1.0-5.el9'), 0);
  t.equal(compareRpmVersions('3.0.7-24.el9', '3.0.7-27.el9'), -1);
  t.equal(compareRpmVersions('2.0.1-1', '2.0-9'), 1);
});

t.test('the manager decides the ordering', async (t) => {
  // `~` is "before everything" for both, but `.rc1` is newer for rpm and older for nobody in dpkg:
  t.equal(comparePackageVersions('rpm', '6.0.rc1', '6.0'), 1);
  t.equal(comparePackageVersions('dpkg', '1.0a', '1.0+'), -1);
  // rpm ignores separators; dpkg does not.
  t.equal(comparePackageVersions('rpm', '2_0', '2.0'), 0);
  t.not(comparePackageVersions('dpkg', '2_0', '2.0'), 0);
  t.equal(comparePackageVersions('apk', '1.2.3-r4', '1.2.3-r10'), -1);
});

// apk ordering as apk-tools defines it (its suffix order, revisions, letters, leading-zero
// components); written from apk-tools' rules, since this machine has no apk to ask.
const APK_CASES: Array<[string, string, -1 | 0 | 1]> = [
  ['1.2.3_rc1-r0', '1.2.3-r0', -1],
  ['1.2.3_alpha', '1.2.3_beta', -1],
  ['1.2.3_beta2', '1.2.3_pre1', -1],
  ['1.2.3_pre1', '1.2.3_rc1', -1],
  ['1.2.3', '1.2.3_cvs', -1],
  ['1.2.3_cvs', '1.2.3_svn', -1],
  ['1.2.3_git20240101', '1.2.3_hg1', -1],
  ['1.2.3_hg1', '1.2.3_p1', -1],
  ['1.2.3_p1', '1.2.3_p2', -1],
  ['1.2.3_rc2', '1.2.3_rc10', -1],
  ['1.2.3-r4', '1.2.3-r10', -1],
  ['1.2.3', '1.2.3-r0', 0],
  ['1.2', '1.2.1', -1],
  ['1.2a', '1.2b', -1],
  ['1.2', '1.2a', -1],
  ['1.10', '1.9', 1],
  ['1.02', '1.1', -1],
  ['1.001', '1.01', -1],
  ['3.0.15-r0', '3.0.8-r0', 1],
  ['2.38_git20230210-r1', '2.38-r1', 1],
];

t.test('apk ordering: apk-tools\' rules, both directions', async (t) => {
  for (const [a, b, want] of APK_CASES) {
    t.equal(compareApkVersions(a, b), want, `${a} vs ${b}`);
    t.equal(compareApkVersions(b, a), -want, `${b} vs ${a}`);
  }
  t.equal(comparePackageVersions('apk', '1.2.3_rc1-r0', '1.2.3-r0'), -1, 'a release candidate to the release is an upgrade, not the dpkg-order downgrade');
  t.equal(comparePackageVersions('dpkg', '1.2.3_rc1-r0', '1.2.3-r0'), 1, 'the dpkg order that was used for apk before');
});
