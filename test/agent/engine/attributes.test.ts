import t from 'tap';
import { createHash } from 'node:crypto';
import { MANIFEST_SCHEMA, type FileEntry, type Manifest } from '../../../agent/protocol/manifest.js';
import { emptyRuleSet, type RuleSet } from '../../../agent/protocol/rules.js';
import type { Finding } from '../../../agent/protocol/finding.js';
import { compare } from '../../../agent/engine/compare.js';
import { capabilityGrants } from '../../../agent/engine/policy.js';
import { loadRuleSet } from '../../../agent/rules/load.js';

/**
 * File attributes beyond content and mode: how each difference is found, judged
 * by the shipped policy and explained.
 */

const sha = (s: string): string => createHash('sha256').update(s).digest('hex');

function manifest(files: Record<string, FileEntry>): Manifest {
  return {
    schema: MANIFEST_SCHEMA,
    host: { hostname: 'web-1', machineId: 'abc' },
    collectedAt: '2026-01-01T00:00:00Z',
    agent: { version: '0.1.0' },
    digests: { root: `sha256:${'0'.repeat(64)}` },
    files,
    unread: [],
  };
}

const BIN: FileEntry = { type: 'file', mode: '0755', uid: 0, gid: 0, size: 5, sha256: sha('ELF..'), mtime: 1_700_000_000 };
const CONF: FileEntry = { type: 'file', mode: '0644', uid: 0, gid: 0, size: 4, sha256: sha('a=1\n'), content: 'a=1\n', mtime: 1_700_000_000 };
const DIR: FileEntry = { type: 'dir', mode: '0755', uid: 0, gid: 0 };

const shipped = await loadRuleSet([]);

function one(before: Record<string, FileEntry>, after: Record<string, FileEntry>, rules: RuleSet = shipped): Finding {
  const findings = compare({ baseline: manifest(before), manifest: manifest(after), rules });
  if (findings.length !== 1) throw new Error(`expected one finding, got ${findings.length}: ${findings.map((f) => `${f.key} ${f.changed.join(',')}`).join('; ')}`);
  return findings[0] as Finding;
}

t.test('equal attributes are no finding, whatever the key order of the xattrs', async (t) => {
  const a: FileEntry = { ...BIN, caps: 'cap_net_raw=ep', acl: ['user::rwx', 'user:7:r--', 'group::r-x', 'mask::r-x', 'other::r-x'], flags: 'i', nlink: 2, xattrs: { 'user.a': 'sha256:1', 'user.b': 'sha256:2' } };
  const b: FileEntry = { ...a, acl: [...(a.acl ?? [])], xattrs: { 'user.b': 'sha256:2', 'user.a': 'sha256:1' } };
  t.same(compare({ baseline: manifest({ '/usr/bin/ping': a }), manifest: manifest({ '/usr/bin/ping': b }), rules: shipped }), []);
});

