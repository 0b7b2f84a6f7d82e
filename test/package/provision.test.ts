import t from 'tap';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCollector } from '../e2e/helpers.js';
import { debianChroot, packaged, type Artefacts, type Chroot } from '../helpers/package.js';
import { repoRoot } from '../helpers/paths.js';
import { must, run } from '../helpers/run.js';

// The Packer provisioner (examples/packer/provision.sh) run in a debootstrap root as a
// chroot builder runs it, pushing to a real collector on 127.0.0.1; then the executable's
// `drift agent --once` reporting that root to the same collector.
const ENROLL = 'enroll-secret-for-the-bake-test';
const ADMIN = 'admin-token-for-the-bake-test';

let art: Artefacts;
let ch: Chroot;
let collector: Awaited<ReturnType<typeof startCollector>>;
const dir = mkdtempSync(join(tmpdir(), 'drift-bake-'));

t.before(async () => {
  art = await packaged();
  ch = await debianChroot();
  collector = await startCollector(join(dir, 'collector.db'), { enrollSecret: ENROLL, adminToken: ADMIN });
});
t.teardown(async () => {
  await collector?.close();
  await ch?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

t.test('provision.sh installs the agent, baselines, signs, pushes, stamps and leaves the agent enabled', async (t) => {
  await must(art.exe, ['keygen', '--out', join(dir, 'bake')]);
  copyFileSync(art.deb, join(ch.root, 'tmp/drift-agent.deb'));
  copyFileSync(join(dir, 'bake.key'), join(ch.root, 'tmp/bake.key'));
  writeFileSync(join(ch.root, 'tmp/admin.token'), `${ADMIN}\n`, { mode: 0o600 });
  writeFileSync(join(ch.root, 'tmp/enroll-secret'), `${ENROLL}\n`, { mode: 0o600 });
  copyFileSync(join(repoRoot, 'examples/packer/provision.sh'), join(ch.root, 'tmp/provision.sh'));
  const r = await ch.run('sh', ['/tmp/provision.sh'], {
    env: {
      DRIFT_DEB: '/tmp/drift-agent.deb', DRIFT_IMAGE_ID: 'web-debian12-test', DRIFT_IMAGE_VERSION: '42',
      DRIFT_SIGN_KEY: '/tmp/bake.key', DRIFT_COLLECTOR: collector.url, DRIFT_ADMIN_TOKEN_FILE: '/tmp/admin.token',
      DRIFT_ENROLL_SECRET_FILE: '/tmp/enroll-secret', DRIFT_ROLE: 'web',
    },
  });
  t.equal(r.code, 0, r.stdout + r.stderr);
  t.match(r.stderr, /image build detected: drift-agent.service enabled, not started/);
  t.match(r.stderr, /drift provision: image web-debian12-test baselined/);

  const stored = collector.store.getBaseline('web-debian12-test');
  t.ok(stored, 'the collector holds the pushed baseline');
  // The collector here trusts no key, so it records the signature as unverified (keyId null); the baseline carries it.
  t.match(stored?.baseline.signature, { alg: 'ed25519', keyId: /^[0-9a-f]{16}$/ }, 'signed');
  const stamp = JSON.parse(readFileSync(join(ch.root, 'etc/drift/image.json'), 'utf8')) as { id: string; version: string; baselineDigest: string };
  t.same({ id: stamp.id, version: stamp.version }, { id: 'web-debian12-test', version: '42' });
  t.equal(stamp.baselineDigest, stored?.digest, 'the image is stamped with the pushed baseline');
  t.ok(existsSync(join(ch.root, 'etc/drift/baseline.json')));
  t.match(readFileSync(join(ch.root, 'etc/drift/agent.yaml'), 'utf8'), new RegExp(`collector: ${collector.url}\\nenroll-secret-file: /etc/drift/enroll-secret\\nrole: web`));
  t.equal(statSync(join(ch.root, 'etc/drift/enroll-secret')).mode & 0o777, 0o600);
  t.equal(readlinkSync(join(ch.root, 'etc/systemd/system/multi-user.target.wants/drift-agent.service')), '/lib/systemd/system/drift-agent.service');
  t.notOk(existsSync(join(ch.root, 'tmp/bake.key')), 'the signing key does not stay in the image');
  t.notOk(existsSync(join(ch.root, 'tmp/admin.token')), 'the admin token does not stay in the image');
  t.notOk(existsSync(join(ch.root, 'usr/sbin/policy-rc.d')), 'policy-rc.d removed again');
  t.notOk(existsSync(join(ch.root, 'var/lib/drift/node-key')), 'no node key baked in');
});

t.test('provision.sh refuses to run without its settings, saying which', async (t) => {
  const r = await ch.run('sh', ['/tmp/provision.sh'], { env: { DRIFT_DEB: '/tmp/drift-agent.deb' } });
  t.not(r.code, 0);
  t.match(r.stderr, /DRIFT_IMAGE_ID/);
});

t.test('drift agent --once from the executable reports the baked root to a real collector', async (t) => {
  const secret = join(dir, 'enroll-secret');
  writeFileSync(secret, `${ENROLL}\n`, { mode: 0o600 });
  // The first boot of an instance: systemd gives it its machine-id.
  writeFileSync(join(ch.root, 'etc/machine-id'), '0123456789abcdef0123456789abcdef\n');
  const before = collector.received.length;
  const r = await run(art.exe, ['agent', '--once', '--collector', collector.url, '--enroll-secret-file', secret, '--root', ch.root, '--state-dir', join(dir, 'agent-state'), '--role', 'web']);
  t.equal(r.code, 0, r.stderr);
  const got = collector.received.slice(before);
  t.equal(got.length, 1, 'one report');
  t.equal(got[0]?.manifest, true, 'the first report carries the manifest');
  const hosts = collector.store.listHosts().filter((h) => h.imageId === 'web-debian12-test');
  t.equal(hosts.length, 1, 'the collector knows the host, of the baked image (from its stamp)');
});
