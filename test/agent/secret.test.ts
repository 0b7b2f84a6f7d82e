import t from 'tap';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readSecretFile } from '../../agent/secret.js';
import { readSecret } from '../../server/config.js';

const dir = mkdtempSync(join(tmpdir(), 'drift-secret-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, text: string, mode = 0o600): string => {
  const p = join(dir, name);
  writeFileSync(p, text);
  chmodSync(p, mode);
  return p;
};

t.test('one reader for agent and collector: trimmed, one word, warns when others may read', async (t) => {
  const warnings: string[] = [];
  t.equal(await readSecretFile(file('ok', ' s3cret-s3cret-s3cret \n'), { warn: (m) => warnings.push(m) }), 's3cret-s3cret-s3cret');
  t.same(warnings, []);
  await readSecretFile(file('open', 's3cret\n', 0o644), { flag: '--enroll-secret-file', warn: (m) => warnings.push(m) });
  t.match(warnings[0], /--enroll-secret-file .*open is readable by group or others \(mode 0644\); chmod 600 it/);
  t.equal(await readSecret(file('srv', 'sixteen-chars-at-least\n'), '--admin-token-file'), 'sixteen-chars-at-least');
  await t.rejects(readSecret(file('short', 'short\n'), '--admin-token-file'), { code: 'DRIFT_ERR_CONFIG', message: /holds a secret of 5 characters; use at least 16/ });
  await t.rejects(readSecretFile(file('empty', '\n')), { code: 'DRIFT_ERR_CONFIG', message: /is empty/ });
  await t.rejects(readSecretFile(file('two', 'a b\n')), { message: /more than one word/ });
  await t.rejects(readSecretFile(join(dir, 'missing'), { flag: '--enroll-secret-file' }), { code: 'DRIFT_ERR_CONFIG', message: /cannot read --enroll-secret-file .*missing: ENOENT; create it/ });
});

t.test('hostile paths: a huge file, a device, a FIFO are refused without reading them whole or hanging', async (t) => {
  await t.rejects(readSecretFile(file('huge', 'x'.repeat(1 << 20))), { message: /larger than 4096 bytes/ });
  await t.rejects(readSecretFile('/dev/zero'), { message: /\/dev\/zero is not a regular file/ });
  const fifo = join(dir, 'fifo');
  execFileSync('mkfifo', [fifo]);
  await t.rejects(readSecretFile(fifo), { message: /fifo is not a regular file/ });
  await t.rejects(readSecretFile(dir), { message: /not a regular file|EISDIR/ });
});
