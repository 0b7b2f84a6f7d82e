import t from 'tap';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { driftBin } from '../helpers/paths.js';
import { run } from '../helpers/run.js';

// bin/drift.js is what `npm install` links as `drift`: it must start where /usr/bin/env
// has no -S (BusyBox, Alpine), and hand node the young-generation cap.
t.test('the launcher needs only /bin/sh, not env -S', async (t) => {
  const text = readFileSync(driftBin, 'utf8');
  t.ok(text.startsWith('#!/bin/sh\n'), 'a plain /bin/sh shebang');
  t.notMatch(text.split('\n')[0] ?? '', /env -S/);
});

t.test('started as a program, node runs it with --max-semi-space-size=2', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'drift-launcher-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'argv.cjs'), "process.stderr.write('execArgv=' + JSON.stringify(process.execArgv) + '\\n');\n");
  const r = await run(driftBin, ['--version'], { env: { ...process.env, NODE_OPTIONS: `--require ${join(dir, 'argv.cjs')}` } });
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /^\d+\.\d+\.\d+\n$/);
  t.match(r.stderr, /execArgv=\[[^\]]*"--max-semi-space-size=2"/);
});

t.test('BusyBox sh starts it (as on Alpine)', { skip: existsSync('/usr/bin/busybox') || existsSync('/bin/busybox') ? false : 'busybox is not installed (test/setup.sh installs it)' }, async (t) => {
  const r = await run('busybox', ['sh', driftBin, '--version']);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /^\d+\.\d+\.\d+\n$/);
  const help = await run('busybox', ['sh', driftBin, 'scan', '--help']);
  t.equal(help.code, 0, help.stderr);
  t.match(help.stdout, /Usage: drift scan/);
});

t.test('node bin/drift.js works too', async (t) => {
  const r = await run(process.execPath, [driftBin, '--version']);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /^\d+\.\d+\.\d+\n$/);
});
