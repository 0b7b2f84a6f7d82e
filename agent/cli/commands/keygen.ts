import type { Command } from 'commander';
import { writeKeyPair } from '../../sign.js';

export function register(program: Command): void {
  program
    .command('keygen')
    .description('Make an ed25519 key pair for signing baselines: PREFIX.key (private, mode 0600) and PREFIX.pub.')
    .requiredOption('--out <prefix>', 'path prefix of the two key files')
    .option('--force', 'overwrite existing key files', false)
    .action(async (opts: { out: string; force: boolean }) => {
      const { keyId, privatePath, publicPath } = await writeKeyPair(opts.out, opts.force);
      process.stdout.write(`wrote ${privatePath} and ${publicPath} (key id ${keyId})\n`);
    });
}
