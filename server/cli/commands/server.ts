import type { Command } from 'commander';
import { readFile } from 'node:fs/promises';
import type { KeyObject } from 'node:crypto';
import { DriftError, errnoOf } from '../../../agent/protocol/errors.js';
import { loadRuleSet } from '../../../agent/rules/load.js';
import { loadPublicKey } from '../../../agent/sign.js';
import { compare } from '../../engine/compare.js';
import { DEFAULTS, loadServerConfig, readSecret, type ServerConfig, type ServerFlags } from '../../config.js';
import { buildApp } from '../../http/app.js';
import { BatchedStdout } from '../../http/log.js';
import { Store } from '../../store/store.js';
import { collect } from '../common.js';

/** A running collector: its bound address and a graceful stop. */
export interface RunningServer {
  /** `http://127.0.0.1:8750` (the real port when 0 was asked for). */
  address: string;
  store: Store;
  /** Stop accepting, finish in-flight requests, close the database. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Start the collector from a resolved config: read the secrets (exit 2 with the
 * file named when one is missing), keys, rules and TLS files, open the store, listen,
 * and log the bound address as a JSON line `{"msg":"listening","address":...}`.
 */
export async function startServer(cfg: ServerConfig): Promise<RunningServer> {
  const enrollSecret = await readSecret(cfg.enrollSecretFile, '--enroll-secret-file');
  const adminToken = await readSecret(cfg.adminTokenFile, '--admin-token-file');
  const baselineKeys: KeyObject[] = [];
  for (const f of cfg.baselinePubkeys) baselineKeys.push(await loadPublicKey(f));
  const rules = await loadRuleSet(cfg.rules);
  let https: { key: Buffer; cert: Buffer } | undefined;
  if (cfg.tls) {
    const read = async (f: string, flag: string): Promise<Buffer> => {
      try { return await readFile(f); } catch (err) {
        throw new DriftError('DRIFT_ERR_CONFIG', `cannot read ${flag} ${f}: ${errnoOf(err)}`, { cause: err });
      }
    };
    https = { cert: await read(cfg.tls.cert, '--tls-cert'), key: await read(cfg.tls.key, '--tls-key') };
  }
  const store = Store.open(cfg.db);
  const logStream = new BatchedStdout();
  const app = buildApp({
    store, enrollSecret, adminToken, baselineKeys, rules, compare, maxBody: cfg.maxBody, silentAfterMs: cfg.silentAfterMs,
    cohorts: { fleetWideShare: cfg.fleetWideShare, rareShare: cfg.rareShare },
    logger: { level: 'info', base: { service: 'drift-server' }, stream: logStream },
    ...(https ? { https } : {}),
  });
  const prune = (): void => {
    try {
      const removed = store.prune(Date.now() - cfg.retentionMs);
      if (removed > 0) app.log.info({ removed }, 'report history pruned');
    } catch (err) { app.log.error({ err }, 'pruning report history failed'); }
  };
  let address: string;
  try {
    address = await app.listen({ host: cfg.listen.host, port: cfg.listen.port });
  } catch (err) {
    await app.close();
    store.close();
    throw new DriftError('DRIFT_ERR_CONFIG', `cannot listen on ${cfg.listen.host}:${cfg.listen.port}: ${errnoOf(err)}; pick another --listen`, { cause: err });
  }
  app.log.info({ address, db: cfg.db }, 'listening');
  logStream.flush();
  // After the "listening" line, which is documented as the first one.
  prune();
  const timer = setInterval(prune, 3_600_000);
  timer.unref();
  let stopping: Promise<void> | null = null;
  return {
    address,
    store,
    stop: () => (stopping ??= (async () => {
      clearInterval(timer);
      await app.close();
      store.close();
      logStream.flush();
    })()),
  };
}

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
    .addHelpText('after', '\nSIGTERM or SIGINT: stop accepting, finish the requests in flight, close the database, exit 0.\nSecrets: each file holds one token (at least 16 characters); a missing or unreadable file exits 2.')
    .action(async (flags: ServerFlags) => {
      const cfg = await loadServerConfig(flags);
      const running = await startServer(cfg);
      await new Promise<void>((resolve) => {
        const onSignal = (): void => {
          process.off('SIGTERM', onSignal);
          process.off('SIGINT', onSignal);
          running.stop().then(resolve, resolve);
        };
        process.on('SIGTERM', onSignal);
        process.on('SIGINT', onSignal);
      });
    });
}
