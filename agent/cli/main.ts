import type { Command } from 'commander';
import { DriftError } from '../protocol/errors.js';
import { VERSION } from '../version.js';
import { takeExitCode } from './exit.js';
import { visibleLines } from './format/visible.js';

/**
 * Each subcommand lives in `commands/<name>.ts` and exports `register(program)`,
 * which adds the command with its options and `--help` text. Handlers are thin:
 * parse flags, call the library, format, and set the exit code through `exit()`.
 */
export type Register = (program: Command) => void;

/**
 * A command module of the table: the top-level command names it registers and how to
 * load it. `drift NAME …` loads only the module of NAME, so `drift agent` never evaluates
 * the modules of `drift scan --ssh` (ssh2, the AWS SDK) or of the collector.
 */
export interface CommandModule {
  readonly names: readonly string[];
  readonly load: () => Promise<{ register: Register }>;
}

/** The commands that run on a host. None of them loads the collector's modules. */
export const HOST_COMMANDS: readonly CommandModule[] = [
  { names: ['agent'], load: () => import('./commands/agent.js') },
  { names: ['baseline'], load: () => import('./commands/baseline.js') },
  { names: ['collect'], load: () => import('./commands/collect.js') },
  { names: ['scan'], load: () => import('./commands/scan.js') },
  { names: ['keygen'], load: () => import('./commands/keygen.js') },
  { names: ['rules'], load: () => import('./commands/rules.js') },
  { names: ['verify-packages'], load: () => import('./commands/verify-packages.js') },
  { names: ['pins'], load: () => import('./commands/pins.js') },
  { names: ['actions', 'replace'], load: () => import('./commands/actions.js') },
  { names: ['hosts'], load: () => import('./commands/hosts.js') },
];

/**
 * The modules `drift ARGV` needs: the one registering the command named first (`drift
 * help NAME` too), else all of them, for the command list of `drift --help` and the
 * suggestions of an unknown command.
 */
export function modulesFor(argv: readonly string[], table: readonly CommandModule[]): readonly CommandModule[] {
  const name = argv[0] === 'help' ? argv[1] : argv[0];
  const mine = name === undefined ? undefined : table.find((m) => m.names.includes(name));
  return mine === undefined ? table : [mine];
}

/**
 * Run `drift ARGV` with the given commands (the host's by default; the collector's
 * entry point adds its own) and return the exit code.
 */
export async function main(argv: string[], table: readonly CommandModule[] = HOST_COMMANDS): Promise<number> {
  // `drift --version` answers before commander or any command module loads: health checks
  // and configuration management call it often.
  if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-V')) {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const [{ Command: CommandClass, CommanderError }, mods] = await Promise.all([
    import('commander'),
    Promise.all(modulesFor(argv, table).map((m) => m.load())),
  ]);
  const program = new CommandClass('drift')
    .description('Configuration-drift detector for immutable infrastructure: baseline an image, watch every host, replace what drifted.')
    .version(VERSION, '-V, --version', 'print the drift version')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    // Usage errors quote what was typed (a file name, an option): escaped for the terminal.
    .configureOutput({ writeErr: (s) => process.stderr.write(visibleLines(s)) });
  for (const m of mods) m.register(program);
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
