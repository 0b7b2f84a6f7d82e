/**
 * `npm run package`: the agent's artefacts for linux-x64.
 *
 * - `drift`: a Node.js single executable application. esbuild bundles the host entry
 *   (agent/cli/executable.ts: the host commands, never the collector's modules) into one
 *   CommonJS script, each command module wrapped so that it is evaluated only when its
 *   command runs; `node --experimental-sea-config` turns it into a blob with V8's code cache
 *   of that script; postject injects the blob into a stripped copy of this node binary. The
 *   worker threads' entry (agent/workers.ts) is bundled apart and embedded as an asset.
 * - `rules/`: the shipped rules, beside the executable (the .deb puts both under /usr).
 * - `drift-agent_<version>_amd64.deb`, built with `dpkg-deb --root-owner-group`.
 *
 * Native addons: a package listed in NATIVE is left out of the bundle, copied with its
 * prebuilt platform packages to `<lib>/node_modules/` (`/usr/lib/drift/node_modules` in
 * the .deb, `out/node_modules` beside `out/drift`) and required from there at run time:
 * the bundle's banner points `require` at that folder when it runs as the executable.
 *
 * Usage: node dist/tools/package.js [--out DIR] [--cache DIR]
 *   --out DIR    where the artefacts go (default out/)
 *   --cache DIR  build into DIR/<key>, keyed by the sha256 of every input, and reuse a
 *                finished build with the same key; prints that folder. With --out too,
 *                the artefacts are then copied there.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(join(ROOT, 'package.json'));

/** npm packages with a native addon the host side needs: `@napi-rs/xattr` reads capabilities, ACLs and xattrs. */
export const NATIVE: readonly string[] = ['@napi-rs/xattr'];

/** Optional native parts of bundled packages, never shipped: ssh2's sshcrypto.node and cpu-features. */
export const OPTIONAL_NATIVE: readonly string[] = ['cpu-features', '*.node'];

/** The fuse postject flips so that node runs the injected blob (Node's documented value). */
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';
const BUNDLE = 'drift.cjs';
/** The SEA asset of the worker threads' script (agent/bundle.ts reads it under this name). */
const WORKER_ASSET = 'drift-worker.cjs';
const PACKAGE = 'drift-agent';

/** Inputs whose change makes a new build: sources of the host side, rules, packaging, lock file, node itself. */
const INPUTS = ['agent', 'rules', 'packaging', 'tools', 'systemd/drift-agent.service', 'package.json', 'package-lock.json', 'README.md'];

interface Options { out: string | null; cache: string | null }

function parseArgs(argv: string[]): Options {
  const opts: Options = { out: null, cache: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    if ((a === '--out' || a === '--cache') && v !== undefined) {
      opts[a === '--out' ? 'out' : 'cache'] = resolve(v);
      i++;
    } else {
      throw new Error(`unknown argument ${JSON.stringify(a)} (usage: package.js [--out DIR] [--cache DIR])`);
    }
  }
  if (opts.out === null && opts.cache === null) opts.out = join(ROOT, 'out');
  return opts;
}

function filesUnder(path: string): string[] {
  if (!existsSync(path)) return [];
  if (!statSync(path).isDirectory()) return [path];
  const out: string[] = [];
  for (const name of readdirSync(path).sort()) out.push(...filesUnder(join(path, name)));
  return out;
}

/** The cache key: sha256 over every input file's path and bytes, the node binary's version and the NATIVE list. */
export function buildKey(): string {
  const h = createHash('sha256');
  h.update(`node ${process.version} ${process.arch}\nnative ${NATIVE.join(',')}\n`);
  for (const input of INPUTS) {
    for (const file of filesUnder(join(ROOT, input))) {
      h.update(`${relative(ROOT, file)}\0`);
      h.update(readFileSync(file));
      h.update('\0');
    }
  }
  return h.digest('hex').slice(0, 32);
}

