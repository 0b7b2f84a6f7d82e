import { Command, CommanderError } from 'commander';
import { DriftError } from '../../agent/protocol/errors.js';
import { VERSION } from '../../agent/version.js';

/**
 * Each subcommand lives in `commands/<name>.ts` and exports `register(program)`,
 * which adds the command with its options and `--help` text. Handlers are thin:
 * parse flags, call the library, format, and set the exit code through `exit()`.
 */
type Register = (program: Command) => void;

async function loadCommands(): Promise<Register[]> {
  const mods = await Promise.all([
    import('./commands/agent.js'),
    import('./commands/baseline.js'),
    import('./commands/scan.js'),
    import('./commands/server.js'),
    import('./commands/keygen.js'),
    import('./commands/rules.js'),
    import('./commands/verify-packages.js'),
  ]);
  return mods.map((m) => m.register);
}

export async function main(argv: string[]): Promise<number> {
  const program = new Command('drift')
    .description('Configuration-drift detector for immutable infrastructure: baseline an image, watch every host, replace what drifted.')
    .version(VERSION, '-V, --version', 'print the drift version')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  for (const register of await loadCommands()) register(program);
  for (const cmd of program.commands) cmd.exitOverride();

  let code = 0;
  setExit = (c: number) => { code = c; };
  try {
    await program.parseAsync(argv, { from: 'user' });
    return code;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version exit 0; usage errors were already printed by commander.
      return err.exitCode === 0 ? 0 : 2;
    }
    if (err instanceof DriftError) {
      process.stderr.write(`drift: ${err.message}\n`);
      return err.exitCode;
    }
    process.stderr.write(`drift: ${err instanceof Error ? err.message : String(err)}\n`);
    return 2;
  }
}

let setExit: (code: number) => void = () => undefined;

/** Set the process exit code from inside a command handler. */
export function exit(code: number): void { setExit(code); }
