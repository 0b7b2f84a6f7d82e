import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { copyRoot, debianMinbase } from './debian.js';
import { repoRoot } from './paths.js';
import { must, run, type RunResult } from './run.js';

/** Where package builds are kept between runs, keyed by the hash of their inputs. */
export const packageCache = join(process.env['DRIFT_TEST_CACHE'] ?? '/var/cache/drift-tests', 'package');

/** What `npm run package` makes: the executable, its rules beside it, and the .deb. */
export interface Artefacts { dir: string; exe: string; deb: string; version: string }

/**
 * Run the package build (tools/package.ts) with the shared cache: the first test file to
 * ask builds, the others (and later runs with the same sources) reuse its folder.
 */
export async function packaged(): Promise<Artefacts> {
  const out = await must(process.execPath, [join(repoRoot, 'dist', 'tools', 'package.js'), '--cache', packageCache]);
  const dir = out.trim().split('\n').pop() ?? '';
  const v = (JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version;
  const deb = join(dir, `drift-agent_${v}_amd64.deb`);
  if (!existsSync(deb)) throw new Error(`the package build printed ${JSON.stringify(dir)}, which holds no ${deb}`);
  return { dir, exe: join(dir, 'drift'), deb, version: v };
}

/** A copy of the debootstrap root with /proc mounted, removed (and unmounted) by `dispose`. */
export interface Chroot {
  root: string;
  /** Run a command inside the root (chroot), with a plain PATH. */
  run(cmd: string, args: string[], opts?: { env?: NodeJS.ProcessEnv }): Promise<RunResult>;
  dispose(): Promise<void>;
}

export async function debianChroot(): Promise<Chroot> {
  const root = mkdtempSync(join(tmpdir(), 'drift-chroot-'));
  await copyRoot(debianMinbase, root);
  await must('mount', ['-t', 'proc', 'proc', join(root, 'proc')]);
  const env = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8', NO_COLOR: '1' };
  return {
    root,
    run: (cmd, args, opts = {}) => run('chroot', [root, cmd, ...args], { env: { ...env, ...opts.env } }),
    async dispose() {
      await run('umount', [join(root, 'proc')]);
      // Only remove the copy once /proc is no longer mounted in it.
      if ((await run('mountpoint', ['-q', join(root, 'proc')])).code !== 0) rmSync(root, { recursive: true, force: true });
    },
  };
}