function run(cmd: string, args: string[], cwd = ROOT): void {
  execFileSync(cmd, args, { cwd, stdio: ['ignore', 'inherit', 'inherit'] });
}

/** Copy a native package and the prebuilt platform packages it may load into `dest/node_modules`. */
function copyNative(name: string, dest: string): void {
  const dir = dirname(require.resolve(`${name}/package.json`));
  cpSync(dir, join(dest, 'node_modules', name), { recursive: true, dereference: true });
  const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { optionalDependencies?: Record<string, string> };
  for (const dep of Object.keys(manifest.optionalDependencies ?? {})) {
    let depDir: string;
    try {
      depDir = dirname(require.resolve(`${dep}/package.json`));
    } catch {
      continue; // a platform package for another system: not installed here
    }
    cpSync(depDir, join(dest, 'node_modules', dep), { recursive: true, dereference: true });
  }
}

/**
 * The banner of the bundle. In the executable, `require` only knows node's built-in
 * modules; the packages left out of the bundle (NATIVE) are required from the folder of
 * files shipped beside it: `../lib/drift` of the executable's folder, else its own folder.
 */
const BANNER = `var require = (function (r) {
  try { if (!r('node:sea').isSea()) return r; } catch (e) { return r; }
  var path = r('node:path'), fs = r('node:fs'), bin = path.dirname(process.execPath);
  var fhs = path.join(bin, '..', 'lib', 'drift');
  var lib = fs.existsSync(path.join(fhs, 'rules')) ? fhs : bin;
  return r('node:module').createRequire(path.join(lib, 'drift.cjs'));
})(require);`;

/** The CLI's script and the worker threads' script, both CommonJS. */
interface Scripts { main: string; worker: string }

async function bundle(work: string): Promise<Scripts> {
  const esbuild = await import('esbuild');
  await esbuild.build({
    entryPoints: {
      [BUNDLE.replace(/\.cjs$/, '')]: join(ROOT, 'dist', 'agent', 'cli', 'executable.js'),
      [WORKER_ASSET.replace(/\.cjs$/, '')]: join(ROOT, 'dist', 'agent', 'workers.js'),
    },
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    outdir: work,
    outExtension: { '.js': '.cjs' },
    // ssh2 (drift scan --ssh) tries its native crypto binding and cpu-features inside try/catch and
    // falls back to node's crypto: left out of the bundle, they are simply not found at run time.
    external: [...NATIVE, ...OPTIONAL_NATIVE],
    minify: true,
    keepNames: true,
    legalComments: 'eof',
    banner: { js: BANNER },
    // import.meta.url is only read under an npm install (module files on disk); the
    // executable asks agent/bundle.ts instead.
    logOverride: { 'empty-import-meta': 'silent' },
    logLevel: 'warning',
  });
  return { main: join(work, BUNDLE), worker: join(work, WORKER_ASSET) };
}

function executable(work: string, scripts: Scripts): string {
  const blob = join(work, 'sea-prep.blob');
  writeFileSync(join(work, 'sea-config.json'), JSON.stringify({
    main: scripts.main,
    output: blob,
    disableExperimentalSEAWarning: true,
    // V8's code cache of the main script: each start deserialises its top level instead of
    // compiling it.
    useCodeCache: true,
    assets: { [WORKER_ASSET]: scripts.worker },
  }));
  run(process.execPath, ['--experimental-sea-config', join(work, 'sea-config.json')], work);
  const exe = join(work, 'drift');
  copyFileSync(process.execPath, exe);
  chmodSync(exe, 0o755);
  // node's debug symbols are most of its size; a SEA must be stripped before injection.
  run('strip', ['--strip-all', exe]);
  return exe;
}

async function inject(exe: string, blob: string): Promise<void> {
  const postject = require('postject') as { inject: (file: string, name: string, data: Buffer, opts: { sentinelFuse: string }) => Promise<void> };
  await postject.inject(exe, 'NODE_SEA_BLOB', readFileSync(blob), { sentinelFuse: SEA_FUSE });
}

