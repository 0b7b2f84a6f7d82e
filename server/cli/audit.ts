import type { Command } from 'commander';
import { DriftError } from '../../agent/protocol/errors.js';
import { exit } from '../../agent/cli/exit.js';

const PASS_NAMES = ['enforce', 'verify', 'silent', 'report', 'sweep'];

export function register(program: Command): void {
  program
    .command('audit')
    .description('Run the audit daemon: cron-scheduled passes (enforce, verify, silent, report, sweep) against the collector\'s actions ledger. It alone holds the provider credentials; dry-run until the config says mode: enforce.')
    .requiredOption('--config <file>', 'YAML config: collector, adminTokenFile, mode, schedules, guards, provider, retry, silent, report, sweep (README "Enforcement")')
    .option('--once <pass>', `run one pass now and exit: ${PASS_NAMES.join(', ')}`)
    .addHelpText('after', `
Exit codes: 0 done, 1 (--once enforce) an action failed, 2 trouble (bad config, unreachable collector).
Schedules are cron in UTC: 5 fields (minute hour day month weekday), or 6 with seconds first.
SIGTERM or SIGINT stop the daemon (exit 0); actions under way resume, from their saved progress, at the next start.`)
    .action(async (o: { config: string; once?: string }) => {
      if (o.once !== undefined && !PASS_NAMES.includes(o.once)) {
        throw new DriftError('DRIFT_ERR_USAGE', `audit: --once must be one of ${PASS_NAMES.join(', ')}, got ${JSON.stringify(o.once)}`);
      }
      // Loaded only when the daemon runs: the AWS SDK and cron stay out of every other command.
      const daemon = await import('../audit/daemon.js');
      if (o.once !== undefined) {
        exit(await daemon.runOnce(o.config, o.once as 'enforce' | 'verify' | 'silent' | 'report' | 'sweep'));
        return;
      }
      const stop = new AbortController();
      const onSignal = (): void => { process.off('SIGTERM', onSignal); process.off('SIGINT', onSignal); stop.abort(); };
      process.on('SIGTERM', onSignal);
      process.on('SIGINT', onSignal);
      await daemon.runDaemon(o.config, stop.signal);
    });
}
