import type { Command } from 'commander';
import { DEFAULTS, loadServerConfig, type ServerFlags } from '../config.js';
import { collect } from '../../agent/cli/common.js';
import { defaultWorkers, POOL_DEFAULTS } from '../http/pool.js';

export function register(program: Command): void {
  program
    .command('server')
    .description('Run the collector: HTTP(S) API for agents and operators (docs/api.md), SQLite fleet store, compare on ingest, cohorts and snowflakes, /metrics. JSON logs on stdout.')
    .option('--config <file>', 'YAML file with the same settings (keys are the long flag names: listen, db, state-dir, ...); flags win')
    .option('--listen <host:port>', `address to listen on (default ${DEFAULTS.listen}; port 0 picks a free one)`)
    .option('--state-dir <dir>', `state folder (default ${DEFAULTS.stateDir})`)
    .option('--db <file>', 'SQLite database file (default <state dir>/drift.db)')
    .option('--enroll-secret-file <file>', `file holding the enrollment secret agents present (default ${DEFAULTS.enrollSecretFile})`)
    .option('--admin-token-file <file>', `file holding the admin token for baselines and fleet views (default ${DEFAULTS.adminTokenFile})`)
    .option('--baseline-pubkey <file>', 'trusted baseline signing public key (PEM, from drift keygen); repeatable; when given, unsigned baselines are refused', collect)
    .option('--tls-cert <file>', 'serve HTTPS with this certificate (PEM); needs --tls-key')
    .option('--tls-key <file>', 'private key of --tls-cert (PEM)')
    .option('--rules <dir>', 'site rule folder, read after the shipped rules; repeatable', collect)
    .option('--max-body <bytes>', `largest request body after gzip inflation, e.g. 128MiB (default ${DEFAULTS.maxBody / 1024 / 1024} MiB: a full manifest of a host with ~80,000 watched files is over 16 MiB)`)
    .option('--retention <duration>', `how long report history is kept, e.g. 30d (default ${DEFAULTS.retention})`)
    .option('--silent-after <duration>', `a host with no report for this long is silent (default ${DEFAULTS.silentAfter})`)
    .option('--fleet-wide-share <share>', 'a finding shared by more than this share of a cohort is fleet-wide (default 0.5)')
    .option('--rare-share <share>', 'a finding shared by at most this share of a cohort is rare: its hosts are snowflakes (default 0.1)')
    .option('--roles <name>', 'a cohort role hosts may claim (agent --role); repeatable; when given, a host claiming another role is flagged and kept in its image\'s default cohort', collect)
    .option('--report-workers <n>', `worker threads (started when a report needs one) that parse and compare reports, off the event loop (default min(2, cores) = ${defaultWorkers()} here; 0 decides on the main thread, where one large report stalls every request)`)
    .option('--report-queue <n>', `reports waiting for a worker; past it a report is answered 503 with Retry-After (default ${POOL_DEFAULTS.queuePerWorker} per worker)`)
    .option('--report-timeout <duration>', `longest one report may take in a worker; past it the worker is replaced and the report refused with 413 (default ${POOL_DEFAULTS.timeoutMs / 1000}s)`)
    .option('--report-heap <bytes>', `heap one report worker may use, e.g. 512MiB; a report needing more is refused with 413 and the worker replaced (default ${POOL_DEFAULTS.heapMb} MiB)`)
    .addHelpText('after', '\nSIGTERM or SIGINT: stop accepting, finish the requests in flight, close the database, exit 0.\nSecrets: each file holds one token of at least 16 characters, not accessible to others (chmod 600), and the two differ; otherwise exit 2.\nRe-enrolling an enrolled host id needs its node key or POST /v1/hosts/{id}/reenroll (docs/api.md).')
    .action(async (flags: ServerFlags) => {
      const cfg = await loadServerConfig(flags);
      // Loaded only when the collector runs: host commands never load fastify or SQLite.
      const { startServer } = await import('./serve.js');
      const running = await startServer(cfg);
      await new Promise<void>((resolve) => {
        const onSignal = (signal: NodeJS.Signals): void => {
          process.off('SIGTERM', onSignal);
          process.off('SIGINT', onSignal);
          running.stop(signal).then(resolve, resolve);
        };
        process.on('SIGTERM', onSignal);
        process.on('SIGINT', onSignal);
      });
    });
}