function install(src: string, dest: string, mode: number): void {
  mkdirSync(dirname(dest), { recursive: true });
  copyFileSync(src, dest);
  chmodSync(dest, mode);
}

function deb(work: string, exe: string, version: string, dest: string): string {
  const stage = join(work, 'deb');
  rmSync(stage, { recursive: true, force: true });
  const pkg = join(ROOT, 'packaging', 'deb');
  install(exe, join(stage, 'usr/bin/drift'), 0o755);
  for (const f of readdirSync(join(ROOT, 'rules')).filter((n) => /\.ya?ml$/.test(n)).sort()) {
    install(join(ROOT, 'rules', f), join(stage, 'usr/lib/drift/rules', f), 0o644);
  }
  for (const name of NATIVE) copyNative(name, join(stage, 'usr/lib/drift'));
  install(join(ROOT, 'systemd', 'drift-agent.service'), join(stage, 'lib/systemd/system/drift-agent.service'), 0o644);
  install(join(pkg, 'agent.yaml'), join(stage, 'etc/drift/agent.yaml'), 0o644);
  const doc = join(stage, 'usr/share/doc', PACKAGE);
  install(join(pkg, 'copyright'), join(doc, 'copyright'), 0o644);
  writeFileSync(join(doc, 'README.rules.md.gz'), gzipSync(readFileSync(join(ROOT, 'rules', 'README.md')), { level: 9 }));
  const date = new Date(Number(process.env['SOURCE_DATE_EPOCH'] ?? 1_764_547_200) * 1000).toUTCString().replace('GMT', '+0000');
  writeFileSync(join(doc, 'changelog.gz'), gzipSync(
    `${PACKAGE} (${version}) unstable; urgency=medium\n\n  * drift ${version}: the agent as a single executable.\n\n -- drift maintainers <drift@example.org>  ${date}\n`,
    { level: 9 },
  ));
  install(join(pkg, 'drift.1'), join(stage, 'usr/share/man/man1/drift.1'), 0o644);
  writeFileSync(join(stage, 'usr/share/man/man1/drift.1.gz'), gzipSync(readFileSync(join(stage, 'usr/share/man/man1/drift.1')), { level: 9 }));
  rmSync(join(stage, 'usr/share/man/man1/drift.1'));
  install(join(pkg, 'lintian-overrides'), join(stage, 'usr/share/lintian/overrides', PACKAGE), 0o644);
  for (const d of filesUnder(stage)) chmodSync(dirname(d), 0o755);

  const control = join(stage, 'DEBIAN');
  mkdirSync(control, { recursive: true });
  for (const s of ['postinst', 'prerm', 'postrm']) install(join(pkg, s), join(control, s), 0o755);
  writeFileSync(join(control, 'conffiles'), '/etc/drift/agent.yaml\n');
  const files = filesUnder(stage).filter((f) => !f.startsWith(control + '/'));
  const sums = files.filter((f) => !relative(stage, f).startsWith('etc/'))
    .map((f) => `${createHash('md5').update(readFileSync(f)).digest('hex')}  ${relative(stage, f)}\n`).join('');
  writeFileSync(join(control, 'md5sums'), sums);
  const kib = Math.ceil(files.reduce((n, f) => n + statSync(f).size, 0) / 1024);
  writeFileSync(join(control, 'control'), [
    `Package: ${PACKAGE}`,
    `Version: ${version}`,
    'Architecture: amd64',
    'Maintainer: drift maintainers <drift@example.org>',
    `Installed-Size: ${kib}`,
    'Depends: libc6 (>= 2.28), libgcc-s1, libstdc++6',
    'Section: admin',
    'Priority: optional',
    'Homepage: https://github.com/drift/drift',
    'Description: configuration-drift agent for immutable servers',
    ' drift records the manifest of an image at bake time (packages, watched files,',
    ' processes, listening ports) and, on every server started from it, reports the',
    ' same manifest to a drift collector, which explains each difference and flags',
    ' hosts for replacement. drift never changes a host.',
    ' .',
    ' This package carries the host commands (agent, baseline, scan, keygen, rules,',
    ' verify-packages) as one executable with Node.js built in, the shipped rules',
    ' and the hardened drift-agent.service.',
    '',
  ].join('\n'));
  for (const f of readdirSync(control)) chmodSync(join(control, f), ['postinst', 'prerm', 'postrm'].includes(f) ? 0o755 : 0o644);
  const out = join(dest, `${PACKAGE}_${version}_amd64.deb`);
  run('dpkg-deb', ['--root-owner-group', '-Zgzip', '--build', stage, out]);
  return out;
}

