import { hostCommands, main as hostMain, type Register } from '../../agent/cli/main.js';

/**
 * The full `drift` command of an npm install: the host commands plus the collector's.
 * Each collector command registers its flags cheaply and loads fastify and SQLite
 * only when it runs, so `drift scan` from this entry point never loads them.
 */
export async function main(argv: string[]): Promise<number> {
  const server = await Promise.all([
    import('./server.js'),
    import('./audit.js'),
  ]);
  const registers: Register[] = [...await hostCommands(), ...server.map((m) => m.register)];
  return hostMain(argv, registers);
}
