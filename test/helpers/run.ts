import { spawn } from 'node:child_process';
import { driftBin } from './paths.js';

/** The outcome of a command: exit code and its output (execa's result shape). */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run a command to completion and return its result; never throws for a non-zero exit. */
export function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; input?: string } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: opts.env ?? process.env, cwd: opts.cwd, stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (b: Buffer) => out.push(b));
    child.stderr?.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({
      code: code ?? (signal ? 128 : 255),
      stdout: Buffer.concat(out).toString('utf8'),
      stderr: Buffer.concat(err).toString('utf8'),
    }));
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/** Run the drift CLI as a user would (`node bin/drift.js ...`), without colour. */
export function drift(args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; input?: string } = {}): Promise<RunResult> {
  return run(process.execPath, [driftBin, ...args], { ...opts, env: { ...process.env, NO_COLOR: '1', ...opts.env } });
}

/** Run a command and fail loudly when it does not exit 0 (for test setup steps). */
export async function must(cmd: string, args: string[], opts: { cwd?: string; input?: string } = {}): Promise<string> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}