/** Build every artefact into `dest`, renamed into place whole once complete (`replace`: over an older one). */
async function build(dest: string, replace: boolean): Promise<void> {
  if (process.platform !== 'linux' || process.arch !== 'x64') throw new Error(`drift packages for linux-x64 only; this is ${process.platform}-${process.arch}`);
  const version = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  const work = `${dest}.work-${process.pid}`;
  const ready = `${dest}.ready-${process.pid}`;
  try {
    rmSync(work, { recursive: true, force: true });
    mkdirSync(work, { recursive: true });
    const exe = executable(work, await bundle(work));
    await inject(exe, join(work, 'sea-prep.blob'));
    const check = execFileSync(exe, ['--version'], { encoding: 'utf8' }).trim();
    if (check !== version) throw new Error(`the executable says ${JSON.stringify(check)} to --version, not ${version}`);
    mkdirSync(ready, { recursive: true });
    copyFileSync(exe, join(ready, 'drift'));
    chmodSync(join(ready, 'drift'), 0o755);
    cpSync(join(ROOT, 'rules'), join(ready, 'rules'), { recursive: true });
    for (const name of NATIVE) copyNative(name, ready);
    deb(work, exe, version, ready);
  } catch (err) {
    rmSync(ready, { recursive: true, force: true });
    throw err;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  if (replace) rmSync(dest, { recursive: true, force: true });
  try {
    renameSync(ready, dest);
  } catch (err) {
    // Another build of the same key finished first: its result is as good as ours.
    rmSync(ready, { recursive: true, force: true });
    if (!existsSync(dest)) throw err;
  }
}

/** Keep the newest KEEP builds of a cache folder (each is ~200 MB); unfinished ones of dead builders go too. */
const KEEP = 4;
function prune(cache: string, keep: string): void {
  const builds = readdirSync(cache)
    .filter((n) => /^[0-9a-f]{32}$/.test(n) && join(cache, n) !== keep)
    .map((n) => ({ path: join(cache, n), mtime: statSync(join(cache, n)).mtimeMs }))
    .sort((a, b) => b.mtime - a.mtime);
  for (const old of builds.slice(KEEP - 1)) rmSync(old.path, { recursive: true, force: true });
}

async function packageMain(argv: string[]): Promise<void> {
  const opts = parseArgs(argv);
  let built: string;
  if (opts.cache !== null) {
    built = join(opts.cache, buildKey());
    // A finished build is renamed into place whole: its folder existing means it is complete.
    if (!existsSync(built)) {
      mkdirSync(opts.cache, { recursive: true });
      await build(built, false);
      prune(opts.cache, built);
    }
    process.stdout.write(`${built}\n`);
    if (opts.out !== null) {
      rmSync(opts.out, { recursive: true, force: true });
      cpSync(built, opts.out, { recursive: true });
    }
  } else {
    built = opts.out as string;
    await build(built, true);
  }
  for (const f of readdirSync(opts.out ?? built)) process.stderr.write(`package: ${join(opts.out ?? built, f)}\n`);
}

packageMain(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`package: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 2;
});
