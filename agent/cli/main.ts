import { Command, CommanderError } from 'commander';
import { DriftError } from '../protocol/errors.js';
import { VERSION } from '../version.js';
import { takeExitCode } from './exit.js';
import { visibleLines } from './format/common.js';

/**
 * Each subcommand lives in `commands/<name>.ts` and exports `register(program)`,
 * which adds the command with its options and `--help` text. Handlers are thin:
 * parse flags, call the library, format, and set the exit code through `exit()`.
 */
export type Register = (program: Command) => void;

/** The commands that run on a host. None of them loads the collector's modules. */
export async function hostCommands(): Promise<Register[]> {
  const mods = await Promise.all([
    import('./commands/agent.js'),
    import('./commands/baseline.js'),
    import('./commands/collect.js'),
    import('./commands/scan.js'),
    import('./commands/keygen.js'),
    import('./commands/rules.js'),
    import('./commands/verify-packages.js'),
    import('./commands/pins.js'),
    import('./commands/actions.js'),
    import('./commands/hosts.js'),
  ]);
  return mods.map((m) => m.register);
}

/**
 * Run `drift ARGV` with the given commands (the host's by default; the collector's
 * entry point adds its own) and return the exit code.
 */
export async function main(argv: string[], registers?: Register[]): Promise<number> {
  // `drift --version` answers before any command module (zod, yaml, the collectors) loads:
  // health checks and configuration management call it often.
  if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-V')) {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const program = new Command('drift')
    .description('Configuration-drift detector for immutable infrastructure: baseline an image, watch every host, replace what drifted.')
    .version(VERSION, '-V, --version', 'print the drift version')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    // Usage errors quote what was typed (a file name, an option): escaped for the terminal.
    .configureOutput({ writeErr: (s) => process.stderr.write(visibleLines(s)) });
  for (const register of registers ?? await hostCommands()) register(program);
  for (const cmd of program.commands) cmd.exitOverride();

  takeExitCode();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return takeExitCode();
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version exit 0; usage errors were already printed by commander.
      return err.exitCode === 0 ? 0 : 2;
    }
    if (err instanceof DriftError) {
      process.stderr.write(`drift: ${visibleLines(err.message)}\n`);
      return err.exitCode;
    }
    process.stderr.write(`drift: ${visibleLines(err instanceof Error ? err.message : String(err))}\n`);
    return 2;
  }
}
