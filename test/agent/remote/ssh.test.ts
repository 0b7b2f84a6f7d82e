import t from 'tap';
import { createHmac, generateKeyPairSync, randomBytes } from 'node:crypto';
import { parseSshTarget, remoteCommands, shellQuote, parseRemoteManifest } from '../../../agent/remote/ssh.js';
import { checkHostKey, fingerprintOf, hostField, keyTypeOf, knownHostsLine } from '../../../agent/remote/known-hosts.js';
import { DriftError } from '../../../agent/protocol/errors.js';
import { gzipSync } from 'node:zlib';

/** An ed25519 public key blob in SSH wire format (string "ssh-ed25519", string key). */
function blob(): Buffer {
  const der = generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'der' });
  const raw = der.subarray(der.length - 32);
  const str = (b: Buffer): Buffer => Buffer.concat([Buffer.from([0, 0, 0, b.length]), b]);
  return Buffer.concat([str(Buffer.from('ssh-ed25519')), str(raw)]);
}

t.test('targets: [user@]host[:port] and ssh:// forms; anything else is a usage error', async (t) => {
  t.same(parseSshTarget('web-1'), { host: 'web-1' });
  t.same(parseSshTarget('admin@web-1.internal:2222'), { user: 'admin', host: 'web-1.internal', port: 2222 });
  t.same(parseSshTarget('ssh://admin@10.0.1.23:22'), { user: 'admin', host: '10.0.1.23', port: 22 });
  t.same(parseSshTarget('ssh://admin@[::1]:2222'), { user: 'admin', host: '::1', port: 2222 });
  t.same(parseSshTarget('[fe80::1]'), { host: 'fe80::1' });
  for (const bad of ['', 'web-1:0', 'web-1:65536', '-oProxyCommand=x', 'a b', 'root@host;rm', 'root@', '@host', 'ro ot@host', 'host:22:33', 'x'.repeat(301), 'ssh://u@h/p', '`id`@h', '::1']) {
    let caught: unknown = null;
    try { parseSshTarget(bad); } catch (err) { caught = err; }
    t.ok(caught instanceof DriftError && caught.code === 'DRIFT_ERR_USAGE' && /\[USER@\]HOST\[:PORT\]/.test(caught.message), `refused: ${JSON.stringify(bad.slice(0, 40))}`);
  }
});

t.test('known_hosts: plain, [host]:port, hashed, patterns, negation, revoked, changed', async (t) => {
  const key = blob();
  const other = blob();
  const b64 = key.toString('base64');
  t.equal(keyTypeOf(key), 'ssh-ed25519');
  t.equal(keyTypeOf(Buffer.from([0, 0, 0, 200, 1])), null, 'a length past the blob is malformed');
  t.match(fingerprintOf(key), /^SHA256:[A-Za-z0-9+/]{43}$/);
  t.equal(hostField('h', 22), 'h');
  t.equal(hostField('h', 2222), '[h]:2222');
  t.equal(knownHostsLine('[h]:2222', key), `[h]:2222 ssh-ed25519 ${b64}\n`);

  t.same(checkHostKey(`# comment\nweb-1 ssh-ed25519 ${b64}\n`, 'web-1', 22, key), { kind: 'known', line: 2 });
  t.same(checkHostKey(`web-1 ssh-ed25519 ${b64}\n`, 'web-1', 2222, key), { kind: 'unknown' }, 'port 22 entries do not cover other ports');
  t.same(checkHostKey(`[web-1]:2222 ssh-ed25519 ${b64}\n`, 'web-1', 2222, key), { kind: 'known', line: 1 });
  t.same(checkHostKey(`web-*,!web-9 ssh-ed25519 ${b64}\n`, 'web-3', 22, key), { kind: 'known', line: 1 });
  t.same(checkHostKey(`web-*,!web-9 ssh-ed25519 ${b64}\n`, 'web-9', 22, key), { kind: 'unknown' }, 'negation wins');
  t.same(checkHostKey(`web-? ssh-ed25519 ${b64}\n`, 'WEB-3', 22, key), { kind: 'known', line: 1 }, 'host names are case-insensitive');
  const salt = randomBytes(20);
  const hashed = `|1|${salt.toString('base64')}|${createHmac('sha1', salt).update('[10.0.0.5]:2222').digest('base64')}`;
  t.same(checkHostKey(`${hashed} ssh-ed25519 ${b64}\n`, '10.0.0.5', 2222, key), { kind: 'known', line: 1 });
  t.same(checkHostKey(`${hashed} ssh-ed25519 ${b64}\n`, '10.0.0.6', 2222, key), { kind: 'unknown' });
  t.same(checkHostKey(`web-1 ssh-ed25519 ${other.toString('base64')}\n`, 'web-1', 22, key), { kind: 'changed', lines: [1] });
  t.same(checkHostKey(`web-1 ssh-ed25519 ${b64}\n@revoked * ssh-ed25519 ${b64}\n`, 'web-1', 22, key), { kind: 'revoked', line: 2 }, 'revoked wins over listed');
  t.same(checkHostKey(`@cert-authority * ssh-ed25519 ${b64}\n`, 'web-1', 22, key), { kind: 'unknown' }, 'CA lines are not host keys');
  // Hostile lines: overlong, garbage base64, a regex-looking pattern.
  t.same(checkHostKey(`${'a'.repeat(70000)} ssh-ed25519 ${b64}\nweb-1 x !!!\n(.*) ssh-ed25519 ${b64}\n`, 'web-1', 22, key), { kind: 'changed', lines: [2] });
});

t.test('remote commands are fixed; the drift path is one quoted word', async (t) => {
  t.same(remoteCommands(undefined, undefined), { version: 'drift --version', collect: 'drift collect --root / --scope - --gzip' });
  t.same(remoteCommands('/opt/drift/bin/drift', ['packages', 'files']), { version: `'/opt/drift/bin/drift' --version`, collect: `'/opt/drift/bin/drift' collect --root / --scope - --gzip --sections packages,files` });
  t.equal(shellQuote("a'; rm -rf / #"), `'a'\\''; rm -rf / #'`);
});

t.test('a remote manifest is bounded and checked', async (t) => {
  t.throws(() => parseRemoteManifest(Buffer.from('plain'), 'h'), /no gzip-compressed manifest/);
  t.throws(() => parseRemoteManifest(gzipSync('{'), 'h'), /not JSON/);
  t.throws(() => parseRemoteManifest(gzipSync('{"schema":"drift.manifest/v9"}'), 'h'), /does not read/);
});

t.test('--accept-new: concurrent trusts of one process all land in known_hosts, each once', async (t) => {
  const { mkdtempSync, readFileSync, rmSync, statSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { appendKnownHost } = await import('../../../agent/remote/ssh.js');
  const dir = mkdtempSync(join(tmpdir(), 'drift-kh-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'ssh', 'known_hosts');
  const lines = Array.from({ length: 20 }, (_, i) => knownHostsLine(`[10.0.0.${i}]:22${i}`, blob()));
  await Promise.all([...lines, lines[0] as string].map((line) => appendKnownHost(path, line)));
  const text = readFileSync(path, 'utf8');
  t.same(text.split('\n').filter(Boolean).sort(), lines.map((l) => l.trimEnd()).sort(), 'every host once, none lost');
  t.equal(statSync(path).mode & 0o777, 0o600);
});
