import t from 'tap';
import { createHash } from 'node:crypto';
import { MANIFEST_SCHEMA, type FileEntry, type Manifest } from '../../../agent/protocol/manifest.js';
import { emptyRuleSet, type RuleSet } from '../../../agent/protocol/rules.js';
import type { Finding } from '../../../agent/protocol/finding.js';
import { compare, compareWithDrops, rulesFor } from '../../../agent/engine/compare.js';
import { compileRules } from '../../../agent/engine/policy.js';

const sha = (s: string): string => createHash('sha256').update(s).digest('hex');

function manifest(sections: Partial<Pick<Manifest, 'packages' | 'files' | 'processes' | 'ports'>>): Manifest {
  return {
    schema: MANIFEST_SCHEMA,
    host: { hostname: 'web-1', machineId: 'abc' },
    collectedAt: '2026-01-01T00:00:00Z',
    agent: { version: '0.1.0' },
    digests: { root: `sha256:${'0'.repeat(64)}` },
    ...sections,
    unread: [],
  };
}

/** A regular file with its sha256 and size derived from the content. */
function file(content: string, extra: Partial<FileEntry> = {}, keepContent = true): FileEntry {
  const entry: FileEntry = { type: 'file', mode: '0644', uid: 0, gid: 0, size: Buffer.byteLength(content), sha256: sha(content), ...extra };
  if (keepContent) entry.content = content;
  return entry;
}

const src = (line: number) => ({ source: { file: 'rules/site.yaml', line, col: 3 } });

function rules(partial: Partial<RuleSet>): RuleSet {
  return { ...emptyRuleSet(), ...partial };
}

const none = emptyRuleSet();
const one = (findings: Finding[]): Finding => {
  if (findings.length !== 1) throw new Error(`expected one finding, got ${findings.length}: ${findings.map((f) => f.key).join(', ')}`);
  return findings[0] as Finding;
};

const PASSWD = 'root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n';

t.test('identical manifests give no findings', async (t) => {
  const m = manifest({
    packages: { 'dpkg:openssl:amd64': { version: '3.0.15-1~deb12u1', source: 'openssl' } },
    files: { '/etc/passwd': file(PASSWD), '/bin/sh': { type: 'symlink', mode: '0777', uid: 0, gid: 0, size: 4, target: 'dash' } },
    processes: { '/usr/sbin/sshd|root': { count: 1, exeSha256: sha('sshd'), deleted: false } },
    ports: { 'tcp:0.0.0.0:22': { process: '/usr/sbin/sshd' } },
  });
  t.same(compare({ baseline: m, manifest: structuredClone(m), rules: none }), []);
});

t.test('a section absent on either side is not compared', async (t) => {
  const baseline = manifest({ files: {}, processes: { '/usr/sbin/sshd|root': { count: 1, deleted: false } } });
  const scanned = manifest({ files: { '/etc/x': file('x') } });
  const findings = compare({ baseline, manifest: scanned, rules: none });
  t.same(findings.map((f) => `${f.kind} ${f.change} ${f.key}`), ['file added /etc/x']);
});

t.test('packages: installed, removed, upgraded and downgraded, ordered the way dpkg and rpm order them', async (t) => {
  const baseline = manifest({
    packages: {
      'dpkg:openssl:amd64': { version: '3.0.11-1~deb12u2' },
      'dpkg:curl:amd64': { version: '7.88.1-10+deb12u5' },
      'dpkg:tzdata:all': { version: '2024a-0+deb12u1' },
      'dpkg:openssh-server:amd64': { version: '1:9.2p1-2+deb12u3' },
      'rpm:bash:x86_64': { version: '5.1.8-6.el9' },
      'apk:musl:x86_64': { version: '1.2.4-r2' },
    },
  });
  const scanned = manifest({
    packages: {
      'dpkg:openssl:amd64': { version: '3.0.15-1~deb12u1' },
      'dpkg:tzdata:all': { version: '2024a-0+deb12u1' },
      'dpkg:openssh-server:amd64': { version: '9.9p1-1' },
      'dpkg:nginx:amd64': { version: '1.22.1-9' },
      'rpm:bash:x86_64': { version: '5.1.8-9.el9' },
      'apk:musl:x86_64': { version: '1.2.4-r10' },
    },
  });
  const findings = compare({ baseline, manifest: scanned, rules: none });
  const by = new Map(findings.map((f) => [f.key, f]));
  t.equal(findings.length, 6);
  t.equal(by.get('dpkg:openssl:amd64')?.explanation, 'openssl (dpkg, amd64) upgraded 3.0.11-1~deb12u2 → 3.0.15-1~deb12u1, not in image');
  t.same(by.get('dpkg:openssl:amd64')?.changed, ['version']);
  t.equal(by.get('dpkg:curl:amd64')?.change, 'removed');
  t.equal(by.get('dpkg:curl:amd64')?.explanation, 'curl (dpkg, amd64) 7.88.1-10+deb12u5 removed, present in image');
  t.equal(by.get('dpkg:nginx:amd64')?.explanation, 'nginx (dpkg, amd64) 1.22.1-9 installed, not in image');
  // The epoch makes 1:9.2p1 newer than 9.9p1.
  t.equal(by.get('dpkg:openssh-server:amd64')?.explanation, 'openssh-server (dpkg, amd64) downgraded 1:9.2p1-2+deb12u3 → 9.9p1-1, not in image');
  t.match(by.get('rpm:bash:x86_64')?.explanation, /upgraded 5\.1\.8-6\.el9 → 5\.1\.8-9\.el9/);
  t.match(by.get('apk:musl:x86_64')?.explanation, /upgraded 1\.2\.4-r2 → 1\.2\.4-r10/);
  t.equal(by.has('dpkg:tzdata:all'), false);
});

