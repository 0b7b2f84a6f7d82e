import t from 'tap';
import { generateKeyPairSync } from 'node:crypto';
import { signBaseline, verifyBaseline } from '../../agent/sign.js';
import { MANIFEST_SCHEMA, type Manifest } from '../../agent/protocol/manifest.js';

const manifest: Manifest = {
  schema: MANIFEST_SCHEMA,
  host: { hostname: 'bake', machineId: 'm' },
  collectedAt: '2026-01-01T00:00:00Z',
  agent: { version: '0' },
  digests: { root: `sha256:${'0'.repeat(64)}` },
  unread: [],
};

t.test('a signed baseline verifies with its key and no other', async (t) => {
  const a = generateKeyPairSync('ed25519');
  const b = generateKeyPairSync('ed25519');
  const signed = signBaseline(manifest, a.privateKey);
  t.equal(signed.signature?.alg, 'ed25519');
  t.equal(verifyBaseline(signed, [b.publicKey, a.publicKey], 'x'), signed.signature?.keyId);
  t.throws(() => verifyBaseline(signed, [b.publicKey], 'x'), /not among the trusted public keys/);
  const tampered = { ...signed, host: { ...signed.host, hostname: 'evil' } };
  t.throws(() => verifyBaseline(tampered, [a.publicKey], 'x'), /does not verify/);
  t.throws(() => verifyBaseline(manifest, [a.publicKey], 'x'), { name: 'DriftError', code: 'DRIFT_ERR_SIGNATURE', message: /not signed/ });
});
