import t from 'tap';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { run } from '../helpers/run.js';
import { driftBin } from '../helpers/paths.js';

// The host commands never load the collector's packages: run them with fastify and
// better-sqlite3 made unloadable, for `import` (a module resolve hook, on the specifier
// and on the file it resolves to) and for `require` (a wrapped resolver), through the
// launcher a user runs.
const BLOCKED = '^(fastify|better-sqlite3|@fastify/[^/]+)(/|$)';

const dir = mkdtempSync(join(tmpdir(), 'drift-unloadable-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

/** The environment of a drift run in which what `blocked` matches (a specifier or a resolved file URL) cannot load. */
function blocking(name: string, blocked: string): NodeJS.ProcessEnv {
  const hooks = join(dir, name);
  mkdirSync(hooks, { recursive: true });
  writeFileSync(join(hooks, 'hooks.mjs'), `
const blocked = new RegExp(${JSON.stringify(blocked)});
export async function resolve(specifier, context, next) {
  if (blocked.test(specifier)) throw new Error('drift test: ' + specifier + ' is unloadable here');
  const r = await next(specifier, context);
  if (blocked.test(r.url)) throw new Error('drift test: ' + r.url + ' is unloadable here');
  return r;
}
`);
  writeFileSync(join(hooks, 'register.mjs'), `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(join(hooks, 'hooks.mjs')).href)});\n`);
  writeFileSync(join(hooks, 'block.cjs'), `
const Module = require('node:module');
const original = Module._resolveFilename;
const blocked = new RegExp(${JSON.stringify(blocked)});
Module._resolveFilename = function (request, ...rest) {
  if (blocked.test(request)) throw new Error('drift test: ' + request + ' is unloadable here');
  const file = original.call(this, request, ...rest);
  if (blocked.test(file)) throw new Error('drift test: ' + file + ' is unloadable here');
  return file;
};
`);
  return {
    ...process.env,
    NO_COLOR: '1',
    NODE_OPTIONS: `--require ${join(hooks, 'block.cjs')} --import ${pathToFileURL(join(hooks, 'register.mjs')).href}`,
  };
}
const env = blocking('collector', BLOCKED);
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

// `drift NAME` loads the module of NAME alone: `drift agent` never evaluates the modules of
// the other commands (drift scan --ssh's ssh2, the AWS SDK of the sweeps, the collector's),
// and `drift --version` loads no command module, nor commander, zod or yaml.
t.test('drift --version loads no command module, commander, zod or yaml', async (t) => {
  const r = await run(driftBin, ['--version'], { env: blocking('version', '^(commander|zod|yaml)(/|$)|/(commander|zod|yaml)/|/cli/commands/|/server/cli/(server|audit)\\.js$') });
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /^\d+\.\d+\.\d+\n$/);
  t.equal(r.stderr, '');
});

t.test('drift agent loads no other command module', async (t) => {
  const others = '/cli/commands/(?!agent\\.js$)[^/]+\\.js$|/server/cli/(server|audit)\\.js$|^(ssh2|node-ssh|@aws-sdk/[^/]+)(/|$)|/node_modules/(ssh2|node-ssh|@aws-sdk)/';
  const env = blocking('agent', others);
  const help = await run(driftBin, ['agent', '--help'], { env });
  t.equal(help.code, 0, help.stderr);
  t.match(help.stdout, /Usage: drift agent/);
  t.equal(help.stderr, '');
  // A real run that stops at its configuration: every module of the agent's path is loaded by then.
  const once = await run(driftBin, ['agent', '--once', '--state-dir', join(dir, 'agent-state')], { env });
  t.equal(once.code, 2);
  t.notMatch(once.stderr, /unloadable here/);
  t.match(once.stderr, /collector/);
  // The check itself works: another command is unloadable in the same environment.
  const scan = await run(driftBin, ['scan', '--help'], { env });
  t.equal(scan.code, 2);
  t.match(scan.stderr, /unloadable here/);
});
