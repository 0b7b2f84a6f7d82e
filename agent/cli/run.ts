import { visibleLines } from './format/visible.js';

/**
 * Run a `drift` entry point as a process: argv in, exit code out. Shared by the npm
 * launcher (bin/drift.js) and the single executable.
 */
export function runCli(main: (argv: string[]) => Promise<number>, argv: string[]): void {
  // A reader that went away (`drift scan | head`) is not an error worth a stack trace.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
  main(argv).then(
    (code) => { process.exitCode = code; },
    (err: unknown) => {
      // Messages quote file names, hostnames and rule text: escaped for the terminal.
      process.stderr.write(`drift: ${visibleLines(err instanceof Error ? err.message : String(err))}\n`);
      process.exitCode = 2;
    },
  );
}
