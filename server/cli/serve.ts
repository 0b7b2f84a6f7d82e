import { readFile } from 'node:fs/promises';
import type { KeyObject } from 'node:crypto';
import { DriftError, errnoOf } from '../../agent/protocol/errors.js';
import { loadRuleSet } from '../../agent/rules/load.js';
import { loadPublicKey } from '../../agent/sign.js';
import { compare } from '../../agent/engine/compare.js';
import { readSecrets, type ServerConfig } from '../config.js';
import { buildApp } from '../http/app.js';
import { BatchedStdout } from '../http/log.js';
import { Store } from '../store/store.js';

/** A running collector: its bound address and a graceful stop. */
export interface RunningServer {
  /** `http://127.0.0.1:8750` (the real port when 0 was asked for). */
  address: string;
  store: Store;
  /** Stop accepting, finish in-flight requests, close the database; logs why and when done. Idempotent. */
  stop(reason?: string): Promise<void>;
}

/**
 * Start the collector from a resolved config: read the secrets (exit 2 with the
 * file named when one is missing), keys, rules and TLS files, open the store, listen,
 * and log the bound address as a JSON line `{"msg":"listening","address":...}`.
 */
export async function startServer(cfg: ServerConfig): Promise<RunningServer> {
  const { enrollSecret, adminToken } = await readSecrets(cfg);
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
    cohorts: { fleetWideShare: cfg.fleetWideShare, rareShare: cfg.rareShare }, roles: cfg.roles, reportWorkers: cfg.reportWorkers,
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
    stop: (reason?: string) => (stopping ??= (async () => {
      app.log.info(reason ? { reason } : {}, 'stopping: finishing requests in flight');
      logStream.flush();
      clearInterval(timer);
      await app.close();
      store.close();
      app.log.info('stopped');
      logStream.flush();
    })()),
  };
}

