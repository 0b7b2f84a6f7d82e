import t from 'tap';
import { generateKeyPairSync } from 'node:crypto';
import { baselineDigest, checkPackedBaseline, makeBaseline, packBaseline, packBaselineBytes } from '../../agent/baseline.js';
import { canonicalJson, sortedJson } from '../../agent/protocol/canonical.js';
import { BaselineSchema, type Baseline, type FileEntry, type Manifest } from '../../agent/protocol/manifest.js';
import { PackedSection } from '../../agent/protocol/packed.js';
import { checkBaseline, keyIdOf } from '../../agent/sign.js';
import { compareWithDrops } from '../../agent/engine/compare.js';
import { loadRuleSet } from '../../agent/rules/load.js';

function manifest(files: Record<string, FileEntry>): Manifest {
  return {
    schema: 'drift.manifest/v1',
    host: { hostname: 'img', machineId: '' },
    collectedAt: '2026-12-01T00:00:00.000Z',
    agent: { version: '0.1.0' },
    digests: { root: `sha256:${'0'.repeat(64)}` },
    packages: { 'dpkg:bash:amd64': { version: '5.2' } },
    files,
    unread: [],
  };
}

const FILES: Record<string, FileEntry> = {
  '/etc/hosts': { type: 'file', mode: '0644', uid: 0, gid: 0, size: 10, sha256: 'a'.repeat(64), mtime: 5, content: 'x "y" \\ \u00e9\n' },
  '/etc/b': { type: 'dir', mode: '0755', uid: 0, gid: 0 },
  '/usr/bin/ping': { type: 'file', mode: '0755', uid: 0, gid: 0, caps: 'cap_net_raw=ep', acl: ['user::rwx'], xattrs: { 'user.a': `sha256:${'b'.repeat(64)}` } },
};

t.test('a packed baseline read from its bytes has the digest, entries and signature of the parsed one', async (t) => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const baseline = makeBaseline(manifest(FILES), { id: 'img-1' }, privateKey);
  const keys = [{ key: publicKey, keyId: keyIdOf(publicKey), path: 'k.pub' }];
  for (const text of [canonicalJson(baseline), sortedJson(baseline), ` \n${JSON.stringify(baseline, null, '\t')}\r\n`]) {
    const packed = packBaselineBytes(Buffer.from(text));
    if (packed === null) { t.fail('refused a valid baseline'); continue; }
    t.ok(packed.files instanceof PackedSection);
    t.equal(baselineDigest(packed), baselineDigest(baseline));
    t.same(checkPackedBaseline(packed, keys, 'b.json'), checkBaseline(baseline, keys, 'b.json'));
    t.same(packed.files?.entry('/usr/bin/ping'), FILES['/usr/bin/ping']);
    t.equal(packed.files?.text('/etc/hosts'), canonicalJson(FILES['/etc/hosts']));
    t.same({ ...packed, files: undefined }, { ...BaselineSchema.parse(baseline), files: undefined });
  }
});

t.test('a packed baseline altered after signing fails its signature check', async (t) => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const baseline = makeBaseline(manifest(FILES), { id: 'img-1' }, privateKey);
  const altered = canonicalJson(baseline).replace('"mode":"0755","type":"dir"', '"mode":"0777","type":"dir"');
  const packed = packBaselineBytes(Buffer.from(altered));
  if (packed === null) throw new Error('refused');
  t.throws(() => checkPackedBaseline(packed, [{ key: publicKey, keyId: keyIdOf(publicKey), path: 'k.pub' }], 'b.json'), { code: 'DRIFT_ERR_SIGNATURE', message: /content was changed after signing/ });
});

t.test('bytes that are not a valid baseline are refused (the caller then names the problem)', async (t) => {
  const good = canonicalJson(makeBaseline(manifest(FILES), { id: 'img-1' }, null));
  const bad: Record<string, string> = {
    'not JSON': good.slice(0, -1),
    'trailing bytes': `${good}x`,
    'an array': `[${good}]`,
    'a bad entry': good.replace('"mode":"0755"', '"mode":"755"'),
    'an extra top-level brace': good.replace('{"agent"', '{{"agent"'),
    'a duplicate top-level member': good.replace('{"agent":', '{"collectedAt":"x","agent":'),
    'files not an object': good.replace(/"files":\{.*?\}\},"host"/, '"files":[],"host"'),
    'a __proto__ file': good.replace('"files":{', '"files":{"__proto__":{"type":"dir","mode":"0755","uid":0,"gid":0},'),
    'a key too long': good.replace('"files":{', `"files":{"/${'a'.repeat(5000)}":{"type":"dir","mode":"0755","uid":0,"gid":0},`),
    'a bad escape in a key': good.replace('"/etc/b"', '"/etc/\\q"'),
    'a missing schema': good.replace('"schema":"drift.manifest/v1",', ''),
    'a BOM': `\ufeff${good}`,
  };
  for (const [what, text] of Object.entries(bad)) {
    t.equal(packBaselineBytes(Buffer.from(text)), null, what);
  }
});

t.test('compare gives the same findings against a packed baseline as against the parsed one', async (t) => {
  const baseline: Baseline = makeBaseline(manifest(FILES), { id: 'img-1' }, null);
  const after: Record<string, FileEntry> = {
    '/etc/hosts': { ...(FILES['/etc/hosts'] as FileEntry), content: 'changed\n', sha256: 'c'.repeat(64) },
    '/usr/bin/ping': { ...(FILES['/usr/bin/ping'] as FileEntry), owner: 'dpkg:iputils-ping' },
    '/etc/new': { type: 'file', mode: '4755', uid: 0, gid: 0 },
  };
  const host = manifest(after);
  host.unread = [{ path: '/etc/b', reason: 'EACCES' }];
  const rules = await loadRuleSet([]);
  const parsed = compareWithDrops({ baseline, manifest: host, rules });
  const packed = compareWithDrops({ baseline: packBaseline(baseline), manifest: host, rules });
  t.same(packed, parsed);
  t.ok(parsed.findings.some((f) => f.key === '/etc/hosts' && f.change === 'modified'), 'a modified file is found');
  t.ok(parsed.findings.some((f) => f.key === '/etc/new' && f.change === 'added'), 'an added file is found');
  t.ok(parsed.findings.some((f) => f.kind === 'coverage' && f.key === '/etc/b'), 'an unread path is a coverage finding');
  t.notOk(parsed.findings.some((f) => f.key === '/usr/bin/ping'), 'an owner change alone is no file finding');
});
