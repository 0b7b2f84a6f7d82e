import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { Worker, WorkerOptions } from 'node:worker_threads';

// Every start of the executable (`drift --version` too) evaluates this module: node's
// worker_threads module is loaded when the first worker starts, not here.
const requireBuiltin = createRequire('/');

/**
 * How this drift runs: from an npm install (one file per module under dist/) or as the
 * single executable (`npm run package`), whose modules are one script embedded in the
 * binary. The executable's entry calls `runBundled` before anything else; everything
 * that depends on where drift's own files are asks here.
 */
interface Bundled {
  /**
   * The embedded script of the worker threads (there is no module file to start), read
   * from the executable when the first worker starts: a command that starts none never
   * copies it out.
   */
  readonly workerSource: () => string;
  /** The folder of what ships beside the executable: `rules/` and native addons under `node_modules/`. */
  readonly libDir: string;
}

let bundled: Bundled | null = null;

/**
 * The name under which the executable embeds the script of its worker threads (a SEA
 * asset): agent/workers.ts and what it imports, not the whole CLI, so that each worker
 * compiles a few dozen KB instead of every command.
 */
export const WORKER_ASSET = 'drift-worker.cjs';

/**
 * The folder of what ships beside an executable at `execPath`: `../lib/drift` (the .deb's
 * `/usr/bin/drift` → `/usr/lib/drift`) when it exists, else the executable's own folder
 * (an unpacked build: `out/drift` beside `out/rules`).
 */
export function libDirOf(execPath: string): string {
  const bin = dirname(execPath);
  const fhs = join(bin, '..', 'lib', 'drift');
  return existsSync(join(fhs, 'rules')) ? fhs : bin;
}

/** Record that this process is the single executable, with a reader of its embedded worker script. */
export function runBundled(execPath: string, workerAsset: () => string): void {
  let source: string | null = null;
  bundled = { workerSource: () => (source ??= workerAsset()), libDir: libDirOf(execPath) };
}

/** The folder of files shipped with the executable, or null under an npm install. */
export function bundledLibDir(): string | null {
  return bundled?.libDir ?? null;
}

/**
 * Start a worker thread running the module at `moduleUrl` (a module that acts as a worker
 * when its `workerData` says so). In the executable there is no module file: the worker
 * runs the embedded worker script, whose entry imports every worker module.
 */
export function startWorker(moduleUrl: string, options: WorkerOptions): Worker {
  const threads = requireBuiltin('node:worker_threads') as typeof import('node:worker_threads');
  if (bundled !== null) return new threads.Worker(bundled.workerSource(), { ...options, eval: true });
  return new threads.Worker(new URL(moduleUrl), options);
}
