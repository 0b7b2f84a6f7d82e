import t from 'tap';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { run } from '../helpers/run.js';
import { driftBin } from '../helpers/paths.js';

// The host commands never load the collector's packages: run them with fastify and
// better-sqlite3 made unloadable, for `import` (a module resolve hook) and for
// `require` (a wrapped resolver), through the launcher a user runs.
const BLOCKED = '^(fastify|better-sqlite3|@fastify/[^/]+)(/|$)';

const dir = mkdtempSync(join(tmpdir(), 'drift-unloadable-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
writeFileSync(join(dir, 'hooks.mjs'), `
export async function resolve(specifier, context, next) {
  if (new RegExp(${JSON.stringify(BLOCKED)}).test(specifier)) throw new Error('drift test: ' + specifier + ' is unloadable here');
  return next(specifier, context);
}
`);
writeFileSync(join(dir, 'register.mjs'), `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(join(dir, 'hooks.mjs')).href)});\n`);
writeFileSync(join(dir, 'block.cjs'), `
const Module = require('node:module');
const original = Module._resolveFilename;
Module._resolveFilename = function (request, ...rest) {
  if (new RegExp(${JSON.stringify(BLOCKED)}).test(request)) throw new Error('drift test: ' + request + ' is unloadable here');
  return original.call(this, request, ...rest);
};
`);
const env = {
  ...process.env,
  NO_COLOR: '1',
  NODE_OPTIONS: `--require ${join(dir, 'block.cjs')} --import ${pathToFileURL(join(dir, 'register.mjs')).href}`,
};
// bin/drift.js as a program: /bin/sh re-executes it with node, NODE_OPTIONS passed on.
const drift = (args: string[]) => run(driftBin, args, { env });

t.test('the collector fails to start when its packages are unloadable (the block works)', async (t) => {
  const state = join(dir, 'server-state');
  writeFileSync(join(dir, 'secret'), 'enroll-secret-of-thirty-two-bytes-or-more\n');
  const r = await drift(['server', '--listen', '127.0.0.1:0', '--state-dir', state, '--enroll-secret-file', join(dir, 'secret'), '--admin-token-file', join(dir, 'secret')]);
  t.equal(r.code, 2, r.stderr);
  t.match(r.stderr, /(fastify|better-sqlite3) is unloadable here/);
});

for (const cmd of ['agent', 'scan', 'keygen']) {
  t.test(`drift ${cmd} --help runs without fastify and better-sqlite3`, async (t) => {
    const r = await drift([cmd, '--help']);
    t.equal(r.code, 0, r.stderr);
    t.match(r.stdout, new RegExp(`Usage: drift ${cmd}`));
    t.equal(r.stderr, '');
  });
}

t.test('a real drift baseline and drift scan run without fastify and better-sqlite3', async (t) => {
  const root = join(dir, 'root');
  mkdirSync(join(root, 'etc', 'ssh'), { recursive: true });
  writeFileSync(join(root, 'etc', 'ssh', 'sshd_config'), 'PermitRootLogin no\n');
  const state = join(dir, 'state');
  const base = join(dir, 'baseline.json');
  const b = await drift(['baseline', '--image-id', 'img-1', '--root', root, '--out', base, '--state-dir', state]);
  t.equal(b.code, 0, b.stderr);
  const clean = await drift(['scan', '--baseline', base, '--root', root, '--state-dir', state]);
  t.equal(clean.code, 0, clean.stderr);
  writeFileSync(join(root, 'etc', 'ssh', 'sshd_config'), 'PermitRootLogin yes\n');
  const drifted = await drift(['scan', '--baseline', base, '--root', root, '--state-dir', state, '--format', 'json']);
  t.equal(drifted.code, 1, drifted.stderr);
  t.match(drifted.stdout, /"key": "\/etc\/ssh\/sshd_config"/);
});