t.test('files: added, removed, content with a unified diff, mode naming setuid, owner, type and symlink target', async (t) => {
  const baseline = manifest({
    files: {
      '/etc/motd': file('Welcome\n'),
      '/usr/bin/passwd': file('ELF', { mode: '4755' }, false),
      '/usr/bin/find': file('ELF-find', { mode: '0755' }, false),
      '/srv/data': file('d', { uid: 0, gid: 0 }, false),
      '/etc/alternatives/editor': { type: 'symlink', mode: '0777', uid: 0, gid: 0, size: 18, target: '/usr/bin/vim.basic' },
      '/etc/cron.d': { type: 'dir', mode: '0755', uid: 0, gid: 0 },
      '/etc/old.conf': file('old\n'),
    },
  });
  const scanned = manifest({
    files: {
      '/etc/motd': file('Welcome\nAuthorized use only\n'),
      '/usr/bin/passwd': file('ELF', { mode: '0755' }, false),
      '/usr/bin/find': file('ELF-find', { mode: '4755' }, false),
      '/srv/data': file('d', { uid: 1000, gid: 1000 }, false),
      '/etc/alternatives/editor': { type: 'symlink', mode: '0777', uid: 0, gid: 0, size: 13, target: '/usr/bin/nano' },
      '/etc/cron.d': { type: 'symlink', mode: '0777', uid: 0, gid: 0, size: 4, target: '/tmp' },
      '/usr/local/bin/backdoor': file('#!/bin/sh\n', { mode: '4755' }),
    },
  });
  const by = new Map(compare({ baseline, manifest: scanned, rules: none }).map((f) => [f.key, f]));

  const motd = by.get('/etc/motd');
  t.same(motd?.changed, ['size', 'sha256', 'content']);
  t.equal(motd?.explanation, '/etc/motd: content changed (8 → 28 bytes)');
  t.equal(motd?.diff, '--- a/etc/motd\n+++ b/etc/motd\n@@ -1,1 +1,2 @@\n Welcome\n+Authorized use only\n');

  t.equal(by.get('/usr/bin/find')?.explanation, '/usr/bin/find: mode 0755 → 4755 (setuid gained)');
  t.equal(by.get('/usr/bin/passwd')?.explanation, '/usr/bin/passwd: mode 4755 → 0755 (setuid lost)');
  t.equal(by.get('/usr/bin/find')?.diff, undefined, 'no diff without content');
  t.same(by.get('/srv/data')?.changed, ['uid', 'gid']);
  t.equal(by.get('/srv/data')?.explanation, '/srv/data: owner uid 0 → 1000, group gid 0 → 1000');
  t.same(by.get('/etc/alternatives/editor')?.changed, ['target', 'size']);
  t.equal(by.get('/etc/alternatives/editor')?.explanation, '/etc/alternatives/editor: symlink retargeted /usr/bin/vim.basic → /usr/bin/nano');
  t.equal(by.get('/etc/cron.d')?.explanation, '/etc/cron.d: type dir → symlink (→ /tmp)');
  t.same(by.get('/etc/cron.d')?.changed, ['type', 'target', 'mode']);
  t.equal(by.get('/usr/local/bin/backdoor')?.change, 'added');
  t.equal(by.get('/usr/local/bin/backdoor')?.explanation, '/usr/local/bin/backdoor added (file, mode 4755 setuid, uid 0, gid 0)');
  t.match(by.get('/usr/local/bin/backdoor')?.diff, /^--- \/dev\/null\n\+\+\+ b\/usr\/local\/bin\/backdoor\n@@ -0,0 \+1,1 @@\n\+#!\/bin\/sh\n$/);
  t.equal(by.get('/etc/old.conf')?.change, 'removed');
  t.equal(by.get('/etc/old.conf')?.explanation, '/etc/old.conf removed (was file, mode 0644, uid 0, gid 0)');
});

t.test('package-owned files: changed by an upgrade, or edited outside the package manager', async (t) => {
  const sshd = (c: string) => file(c, { owner: 'dpkg:openssh-server', conffile: true });
  const ls = (c: string) => file(c, { owner: 'dpkg:coreutils', mode: '0755' }, false);
  const baseline = manifest({
    packages: { 'dpkg:openssh-server:amd64': { version: '1:9.2p1-2' }, 'dpkg:coreutils:amd64': { version: '9.1-1' } },
    files: { '/etc/ssh/sshd_config': sshd('PermitRootLogin no\n'), '/usr/bin/ls': ls('ELF-ls') },
  });
  const edited = manifest({
    packages: { 'dpkg:openssh-server:amd64': { version: '1:9.2p1-2' }, 'dpkg:coreutils:amd64': { version: '9.1-1' } },
    files: { '/etc/ssh/sshd_config': sshd('PermitRootLogin yes\n'), '/usr/bin/ls': ls('ELF-evil') },
  });
  const by = new Map(compare({ baseline, manifest: edited, rules: none }).map((f) => [f.key, f]));
  t.equal(by.get('/etc/ssh/sshd_config')?.explanation, '/etc/ssh/sshd_config: content changed (19 → 20 bytes); edited outside the package manager (conffile of openssh-server)');
  t.match(by.get('/etc/ssh/sshd_config')?.diff, /-PermitRootLogin no\n\+PermitRootLogin yes\n/);
  t.equal(by.get('/usr/bin/ls')?.explanation, '/usr/bin/ls: content changed (6 → 8 bytes); edited outside the package manager (owned by coreutils)');

  const upgraded = manifest({
    packages: { 'dpkg:openssh-server:amd64': { version: '1:9.2p1-2+deb12u3' }, 'dpkg:coreutils:amd64': { version: '9.1-1' } },
    files: { '/etc/ssh/sshd_config': sshd('PermitRootLogin no\nKexAlgorithms -x\n'), '/usr/bin/ls': ls('ELF-ls') },
  });
  const f = one(compare({ baseline, manifest: upgraded, rules: none }).filter((x) => x.kind === 'file'));
  t.equal(f.explanation, '/etc/ssh/sshd_config: content changed (19 → 36 bytes); changed by the upgrade of openssh-server 1:9.2p1-2 → 1:9.2p1-2+deb12u3');
});

t.test('processes: new, missing, a different, deleted or replaced binary; a count change alone is not drift', async (t) => {
  const baseline = manifest({
    processes: {
      '/usr/sbin/sshd|root': { count: 1, exeSha256: sha('sshd'), deleted: false },
      '/usr/sbin/nginx|www-data': { count: 4, exeSha256: sha('nginx'), deleted: false },
      '/usr/sbin/cron|root': { count: 1, exeSha256: sha('cron'), deleted: false },
      '/usr/lib/systemd/systemd-journald|root': { count: 1, exeSha256: sha('journald'), deleted: false },
      '/usr/sbin/rsyslogd|root': { count: 1, exeSha256: sha('rsyslogd'), deleted: false },
    },
  });
  const scanned = manifest({
    processes: {
      '/usr/sbin/sshd|root': { count: 1, exeSha256: sha('sshd-evil'), deleted: false },
      '/usr/sbin/nginx|www-data': { count: 9, exeSha256: sha('nginx'), deleted: false },
      '/usr/lib/systemd/systemd-journald|root': { count: 1, exeSha256: sha('journald'), deleted: true },
      '/usr/sbin/rsyslogd|root': { count: 1, exeSha256: sha('rsyslogd'), deleted: false, replaced: true },
      '/usr/bin/nc|nobody': { count: 2, deleted: false },
    },
  });
  const by = new Map(compare({ baseline, manifest: scanned, rules: none }).map((f) => [f.key, f]));
  t.equal(by.has('/usr/sbin/nginx|www-data'), false, 'worker pool size varies');
  t.equal(by.get('/usr/sbin/sshd|root')?.explanation, '/usr/sbin/sshd (as root) runs a different binary than in the image');
  t.same(by.get('/usr/sbin/sshd|root')?.changed, ['exeSha256']);
  t.equal(by.get('/usr/lib/systemd/systemd-journald|root')?.explanation, '/usr/lib/systemd/systemd-journald (as root) runs a deleted executable');
  t.equal(by.get('/usr/sbin/rsyslogd|root')?.explanation, '/usr/sbin/rsyslogd (as root) executable replaced on disk since it started');
  t.equal(by.get('/usr/bin/nc|nobody')?.explanation, 'new process /usr/bin/nc running as nobody (2 processes), not in image');
  t.equal(by.get('/usr/sbin/cron|root')?.explanation, '/usr/sbin/cron (as root) no longer running; it runs in the image');
  t.equal(by.size, 5);
});

t.test('ports: opened and closed with their process, or served by another process', async (t) => {
  const baseline = manifest({ ports: { 'tcp:0.0.0.0:22': { process: '/usr/sbin/sshd' }, 'tcp:0.0.0.0:80': { process: '/usr/sbin/nginx' }, 'udp:127.0.0.1:323': { process: '/usr/sbin/chronyd' } } });
  const scanned = manifest({ ports: { 'tcp:0.0.0.0:22': { process: '/usr/bin/dropbear' }, 'tcp:0.0.0.0:4444': { process: '/usr/bin/nc' }, 'udp:127.0.0.1:323': {} } });
  const findings = compare({ baseline, manifest: scanned, rules: none });
  t.same(findings.map((f) => [f.key, f.change, f.explanation]), [
    ['tcp:0.0.0.0:22', 'modified', 'port tcp:0.0.0.0:22 now served by /usr/bin/dropbear, was /usr/sbin/sshd'],
    ['tcp:0.0.0.0:4444', 'added', 'port tcp:0.0.0.0:4444 opened by /usr/bin/nc, not in image'],
    ['tcp:0.0.0.0:80', 'removed', 'port tcp:0.0.0.0:80 closed (was /usr/sbin/nginx)'],
  ], 'a process that could not be found on one side is not a change');
});

t.test('findings are sorted by kind (package, file, process, port), then key', async (t) => {
  const baseline = manifest({ packages: {}, files: {}, processes: {}, ports: {} });
  const scanned = manifest({
    ports: { 'tcp:0.0.0.0:8080': {} },
    processes: { '/b|root': { count: 1, deleted: false }, '/a|root': { count: 1, deleted: false } },
    files: { '/z': file('z'), '/a': file('a'), '/B': file('b') },
    packages: { 'dpkg:zsh:amd64': { version: '1' }, 'dpkg:bash:amd64': { version: '1' } },
  });
  const keys = compare({ baseline, manifest: scanned, rules: none }).map((f) => `${f.kind}:${f.key}`);
  t.same(keys, ['package:dpkg:bash:amd64', 'package:dpkg:zsh:amd64', 'file:/B', 'file:/a', 'file:/z', 'process:/a|root', 'process:/b|root', 'port:tcp:0.0.0.0:8080']);
});

t.test('ignore rules drop findings of their kind only', async (t) => {
  const baseline = manifest({ packages: {}, files: {}, processes: {}, ports: {} });
  const scanned = manifest({
    packages: { 'dpkg:linux-image-6.1.0-28-amd64:amd64': { version: '6.1.119-1' }, 'dpkg:nginx:amd64': { version: '1' } },
    files: { '/etc/machine-id': file('m'), '/var/lib/cloud/.instance': file('i'), '/etc/hostname': file('h') },
    processes: { '/usr/sbin/sshd|alice': { count: 1, deleted: false }, '/usr/bin/sleep|root': { count: 1, deleted: false }, '/usr/bin/nc|root': { count: 1, deleted: false } },
    ports: { 'udp:0.0.0.0:68': {}, 'tcp:0.0.0.0:4444': {} },
  });
  const r = rules({
    ignore: [
      { path: '/etc/machine-id', why: 'first boot' },
      { path: '/var/lib/cloud/**', why: 'cloud-init state (dot files too)' },
      { package: 'linux-image-*', why: 'kernels' },
      { process: '/usr/sbin/sshd', why: 'sessions (over the executable path)' },
      { process: '/usr/bin/s*|root', why: 'over the whole key' },
      { port: 'udp:*:68', why: 'dhcp client' },
      { path: '/usr/bin/nc', why: 'a path rule never drops a process' },
    ],
  });
  const findings = compare({ baseline, manifest: scanned, rules: r });
  t.same(findings.map((f) => `${f.kind}:${f.key}`), ['package:dpkg:nginx:amd64', 'file:/etc/hostname', 'process:/usr/bin/nc|root', 'port:tcp:0.0.0.0:4444']);
});

const CLOUD_VARS = { cloudInitUser: 'admin' };
const cloudInitRules = (): RuleSet => rules({
  vars: CLOUD_VARS,
  expect: [
    { path: '/etc/passwd', change: 'modified', lines: ['^${cloudInitUser}:'], why: 'cloud-init creates the default user', ...src(10) },
    { path: '/etc/shadow', change: 'modified', lines: ['^${cloudInitUser}$'], why: 'its shadow entry (names only)', ...src(12) },
    { path: '/home/${cloudInitUser}/.ssh/authorized_keys', change: 'added', why: 'its key', ...src(14) },
    { path: '/etc/hostname', why: 'set at first boot', ...src(16) },
  ],
});

t.test('the cloud-init user is expected; any other new user is drift, named', async (t) => {
  const baseline = manifest({ files: { '/etc/passwd': file(PASSWD), '/etc/hostname': file('debian\n') } });
  const firstBoot = manifest({
    files: {
      '/etc/passwd': file(`${PASSWD}admin:x:1000:1000:Debian:/home/admin:/bin/bash\n`),
      '/etc/hostname': file('ip-10-0-0-7\n'),
      '/home/admin/.ssh/authorized_keys': file('ssh-ed25519 AAAA admin\n', { mode: '0600', uid: 1000, gid: 1000 }),
    },
  });
  t.same(compare({ baseline, manifest: firstBoot, rules: cloudInitRules() }), [], 'a fresh instance scans clean');

  const handmade = manifest({ files: { ...firstBoot.files, '/etc/passwd': file(`${PASSWD}admin:x:1000:1000:Debian:/home/admin:/bin/bash\neve:x:1001:1001::/home/eve:/bin/bash\n`) } });
  const f = one(compare({ baseline, manifest: handmade, rules: cloudInitRules() }));
  t.equal(f.key, '/etc/passwd');
  t.equal(f.explanation, '/etc/passwd: content changed (80 → 164 bytes); line not expected by rules/site.yaml:10: "+eve:x:1001:1001::/home/eve:/bin/bash"');
  t.match(f.diff, /\n\+eve:x:1001/);

  const otherKey = manifest({ files: { ...firstBoot.files, '/home/eve/.ssh/authorized_keys': file('ssh-ed25519 BBBB eve\n') } });
  t.same(compare({ baseline, manifest: otherKey, rules: cloudInitRules() }).map((x) => x.key), ['/home/eve/.ssh/authorized_keys'], '${var} narrows the path');
});

t.test('a lines expectation needs the content, covers only content, and sees through names', async (t) => {
  const baseline = manifest({ files: { '/etc/passwd': file(PASSWD, {}, false), '/etc/shadow': file('root:$y$j9T$hash1:19700::::::\n', { mode: '0640', gid: 42 }, false) } });
  (baseline.files as Record<string, FileEntry>)['/etc/shadow'] = { ...(baseline.files?.['/etc/shadow'] as FileEntry), content: 'root\n' };

  const unknown = manifest({ files: { ...baseline.files, '/etc/passwd': file(`${PASSWD}admin:x:1000:1000::/home/admin:/bin/bash\n`, {}, false) } });
  const f1 = one(compare({ baseline, manifest: unknown, rules: cloudInitRules() }));
  t.match(f1.explanation, /content not recorded, so the expectation at rules\/site\.yaml:10 cannot be checked$/);

  const shadowWithAdmin = (body: string, names: string): FileEntry => ({ ...file(body, { mode: '0640', gid: 42 }, false), content: names });
  const added = manifest({ files: { ...baseline.files, '/etc/shadow': shadowWithAdmin('root:$y$j9T$hash1:19700::::::\nadmin:!:19700::::::\n', 'root\nadmin\n') } });
  t.same(compare({ baseline, manifest: added, rules: cloudInitRules() }), [], 'names content: the admin entry is expected');

  const rehashed = manifest({ files: { ...baseline.files, '/etc/shadow': shadowWithAdmin('root:$y$j9T$CHANGED:19700::::::\n', 'root\n') } });
  const f2 = one(compare({ baseline, manifest: rehashed, rules: cloudInitRules() }));
  t.same(f2.changed, ['size', 'sha256']);
  t.match(f2.explanation, /content changed beyond the recorded lines, so the expectation at rules\/site\.yaml:12 cannot prove it expected/);

  const chmodded = manifest({ files: { ...baseline.files, '/etc/shadow': { ...shadowWithAdmin('root:$y$j9T$hash1:19700::::::\nadmin:!:19700::::::\n', 'root\nadmin\n'), mode: '0644' } } });
  const f3 = one(compare({ baseline, manifest: chmodded, rules: cloudInitRules() }));
  t.match(f3.explanation, /mode changed, which the expectation at rules\/site\.yaml:12 \(lines only\) does not cover/);
});

t.test('an expect rule matches its change only; without lines it drops the finding', async (t) => {
  const baseline = manifest({ files: { '/etc/resolv.conf': file('nameserver 10.0.0.2\n') } });
  const r = rules({ expect: [{ path: '/etc/resolv.conf', change: 'modified', why: 'DHCP' }, { path: '/etc/ssh/ssh_host_*_key{,.pub}', change: 'added', why: 'host keys' }] });
  const changed = manifest({ files: { '/etc/resolv.conf': file('nameserver 10.1.0.2\n'), '/etc/ssh/ssh_host_ed25519_key': file('k', { mode: '0600' }, false) } });
  t.same(compare({ baseline, manifest: changed, rules: r }), []);
  const removed = manifest({ files: {} });
  t.same(compare({ baseline, manifest: removed, rules: r }).map((f) => `${f.change} ${f.key}`), ['removed /etc/resolv.conf']);
});

t.test('lines expectations of several matching rules pool their patterns', async (t) => {
  const baseline = manifest({ files: { '/etc/group': file('root:x:0:\n') } });
  const r = rules({
    vars: CLOUD_VARS,
    expect: [
      { path: '/etc/group', lines: ['^${cloudInitUser}:'], why: 'shipped', ...src(1) },
      { path: '/etc/group', lines: ['^deploy:'], why: 'site', ...src(2) },
    ],
  });
  const scanned = manifest({ files: { '/etc/group': file('root:x:0:\nadmin:x:1000:\ndeploy:x:1001:\n') } });
  t.same(compare({ baseline, manifest: scanned, rules: r }), []);
  const more = manifest({ files: { '/etc/group': file('root:x:0:admin\nadmin:x:1000:\n') } });
  t.match(one(compare({ baseline, manifest: more, rules: r })).explanation, /lines not expected by rules\/site\.yaml:1, rules\/site\.yaml:2: "-root:x:0:", "\+root:x:0:admin"$/);
});

t.test('policy: the last matching rule wins; default medium/report; path for files, name for the rest', async (t) => {
  const baseline = manifest({ packages: {}, files: {}, processes: {}, ports: {} });
  const scanned = manifest({
    packages: { 'dpkg:openssh-server:amd64': { version: '1' }, 'dpkg:nano:amd64': { version: '1' } },
    files: { '/etc/ssh/sshd_config': file('x'), '/tmp/x': file('x'), '/etc/.hidden/y': file('y') },
    processes: { '/usr/sbin/sshd|root': { count: 1, deleted: false } },
    ports: { 'tcp:0.0.0.0:22': {} },
  });
  const r = rules({
    policy: [
      { match: { kind: 'package' }, severity: 'high', action: 'replace', ...src(1) },
      { match: { kind: 'file', path: '/etc/**' }, severity: 'high', action: 'report', ...src(2) },
      { match: { kind: 'file', path: '/etc/ssh/**' }, severity: 'critical', action: 'replace', ...src(3) },
      { match: { name: 'openssh-*' }, severity: 'critical', action: 'replace', ...src(4) },
      { match: { kind: 'package', name: 'nano', change: 'removed' }, severity: 'low', action: 'ignore', ...src(5) },
      { match: { name: '/usr/sbin/*' }, severity: 'low', action: 'report', ...src(6) },
      { match: { kind: 'port', name: 'tcp:*:22' }, severity: 'high', action: 'report' },
      { match: { path: '/tmp/**' }, severity: 'low', action: 'ignore', ...src(8) },
      { match: { path: '/tmp/**', change: 'removed' }, severity: 'critical', action: 'replace', ...src(9) },
    ],
  });
  const got = compare({ baseline, manifest: scanned, rules: r }).map((f) => [f.key, f.severity, f.action, f.rule]);
  t.same(got, [
    ['dpkg:nano:amd64', 'high', 'replace', 'rules/site.yaml:1'],
    ['dpkg:openssh-server:amd64', 'critical', 'replace', 'rules/site.yaml:4'],
    ['/etc/.hidden/y', 'high', 'report', 'rules/site.yaml:2'],
    ['/etc/ssh/sshd_config', 'critical', 'replace', 'rules/site.yaml:3'],
    ['/tmp/x', 'low', 'ignore', 'rules/site.yaml:8'],
    ['/usr/sbin/sshd|root', 'low', 'report', 'rules/site.yaml:6'],
    ['tcp:0.0.0.0:22', 'high', 'report', null],
  ]);
  const bare = compare({ baseline, manifest: scanned, rules: none });
  t.ok(bare.every((f) => f.severity === 'medium' && f.action === 'report' && f.rule === null));
});

t.test('rules are compiled once per RuleSet object', async (t) => {
  const r = cloudInitRules();
  t.equal(compileRules(r), compileRules(r));
  t.not(compileRules(r), compileRules(cloudInitRules()));
});

t.test('policy gains: matches a file that gains setuid/setgid, a new setuid file, and nothing else', async (t) => {
  const policy = rules({
    policy: [
      { match: { kind: 'file' }, severity: 'low', action: 'report', ...src(1) },
      { match: { kind: 'file', gains: 'setuid' }, severity: 'critical', action: 'replace', ...src(2) },
      { match: { gains: 'setgid' }, severity: 'high', action: 'replace', ...src(3) },
    ],
  });
  const baseline = manifest({ files: {
    '/usr/bin/env': file('env', { mode: '0755' }, false),
    '/usr/bin/passwd': file('passwd', { mode: '4755' }, false),
    '/usr/bin/wall': file('wall', { mode: '0755' }, false),
  } });
  const scanned = manifest({ files: {
    '/usr/bin/env': file('env', { mode: '4755' }, false),
    '/usr/bin/passwd': file('passwd', { mode: '4711' }, false),
    '/usr/bin/wall': file('wall', { mode: '2755' }, false),
    '/usr/local/bin/shell': file('sh', { mode: '4755' }, false),
  } });
  const judged = Object.fromEntries(compare({ baseline, manifest: scanned, rules: policy }).map((f) => [f.key, `${f.severity} ${f.rule}`]));
  t.same(judged, {
    '/usr/bin/env': 'critical rules/site.yaml:2',
    '/usr/bin/passwd': 'low rules/site.yaml:1',
    '/usr/bin/wall': 'high rules/site.yaml:3',
    '/usr/local/bin/shell': 'critical rules/site.yaml:2',
  });
});

t.test('coverage: baseline paths under an unread folder, and a file that could not be hashed, are one finding per unread path', async (t) => {
  const dir: FileEntry = { type: 'dir', mode: '0755', uid: 0, gid: 0 };
  const before = manifest({ files: { '/etc': dir, '/etc/secret': dir, '/etc/secret/a': file('a'), '/etc/secret/b/c': file('c'), '/etc/f': file('f'), '/etc/gone': file('g') } });
  const after = manifest({ files: { '/etc': dir, '/etc/secret': dir, '/etc/f': { type: 'file', mode: '0644', uid: 0, gid: 0, size: 1 } } });
  after.unread = [{ path: '/etc/f', reason: 'EIO' }, { path: '/etc/gone', reason: 'ENOENT' }, { path: '/etc/secret', reason: 'EACCES' }];
  const findings = compare({ baseline: before, manifest: after, rules: none });
  t.same(findings.map((f) => `${f.kind} ${f.change} ${f.key}`), [
    'file removed /etc/gone', // vanished: a removal, not a loss of sight
    'coverage modified /etc/f',
    'coverage modified /etc/secret',
  ]);
  t.match(findings[2], { before: { paths: 2 }, after: { paths: 0, reason: 'EACCES' }, changed: ['paths'] });
  t.match(findings[1]?.explanation, /^\/etc\/f: could not be read \(EIO\), which hides 1 path the baseline recorded/);
});

t.test('the baseline\'s recorded scope replaces the ignore and expect rules; drops are counted by rule', async (t) => {
  const before = manifest({ files: { '/etc/a': file('1\n'), '/etc/b': file('1\n'), '/etc/c': file('1\n') }, packages: { 'dpkg:x:amd64': { version: '1' } } });
  const after = manifest({ files: { '/etc/a': file('2\n'), '/etc/b': file('2\n'), '/etc/c': file('2\n') }, packages: { 'dpkg:x:amd64': { version: '2' } } });
  const host = rules({
    ignore: [{ path: '/etc/**', why: 'hide everything', broad: true, ...src(1) }],
    policy: [{ match: { kind: 'package' }, severity: 'low', action: 'ignore', ...src(9) }],
  });
  const scope = {
    digest: `sha256:${'1'.repeat(64)}`, vars: {}, watch: [{ path: '/etc/**' }],
    ignore: [{ path: '/etc/a', why: 'a', ...src(2) }],
    expect: [{ path: '/etc/b', why: 'b', ...src(3) }],
  };
  const r = compareWithDrops({ baseline: { ...before, scope }, manifest: after, rules: host });
  t.same(r.findings.filter((f) => f.action !== 'ignore').map((f) => f.key), ['/etc/c'], 'the host\'s ignore rule is not used; the scope\'s are');
  t.same(r.dropped, [
    { rule: 'rules/site.yaml:2', by: 'ignore', count: 1 },
    { rule: 'rules/site.yaml:3', by: 'expect', count: 1 },
    { rule: 'rules/site.yaml:9', by: 'policy', count: 1 },
  ], 'the host\'s policy still applies');
  const withScope = { ...before, scope };
  t.equal(rulesFor(withScope, host), rulesFor(withScope, host), 'merged once per scope and rule set (a fleet compiles once)');
  t.equal(rulesFor(withScope, host).policy, host.policy);
  t.equal(rulesFor(before, host), host, 'no scope: the rules as given');
});

t.test('a content change too large to diff line by line is compared whole: every line named, no quadratic diff', async (t) => {
  // 8,000 distinct short lines against 8,000 others: a plain line diff of these takes about half a minute.
  const text = (p: string, n: number): string => Array.from({ length: n }, (_, i) => `${p}${i.toString(36)}`).join('\n');
  const before = `${text('a', 8000)}\nkept\nkept\n`;
  const after = `kept\n${text('b', 8000)}`;
  const baseline = manifest({ files: { '/etc/app.conf': file(before) } });
  const scanned = manifest({ files: { '/etc/app.conf': file(after) } });
  const f = one(compare({ baseline, manifest: scanned, rules: none }));
  const diff = f.diff ?? '';
  t.ok(diff.startsWith('--- a/etc/app.conf\n+++ b/etc/app.conf\n@@ -1,8002 +1,8001 @@\n-a0\n'), 'one hunk replacing the whole file');
  t.equal(diff.split('\n').filter((l) => l.startsWith('-') && !l.startsWith('---')).length, 8002, 'every old line removed');
  t.equal(diff.split('\n').filter((l) => l.startsWith('+') && !l.startsWith('+++')).length, 8001, 'every new line added');
  t.ok(diff.endsWith(`+b${(7999).toString(36)}\n\\ No newline at end of file\n`), 'a missing final newline said as a diff says it');

  // An expect rule judges the lines each side lacks (counted: one "kept" of two is removed).
  const expect = rules({ expect: [{ path: '/etc/app.conf', change: 'modified', lines: ['^b[0-9a-z]+$'], why: 'generated', ...src(1) }] });
  const judged = one(compare({ baseline, manifest: scanned, rules: expect }));
  t.match(judged.explanation, /lines not expected by rules\/site\.yaml:1: "-a0", "-a1", "-a2", "-a3", "-a4" and 7996 more$/, 'the 8,000 removed lines and one of the two "kept" are unexpected; the "b" lines fit');
  t.notMatch(judged.explanation, /"\+/, 'no added line is unexpected: the rule fits every "b" line, and the kept line is no addition');
});

t.test('a content change within the edit bound keeps the exact line diff', async (t) => {
  const before = Array.from({ length: 3000 }, (_, i) => `line ${i}`).join('\n') + '\n';
  const after = before.replace('line 1500\n', 'line 1500 changed\n');
  const f = one(compare({ baseline: manifest({ files: { '/etc/big.conf': file(before) } }), manifest: manifest({ files: { '/etc/big.conf': file(after) } }), rules: none }));
  t.match(f.diff, /@@ -1497,9 \+1497,9 @@\n line 1496\n line 1497\n line 1498\n line 1499\n-line 1500\n\+line 1500 changed\n line 1501\n line 1502\n line 1503\n line 1504\n$/, 'one line changed, four lines of context, as a plain diff');
});
