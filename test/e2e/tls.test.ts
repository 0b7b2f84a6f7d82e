import t from 'tap';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { drift, must } from '../helpers/run.js';
import { exited, makeRoot, spawnAgent, startServer } from './helpers.js';

/**
 * TLS as an operator meets it: `drift server` with a certificate made by openssl for
 * 127.0.0.1, signed by a CA this machine does not trust. Every command says
 * "certificate not trusted; pass --ca-file" (not "is drift server running"), the agent
 * counts it as a configuration error, and --ca-file makes each of them work.
 */

const dir = await mkdtemp(join(tmpdir(), 'drift-tls-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));
const ca = join(dir, 'ca.pem');
const caKey = join(dir, 'ca.key');
const cert = join(dir, 'server.pem');
const key = join(dir, 'server.key');
await must('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', caKey, '-out', ca, '-days', '2', '-subj', '/CN=drift test CA']);
await must('openssl', ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', join(dir, 'server.csr'), '-subj', '/CN=127.0.0.1']);
await writeFile(join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1\n');
await must('openssl', ['x509', '-req', '-in', join(dir, 'server.csr'), '-CA', ca, '-CAkey', caKey, '-CAcreateserial', '-out', cert, '-days', '2', '-extfile', join(dir, 'ext.cnf')]);

const enroll = join(dir, 'enroll');
const admin = join(dir, 'admin');
await writeFile(enroll, 'enroll-secret-for-the-tls-test\n', { mode: 0o600 });
await writeFile(admin, 'admin-token-for-the-tls-test\n', { mode: 0o600 });
const server = await startServer(['--listen', '127.0.0.1:0', '--db', join(dir, 'drift.db'), '--enroll-secret-file', enroll, '--admin-token-file', admin, '--tls-cert', cert, '--tls-key', key]);
t.teardown(async () => { const done = exited(server.child); server.child.kill('SIGTERM'); await done; });
const adminArgs = ['--collector', server.url, '--admin-token-file', admin];
const NOT_TRUSTED = /certificate is not trusted \((UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)\); pass --ca-file/;

const keygen = await drift(['keygen', '--out', join(dir, 'bake')]);
if (keygen.code !== 0) throw new Error(keygen.stderr);
const image = await makeRoot(join(dir, 'image'), { machineId: 'e'.repeat(32), hostname: 'tls-1' });
const baselineFile = join(dir, 'baseline.json');
const baked = await drift(['baseline', '--root', image, '--image-id', 'img-tls', '--sign-key', join(dir, 'bake.key'), '--stamp', '--out', baselineFile, '--state-dir', join(dir, 'bake-state')]);
if (baked.code !== 0) throw new Error(baked.stderr);

t.test('operator commands: an untrusted certificate says so; --ca-file works', async (t) => {
  t.match(server.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  for (const args of [['hosts', ...adminArgs], ['scan', ...adminArgs, '--fleet'], ['baseline', 'push', baselineFile, ...adminArgs]]) {
    const r = await drift(args);
    t.equal(r.code, 2, `${args[0]}: exit 2`);
    t.match(r.stderr, NOT_TRUSTED, `${args[0]}: names the fix`);
    t.notMatch(r.stderr, /drift server. runs there/, `${args[0]}: not a reachability hint`);
  }
  const pushed = await drift(['baseline', 'push', baselineFile, ...adminArgs, '--ca-file', ca, '--pubkey', join(dir, 'bake.pub')]);
  t.equal(pushed.code, 0, pushed.stderr);
  const hosts = await drift(['hosts', ...adminArgs, '--ca-file', ca]);
  t.equal(hosts.code, 0, hosts.stderr);
  t.equal(hosts.stdout, `no hosts have reported to ${server.url} yet\n`);
  const missing = await drift(['hosts', ...adminArgs, '--ca-file', join(dir, 'nope.pem')]);
  t.equal(missing.code, 2);
  t.match(missing.stderr, /cannot read CA file .*nope\.pem: ENOENT/);
});

t.test('baseline --push takes --ca-file too', async (t) => {
  const r = await drift(['baseline', '--root', image, '--image-id', 'img-tls-2', '--out', join(dir, 'b2.json'), '--state-dir', join(dir, 'bake-state'), '--push', server.url, '--admin-token-file', admin, '--ca-file', ca]);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stderr, /pushed baseline of image img-tls-2/);
});

t.test('the agent: an untrusted certificate is fatal for --once (exit 2, error, metric); --ca-file delivers', async (t) => {
  const run = async (extra: string[], state: string): Promise<{ code: number | null; stderr: string }> => {
    const child = spawnAgent(['--collector', server.url, '--enroll-secret-file', enroll, '--root', image, '--state-dir', state, '--once', ...extra]);
    let stderr = '';
    child.stderr?.on('data', (b: Buffer) => { stderr += b.toString(); });
    const { code } = await exited(child);
    return { code, stderr };
  };
  const bad = await run([], join(dir, 'agent-bad'));
  t.equal(bad.code, 2);
  t.match(bad.stderr, /"level":"error","component":"agent","msg":"cannot enroll: POST https:\/\/127\.0\.0\.1:\d+\/v1\/enroll: the collector's TLS certificate is not trusted/);
  t.match(bad.stderr, /"fatal":true/);
  t.notMatch(bad.stderr, /delivered by the next run/);
  const good = await run(['--ca-file', ca], join(dir, 'agent-good'));
  t.equal(good.code, 0, good.stderr);
});
