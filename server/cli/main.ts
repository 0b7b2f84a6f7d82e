import { HOST_COMMANDS, main as hostMain, type CommandModule } from '../../agent/cli/main.js';

/**
 * The full `drift` command of an npm install: the host commands plus the collector's.
 * Each collector command registers its flags cheaply and loads fastify and SQLite
 * only when it runs; `drift scan` from this entry point never even loads their modules.
 */
const COMMANDS: readonly CommandModule[] = [
  ...HOST_COMMANDS,
  { names: ['server'], load: () => import('./server.js') },
  { names: ['audit'], load: () => import('./audit.js') },
];

export async function main(argv: string[]): Promise<number> {
  return hostMain(argv, COMMANDS);
}