t.test('a capability gained is critical/replace like setuid, wherever the file is', async (t) => {
  const f = one({ '/opt/tool/run': BIN, '/srv/x': CONF }, { '/opt/tool/run': { ...BIN, caps: 'cap_setuid=ep' }, '/srv/x': CONF });
  t.same(f.changed, ['caps']);
  t.equal(f.severity, 'critical');
  t.equal(f.action, 'replace');
  t.match(f.rule, /90-policy\.yaml:\d+$/);
  t.match(f.explanation, /^\/opt\/tool\/run: file capabilities none → cap_setuid=ep \(it runs with these privileges whoever starts it/);
  const outsideCode = one({ '/srv/app/bin': BIN }, { '/srv/app/bin': { ...BIN, caps: 'cap_dac_override=ep' } });
  t.equal(outsideCode.severity, 'critical', 'outside the code folders too');
  const added = one({}, { '/etc/cron.daily/x': { ...BIN, caps: 'cap_sys_admin=ep' } });
  t.equal(added.severity, 'critical', 'a new file that has one counts as a gain');
  t.match(added.explanation, /added \(file, mode 0755, uid 0, gid 0, capabilities cap_sys_admin=ep\)/);
  const lost = one({ '/etc/ping': { ...BIN, caps: 'cap_net_raw=ep' } }, { '/etc/ping': BIN });
  t.equal(lost.severity, 'medium', 'a capability lost is no escalation: the path decides');
  t.match(lost.explanation, /file capabilities cap_net_raw=ep → none \(removed\)/);
  const effective = one({ '/etc/ping': { ...BIN, caps: 'cap_net_raw=p' } }, { '/etc/ping': { ...BIN, caps: 'cap_net_raw=ep' } });
  t.equal(effective.severity, 'critical', 'a capability made effective is a gain');
});

t.test('capability texts as grants', async (t) => {
  t.same([...capabilityGrants('cap_chown=i cap_setuid,cap_net_raw+ep [rootid=1000]')].sort(), ['cap_chown:i', 'cap_net_raw:e', 'cap_net_raw:p', 'cap_setuid:e', 'cap_setuid:p']);
  t.same([...capabilityGrants('invalid sha256:abc')], ['invalid sha256:abc'], 'an undecoded value is a grant of its own');
  t.same([...capabilityGrants(undefined)], []);
});

t.test('an ACL that grants a user access with the mode bits unchanged is drift, and names the grant', async (t) => {
  const acl = ['user::rw-', 'user:1000:r--', 'group::r--', 'mask::r--', 'other::---'];
  const f = one({ '/etc/shadow': { ...CONF, mode: '0640' } }, { '/etc/shadow': { ...CONF, mode: '0640', acl } });
  t.same(f.changed, ['acl']);
  t.equal(f.severity, 'critical', 'by the path of /etc/shadow');
  t.match(f.explanation, /ACL added: user::rw-,user:1000:r--,.*; grants user:1000:r-- beyond what the mode bits say \(getfacl shows it, setfacl -b removes it\)/);
  const changed = one({ '/etc/x': { ...CONF, acl } }, { '/etc/x': { ...CONF, acl: acl.map((e) => (e === 'user:1000:r--' ? 'user:1000:rw-' : e)) } });
  t.match(changed.explanation, /ACL changed: -user:1000:r-- \+user:1000:rw-; grants user:1000:rw-/);
  const dflt = one({ '/etc/d': DIR }, { '/etc/d': { ...DIR, defaultAcl: ['user::rwx', 'group::r-x', 'group:50:rwx', 'mask::rwx', 'other::r-x'] } });
  t.same(dflt.changed, ['defaultAcl']);
  t.match(dflt.explanation, /default ACL added: .*grants group:50:rwx/);
});

t.test('xattrs by name, the SELinux label by value', async (t) => {
  const f = one({ '/etc/x': { ...CONF, xattrs: { 'security.selinux': 'system_u:object_r:etc_t:s0', 'user.a': 'sha256:1' } } }, {
    '/etc/x': { ...CONF, xattrs: { 'security.selinux': 'system_u:object_r:shadow_t:s0', 'user.b': 'sha256:2' } },
  });
  t.same(f.changed, ['xattrs']);
  t.match(f.explanation, /extended attributes: SELinux label system_u:object_r:etc_t:s0 → system_u:object_r:shadow_t:s0, user\.a removed, user\.b added/);
});

t.test('inode flags are explained by what they do', async (t) => {
  const f = one({ '/etc/motd': CONF }, { '/etc/motd': { ...CONF, flags: 'i' } });
  t.same(f.changed, ['flags']);
  t.match(f.explanation, /inode flags none → i \(i set: immutable: no one, root included, may change, rename or delete it until chattr -i; lsattr shows them/);
  const cleared = one({ '/var/log/x': { ...CONF, flags: 'a' } }, { '/var/log/x': CONF });
  t.match(cleared.explanation, /inode flags a → none \(a cleared \(was append-only\)/);
});

t.test('a new hard link of a watched file shows as its link count, with how to find it', async (t) => {
  const f = one({ '/usr/bin/su': { ...BIN, mode: '4755' } }, { '/usr/bin/su': { ...BIN, mode: '4755', nlink: 2 } });
  t.same(f.changed, ['nlink']);
  t.equal(f.severity, 'high', 'by the path');
  t.match(f.explanation, /hard links 1 → 2: another name for this file was made, possibly outside the watched folders \(find \/ -xdev -samefile \/usr\/bin\/su\)/);
  t.same(compare({ baseline: manifest({ '/d': DIR }), manifest: manifest({ '/d': { ...DIR, nlink: 3 } }), rules: shipped }).map((x) => x.changed), [], 'folders: link counts are subfolder counts, not compared');
});

t.test('device numbers of a device node', async (t) => {
  const dev: FileEntry = { type: 'other', mode: '0660', uid: 0, gid: 6, device: 'b 8:0', mtime: 1_700_000_000 };
  const f = one({ '/etc/disk': dev }, { '/etc/disk': { ...dev, device: 'c 1:1' } });
  t.same(f.changed, ['device']);
  t.match(f.explanation, /device b 8:0 → c 1:1/);
});

t.test('mtime alone is low/report by default, and a site rule can ignore it', async (t) => {
  const touched = { ...CONF, mtime: 1_800_000_000 };
  const f = one({ '/etc/ssh/sshd_config': CONF }, { '/etc/ssh/sshd_config': touched });
  t.same(f.changed, ['mtime']);
  t.equal(f.severity, 'low', 'even where content changes are critical');
  t.equal(f.action, 'report');
  t.match(f.explanation, /modification time 2023-11-14T22:13:20Z → 2027-01-15T08:00:00Z with the content unchanged: touched, or rewritten with the same bytes/);
  const site: RuleSet = { ...shipped, policy: [...shipped.policy, { match: { kind: 'file', only: ['mtime'] }, severity: 'low', action: 'ignore' }] };
  t.equal(one({ '/etc/a': CONF }, { '/etc/a': touched }, site).action, 'ignore');

  const edited = one({ '/etc/ssh/sshd_config': CONF }, { '/etc/ssh/sshd_config': { ...CONF, size: 4, sha256: sha('a=2\n'), content: 'a=2\n', mtime: 1_800_000_000 } });
  t.same(edited.changed, ['sha256', 'content'], 'a content change explains its mtime: not listed');
  t.equal(edited.severity, 'critical');
  const chmodded = one({ '/etc/ssh/sshd_config': CONF }, { '/etc/ssh/sshd_config': { ...touched, mode: '0666' } });
  t.same(chmodded.changed, ['mode', 'mtime'], 'with another change, both are listed');
  t.equal(chmodded.severity, 'critical', 'and the only: [mtime] rule does not apply');
  t.same(compare({ baseline: manifest({ '/etc/a': { ...CONF, mtime: undefined as unknown as number } }), manifest: manifest({ '/etc/a': touched }), rules: shipped }), [], 'a side without mtime compares none');
});

t.test('a rewrite with the same lines fits a lines expectation', async (t) => {
  const hosts: FileEntry = { ...CONF, content: '127.0.0.1 localhost\n', size: 20, sha256: sha('127.0.0.1 localhost\n') };
  const expectLines: RuleSet = { ...emptyRuleSet(), expect: [{ path: '/etc/hosts', lines: ['^127\\.0\\.0\\.1 '], why: 'test' }] };
  t.same(compare({ baseline: manifest({ '/etc/hosts': hosts }), manifest: manifest({ '/etc/hosts': { ...hosts, mtime: 1_800_000_000 } }), rules: expectLines }), []);
});
