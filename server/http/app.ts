import Fastify, { LogController, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { createHash, randomBytes, timingSafeEqual, type KeyObject } from 'node:crypto';
import { gunzip } from 'node:zlib';
import { promisify } from 'node:util';
import { DriftError } from '../../agent/protocol/errors.js';
import { BaselineSchema, ManifestSchema, type Baseline, type SectionName } from '../../agent/protocol/manifest.js';
import type { RuleSet } from '../../agent/protocol/rules.js';
import { baselineDigest } from '../../agent/baseline.js';
import { verifyBaseline } from '../../agent/sign.js';
import { computeFleet, DEFAULT_COHORT_OPTIONS, type CohortHost, type CohortOptions, type RarePin } from '../fleet/cohorts.js';
import type { HostRow, Store } from '../store/store.js';
import { errorBody, HttpError } from './errors.js';
import { digestsOf, Ingest, Refusal, type CompareFn, type ReportInput } from './ingest.js';
import { PoolFull, POOL_DEFAULTS, ReportPool } from './pool.js';
import { sameDigests } from '../../agent/protocol/digests.js';
import { Metrics } from './metrics.js';
import { jsonDepthExceeded, locateManifestSections, MAX_JSON_DEPTH, type LocateStats } from './sections.js';
import { FailureLimiter } from './limiter.js';
import { GroupCommit } from '../store/commit.js';
import { EnrollRequestSchema, firstIssue, ReportEnvelopeSchema, RepinRequestSchema } from './wire.js';
import { AgentlessReportSchema } from '../../agent/protocol/wire.js';
import { Ledger } from '../fleet/actions.js';
import { GuardBlocks, registerActionRoutes, renderActionMetrics } from './actions.js';

/** What the collector's HTTP app is built from; all I/O is in `store`. */
export interface AppDeps {
  store: Store;
  /** The enrollment secret agents present to get a node key. */
  enrollSecret: string;
  /** The admin token for baselines and fleet views. */
  adminToken: string;
  /** Trusted baseline signing keys; when non-empty, unsigned baselines are refused. */
  baselineKeys: KeyObject[];
  rules: RuleSet;
  compare: CompareFn;
  /** Largest request body in bytes, after gzip inflation. */
  maxBody: number;
  /** A host whose last report is older than this (ms) is `silent`. */
  silentAfterMs: number;
  cohorts?: Partial<CohortOptions>;
  /** Fastify logger option: false in tests, pino options (JSON on stdout) in the daemon. */
  logger?: boolean | Record<string, unknown>;
  https?: { key: Buffer; cert: Buffer };
  /** Clock (ms since epoch), injectable for tests. */
  now?: () => number;
  /**
   * The cohort roles hosts may claim (`roles:` in the server config); a claim of
   * another role is flagged and the host kept in its image's default cohort.
   * Absent or null: every role is accepted.
   */
  roles?: readonly string[] | null;
  /** Failed enrollments per client address before it is refused for the window (default 10 per minute). */
  enrollFailures?: { max: number; windowMs: number };
  /**
   * Report workers (server/http/pool.ts): reports are parsed, checked and compared in
   * this many worker threads, with the real compare engine (not `compare`). Absent or
   * size 0: inline, on the main thread (tests of the HTTP layer; an injected compare).
   */
  reportWorkers?: { size: number; queue?: number; timeoutMs?: number; heapMb?: number };
}

/** How long an operator's approval of a re-enrollment (POST /v1/hosts/{id}/reenroll) stays valid. */
export const REENROLL_APPROVAL_MS = 3_600_000;

const gunzipAsync = promisify(gunzip);

/** A host's status, as GET /v1/hosts says it. */
export type HostStatus = 'clean' | 'drifted' | 'silent' | 'unknown-image';

declare module 'fastify' {
  interface FastifyRequest {
    driftHost?: string;
  }
}

const sha256 = (s: string): Buffer => createHash('sha256').update(s).digest();

/**
 * What the store keeps of a node key's secret: the first 16 bytes of its sha256.
 * The secret is 32 random bytes, so forging a key still takes 2^128 guesses, and a
 * reader of the database learns nothing usable; 16 bytes less per host.
 */
const keyHash = (secret: string): Buffer => sha256(secret).subarray(0, 16);

/** Constant-time comparison of a presented credential with the configured one. */
function sameSecret(presented: string, expected: string): boolean {
  return timingSafeEqual(sha256(presented), sha256(expected));
}

/**
 * A node key is `<host rowid>.<secret>`: the collector finds the host by its integer
 * key (no index over key hashes) and compares the sha256 of the secret in constant
 * time. The rowid is not a secret; the 32 random bytes are.
 */
const NODE_KEY = /^([1-9]\d{0,15})\.([A-Za-z0-9_-]{43})$/;

function bearer(req: FastifyRequest): string | null {
  const h = req.headers.authorization;
  if (typeof h !== 'string') return null;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
  return m ? (m[1] as string) : null;
}

/**
 * Build the collector's HTTP app (docs/api.md) without listening: the daemon calls
 * `listen`, tests call `inject`. Request bodies may be gzip; the size limit applies
 * to the inflated bytes and stops inflation when reached (413), malformed JSON or
 * gzip answer 400. Every error answers `{ error: { code, message } }`.
 */
export function buildApp(deps: AppDeps): FastifyInstance & { metrics: Metrics; ingest: Ingest; pool: ReportPool | null } {
  const now = deps.now ?? Date.now;
  const app = Fastify({
    logger: deps.logger ?? false,
    // Fastify's own request lines are off: the onResponse hook below writes one line per request.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: deps.maxBody,
    ...(deps.https ? { https: deps.https } : {}),
    // Malformed URLs (bad percent-encoding) answer the documented error body, not fastify's.
    frameworkErrors: (err, req, reply) => {
      void (reply as FastifyReply).code(400).send(errorBody('DRIFT_ERR_USAGE', `malformed URL ${JSON.stringify(req.url.slice(0, 200))} (${err.message}); see docs/api.md`));
    },
  }) as unknown as FastifyInstance;
  const metrics = new Metrics();
  /** The host of a node key, read once no write of that host is queued (its seq and state are current). */
  const hostOfKey = async (token: string): Promise<HostRow | undefined> => {
    const m = NODE_KEY.exec(token);
    if (!m) return undefined;
    const rowid = Number(m[1]);
    for (let p = commit.pending(rowid); p; p = commit.pending(rowid)) await p;
    return deps.store.hostByKey(rowid, keyHash(m[2] as string));
  };
  const commit = new GroupCommit(deps.store);
  const workers = deps.reportWorkers;
  const pool = workers && workers.size > 0
    ? new ReportPool({
      size: workers.size, queue: workers.queue ?? workers.size * POOL_DEFAULTS.queuePerWorker, timeoutMs: workers.timeoutMs ?? POOL_DEFAULTS.timeoutMs,
      heapMb: workers.heapMb ?? POOL_DEFAULTS.heapMb, rules: deps.rules,
    }, (msg, fields) => app.log.error(fields, msg))
    : null;
  const ingest = new Ingest({ store: deps.store, rules: deps.rules, compare: deps.compare, now, write: (r) => commit.save(r), roles: deps.roles ?? null, pool, decided: (where) => { metrics.reportsDecided[where]++; } });
  const enrollLimiter = new FailureLimiter({ max: deps.enrollFailures?.max ?? 10, windowMs: deps.enrollFailures?.windowMs ?? 60_000, maxKeys: 100_000 });

  ingest.preload();
  const locatedSections = new WeakMap<object, Map<SectionName, Buffer>>();
  /** Inflated report bodies left for a report worker to parse. */
  const rawReports = new WeakSet<object>();
  app.removeAllContentTypeParsers();
  // Runs only after the route's onRequest hook accepted the credential (from the
  // headers alone): nothing is inflated, scanned or parsed for an unauthenticated caller.
  app.addContentTypeParser(['application/json', 'application/*+json'], { parseAs: 'buffer', bodyLimit: deps.maxBody }, async (req: FastifyRequest, raw: Buffer) => {
    let bytes = raw;
    const encoding = String(req.headers['content-encoding'] ?? 'identity').toLowerCase();
    if (encoding === 'gzip' || encoding === 'x-gzip') {
      try {
        // On the thread pool, not the event loop; maxOutputLength stops inflation at
        // the limit: a gzip bomb costs maxBody bytes, not its full size.
        // Output in 1 MiB chunks: a few thread-pool round trips per report, not one per 16 KiB.
        bytes = await gunzipAsync(raw, { maxOutputLength: deps.maxBody, chunkSize: 1 << 20 });
      } catch (err) {
        if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') {
          throw new HttpError('DRIFT_ERR_TOO_LARGE', `request body inflates to more than ${deps.maxBody} bytes (the --max-body limit); send a smaller report or raise --max-body`, 413);
        }
        throw new HttpError('DRIFT_ERR_USAGE', `request body is not valid gzip (${(err as Error).message})`, 400);
      }
    } else if (encoding !== 'identity') {
      throw new HttpError('DRIFT_ERR_USAGE', `unsupported Content-Encoding ${JSON.stringify(encoding)}; send gzip or no encoding`, 415);
    }
    if (req.url === '/v1/reports' && ingest.pooled) {
      // Parsed in a report worker: the event loop only inflated it (on the thread pool).
      const raw = { bytes };
      rawReports.add(raw);
      return raw;
    }
    const tooDeep = (where: string, at: number): HttpError =>
      new HttpError('DRIFT_ERR_USAGE', `request body nests JSON deeper than ${MAX_JSON_DEPTH} levels (${where}at byte ${at}); drift's protocol never nests deeper than 5`, 400);
    if (req.url === '/v1/reports') {
      // The locator is linear and never recurses into values, so it runs before the
      // depth check; a section equal to a known canonical one needs no depth check.
      const stats: LocateStats = { hashedBytes: 0 };
      const located = locateManifestSections(bytes, ingest.knownSections(), stats);
      if (stats.twice !== undefined) {
        throw new HttpError('DRIFT_ERR_USAGE', `report body names ${stats.twice} twice; send each key once (drift agents do)`, 400);
      }
      if (located) {
        let deep = await jsonDepthExceeded(located.rest);
        if (deep >= 0) throw tooDeep('', deep);
        for (const [name, section] of located.sections) {
          if (located.canonical.has(name)) continue;
          // A section sits at depth 2 of the body (body, manifest).
          deep = await jsonDepthExceeded(section, MAX_JSON_DEPTH - 2);
          if (deep >= 0) throw tooDeep(`in manifest.${name}, `, deep);
        }
        try {
          const body: unknown = JSON.parse(located.rest.toString('utf8'));
          if (body !== null && typeof body === 'object') {
            locatedSections.set(body, located.sections);
            return body;
          }
        } catch { /* parse it whole below, for the exact error */ }
      }
    }
    const deep = await jsonDepthExceeded(bytes);
    if (deep >= 0) throw tooDeep('', deep);
    try {
      return JSON.parse(bytes.toString('utf8')) as unknown;
    } catch (err) {
      throw new HttpError('DRIFT_ERR_USAGE', `request body is not valid JSON (${(err as Error).message})`, 400);
    }
  });

  app.setErrorHandler((err: unknown, req, reply) => {
    if (req.url.startsWith('/v1/reports')) {
      const status = err instanceof Refusal || err instanceof HttpError ? err.httpStatus : err instanceof DriftError ? err.status : statusOf(err);
      // A 5xx is the collector's failure, not a refused report.
      if (status < 500) metrics.refuse(err instanceof Refusal ? err.reason : statusReason(status));
    }
    if (err instanceof HttpError) return reply.code(err.httpStatus).send(errorBody(err.code, err.message));
    if (err instanceof DriftError) return reply.code(err.status).send(errorBody(err.code, err.message));
    const status = statusOf(err);
    const fcode = (err as { code?: string }).code;
    if (status === 413 || fcode === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      return reply.code(413).send(errorBody('DRIFT_ERR_TOO_LARGE', `request body is larger than ${deps.maxBody} bytes (the --max-body limit); send a smaller report or raise --max-body`));
    }
    if (fcode === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
      return reply.code(415).send(errorBody('DRIFT_ERR_USAGE', `unsupported Content-Type ${JSON.stringify(req.headers['content-type'] ?? '')}; send application/json`));
    }
    if (status >= 400 && status < 500) {
      return reply.code(status).send(errorBody('DRIFT_ERR_USAGE', (err as Error).message));
    }
    req.log.error({ err }, 'request failed');
    return reply.code(500).send(errorBody('DRIFT_ERR_IO', `the collector failed to handle the request (${(err as Error).message}); see its log`));
  });
  app.setNotFoundHandler((req, reply) => {
    reply.code(404).send(errorBody('DRIFT_ERR_NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0]}; see docs/api.md`));
  });

  // One JSON log line per request; never headers (they carry secrets and node keys).
  app.addHook('onResponse', async (req, reply) => {
    const seconds = reply.elapsedTime / 1000;
    metrics.observe(req.routeOptions.url ?? 'unmatched', seconds);
    req.log.info({ method: req.method, url: req.url, status: reply.statusCode, ms: Math.round(reply.elapsedTime * 100) / 100, ...(req.driftHost ? { host: req.driftHost } : {}) }, 'request');
  });

  /** onRequest hook of the admin routes: the token is checked before any body is read. */
  const admin = async (req: FastifyRequest): Promise<void> => {
    const token = bearer(req);
    if (token === null || !sameSecret(token, deps.adminToken)) {
      throw new HttpError('DRIFT_ERR_UNAUTHORIZED', token === null ? 'missing Authorization: Bearer <admin token>' : 'admin token refused; use the token in the collector\'s --admin-token-file');
    }
  };

  const enrollRefused = (req: FastifyRequest, reason: string, err: HttpError, fields: Record<string, unknown> = {}): HttpError => {
    enrollLimiter.fail(req.ip, now());
    metrics.refuseEnroll(reason);
    req.log.warn({ reason, ip: req.ip, ...fields }, 'enrollment refused');
    return err;
  };

  app.post('/v1/enroll', {
    onRequest: async (req, reply) => {
      const wait = enrollLimiter.retryAfter(req.ip, now());
      if (wait > 0) {
        metrics.refuseEnroll('rate-limited');
        void reply.header('retry-after', String(Math.ceil(wait / 1000)));
        throw new HttpError('DRIFT_ERR_RATE_LIMITED', `too many failed enrollments from ${req.ip}; try again in ${Math.ceil(wait / 1000)} s`, 429);
      }
      const token = bearer(req);
      if (token === null || !sameSecret(token, deps.enrollSecret)) {
        throw enrollRefused(req, 'unauthorized', new HttpError('DRIFT_ERR_UNAUTHORIZED', token === null ? 'missing Authorization: Bearer <enrollment secret>' : 'enrollment secret refused; use the secret in the collector\'s --enroll-secret-file'));
      }
    },
  }, async (req) => {
    const parsed = EnrollRequestSchema.safeParse(req.body);
    if (!parsed.success) throw enrollRefused(req, 'malformed', new HttpError('DRIFT_ERR_USAGE', `enroll body is not { hostId, hostname, imageId, nodeKey? }: ${firstIssue(parsed.error)}`, 400));
    const { hostId } = parsed.data;
    const existing = deps.store.hostById(hostId);
    let proof: 'first' | 'node-key' | 'operator' = 'first';
    if (existing) {
      // A host id is bound to its first enrollment: the shared secret alone never re-keys it.
      const m = parsed.data.nodeKey === undefined ? null : NODE_KEY.exec(parsed.data.nodeKey);
      if (m && Number(m[1]) === existing.rowid && deps.store.hostByKey(existing.rowid, keyHash(m[2] as string))) proof = 'node-key';
      else if (deps.store.takeReenrollApproval(existing.rowid, now())) proof = 'operator';
      else {
        throw enrollRefused(req, 'unproven-reenroll', new HttpError('DRIFT_ERR_FORBIDDEN', `host ${hostId} is already enrolled; enrolling it again needs its current node key (nodeKey in the body) or an operator's approval (POST /v1/hosts/${encodeURIComponent(hostId)}/reenroll with the admin token)`, 403), { host: hostId, nodeKeyGiven: parsed.data.nodeKey !== undefined });
      }
    }
    const secret = randomBytes(32).toString('base64url');
    commit.flush(); // queued reports of the old key are stored before the re-enrollment resets the seq
    const host = deps.store.enroll({ id: hostId, hostname: parsed.data.hostname, imageId: parsed.data.imageId ?? null, keyHash: keyHash(secret), now: now() });
    req.driftHost = hostId;
    if (existing) req.log.info({ host: hostId, proof }, 'host re-enrolled');
    return { hostId, nodeKey: `${host.rowid}.${secret}` };
  });

  app.post('/v1/reports', {
    onRequest: async (req) => {
      metrics.reportsReceived++;
      const token = bearer(req);
      const m = token === null ? null : NODE_KEY.exec(token);
      // Authentication only (a primary-key read); the handler reads the host's current state.
      const host = m ? deps.store.hostByKey(Number(m[1]), keyHash(m[2] as string)) : undefined;
      if (!host) {
        const r = new Refusal('DRIFT_ERR_UNAUTHORIZED', token === null ? 'missing Authorization: Bearer <node key>' : 'node key unknown or revoked; the agent must enroll again', 401);
        r.reason = 'unauthorized';
        throw r;
      }
      req.driftHost = host.id;
    },
  }, async (req, reply) => {
    const token = bearer(req) as string;
    const body = req.body;
    let input: ReportInput;
    if (typeof body === 'object' && body !== null && rawReports.has(body)) input = body as { bytes: Buffer };
    else input = { body, ...(typeof body === 'object' && body !== null && locatedSections.has(body) ? { located: locatedSections.get(body) as Map<SectionName, Buffer> } : {}) };
    let result;
    try {
      result = await ingest.report(Number(NODE_KEY.exec(token)?.[1]), () => hostOfKey(token), input);
    } catch (err) {
      if (err instanceof PoolFull) void reply.header('retry-after', String(err.retryAfter));
      throw err;
    }
    if (result.accepted) {
      metrics.reportsAccepted++;
      // Bounded by the envelope schema (SPOOL_DROPPED_MAX per report).
      if (result.spoolDropped > 0) metrics.agentSpoolDropped += result.spoolDropped;
    }
    else metrics.reportsNeedSections++;
    return { accepted: result.accepted, seq: result.seq, need: result.need };
  });

  // A sweep posting the manifest of a host without an agent, on its behalf: the admin
  // token stands in for a node key, the host id says how it was reached (ssh:…, ssm:…).
  app.post('/v1/agentless/reports', { onRequest: admin }, async (req) => {
    const parsed = AgentlessReportSchema.safeParse(req.body);
    if (!parsed.success) throw new HttpError('DRIFT_ERR_USAGE', `agentless report body is not a drift.agentless-report/v1: ${firstIssue(parsed.error)}; see docs/api.md`, 400);
    const { via, report } = parsed.data;
    const env = ReportEnvelopeSchema.safeParse(report);
    if (!env.success) throw new HttpError('DRIFT_ERR_USAGE', `agentless report: report is not a drift.report-request/v1: ${firstIssue(env.error, 'report')}`, 400);
    const hostId = env.data.hostId;
    if (hostId === undefined || !hostId.startsWith(`${via}:`) || hostId.length <= via.length + 1) {
      throw new HttpError('DRIFT_ERR_USAGE', `agentless report: report.hostId must be "${via}:" and the target (e.g. ${via === 'ssm' ? 'ssm:i-0123456789abcdef0' : 'ssh:web-1.internal:22'}), got ${JSON.stringify(hostId ?? null)}`, 400);
    }
    if (env.data.manifest === undefined) throw new HttpError('DRIFT_ERR_USAGE', `agentless report of ${hostId}: send the full manifest (report.manifest); an agentless host has no stored state to send digests against`, 400);
    const manifest = ManifestSchema.safeParse(env.data.manifest);
    if (!manifest.success) throw new HttpError('DRIFT_ERR_MANIFEST', `agentless report of ${hostId}: manifest fails drift.manifest/v1 at ${firstIssue(manifest.error, 'report.manifest')}`, 422);
    commit.flush();
    const host = deps.store.agentlessHost({ id: hostId, hostname: env.data.host.hostname, imageId: env.data.host.image?.id ?? null, via, now: now() });
    if (host === 'agent') throw new HttpError('DRIFT_ERR_CONFLICT', `host ${hostId} enrolled with its own agent, which reports it; an agentless report cannot stand in for it`, 409);
    req.driftHost = hostId;
    for (let p = commit.pending(host.rowid); p; p = commit.pending(host.rowid)) await p;
    const current = deps.store.hostById(hostId) ?? host;
    const readHost = async (): Promise<HostRow | undefined> => {
      for (let p = commit.pending(current.rowid); p; p = commit.pending(current.rowid)) await p;
      return deps.store.hostById(hostId);
    };
    try {
      const result = await ingest.report(current.rowid, readHost, { body: report });
      return { ...result, hostId, via };
    } catch (err) {
      // A host whose first report was refused is not kept as a silent, empty host.
      if (current.lastSeen === null) deps.store.dropAgentless(current.rowid);
      throw err;
    }
  });

  app.put<{ Params: { imageId: string } }>('/v1/baselines/:imageId', { onRequest: admin }, async (req) => {
    const { imageId } = req.params;
    const parsed = BaselineSchema.safeParse(req.body);
    if (!parsed.success) throw new HttpError('DRIFT_ERR_MANIFEST', `baseline fails drift.manifest/v1 at ${firstIssue(parsed.error)}`, 422);
    const baseline: Baseline = parsed.data;
    if (baseline.host.image?.id !== imageId) {
      throw new HttpError('DRIFT_ERR_MANIFEST', `baseline is of image ${JSON.stringify(baseline.host.image?.id ?? null)}, not ${JSON.stringify(imageId)}; PUT it to /v1/baselines/${encodeURIComponent(baseline.host.image?.id ?? '<imageId>')}`, 422);
    }
    // Reports are stored as deltas against the baseline's section digests, and a host
    // whose digests equal them is clean without a compare: they must be the sections'.
    if (!sameDigests(digestsOf(baseline), baseline.digests)) {
      throw new HttpError('DRIFT_ERR_MANIFEST', `baseline of ${imageId}: its digests do not match its sections (edited after collection?); make it again with drift baseline`, 422);
    }
    // A key id is recorded only for a signature this collector verified: without
    // --baseline-pubkey keys a signature is "unverified" and its claimed key id is not kept.
    let keyId: string | null = null;
    const signature = deps.baselineKeys.length > 0 ? 'verified' : baseline.signature ? 'unverified' : 'none';
    if (deps.baselineKeys.length > 0) {
      try { keyId = verifyBaseline(baseline, deps.baselineKeys, `baseline of ${imageId}`); } catch (err) {
        throw new HttpError('DRIFT_ERR_SIGNATURE', err instanceof Error ? err.message : String(err), 422, { cause: err });
      }
    }
    const digest = baselineDigest(baseline);
    commit.flush(); // reports compared against the old baseline are stored before it is replaced
    deps.store.putBaseline({ imageId, digest, keyId, baseline, now: now() });
    ingest.invalidate(imageId);
    return { imageId, digest, keyId, signature };
  });

  app.get<{ Params: { imageId: string } }>('/v1/baselines/:imageId', { onRequest: admin }, async (req) => {
    const b = ingest.baseline(req.params.imageId);
    if (!b) throw new HttpError('DRIFT_ERR_NOT_FOUND', `no baseline stored for image ${req.params.imageId}; push the one baked into the image with drift baseline push FILE (and bake with drift baseline --stamp, so its hosts name their image)`);
    return b.baseline;
  });

  const statusOfHost = (h: HostRow, t: number): HostStatus => {
    if (h.lastSeen === null || t - h.lastSeen > deps.silentAfterMs) return 'silent';
    if (h.baselineDigest === null) return 'unknown-image';
    return h.findings > 0 ? 'drifted' : 'clean';
  };

  const fleet = (hosts: HostRow[]) => {
    const keys = new Map<number, { kind: string; key: string; change: string }[]>();
    for (const k of deps.store.findingKeys()) {
      let list = keys.get(k.host);
      if (!list) keys.set(k.host, (list = []));
      list.push({ kind: k.kind, key: k.key, change: k.change });
    }
    const options = { ...DEFAULT_COHORT_OPTIONS, ...deps.cohorts };
    const rarePins = new Map<number, RarePin[]>();
    for (const r of deps.store.pins.rareValues({ minCohort: options.minCohort, majority: options.fleetWideShare, rareShare: options.rareShare })) {
      let list = rarePins.get(r.host);
      if (!list) rarePins.set(r.host, (list = []));
      list.push({ path: r.path, hosts: r.hosts, of: r.of });
    }
    const cohortHosts: CohortHost[] = hosts.map((h) => ({
      id: h.id, hostname: h.hostname, imageId: h.imageId, role: h.role, reported: h.lastSeen !== null, findings: keys.get(h.rowid) ?? [],
      rarePins: rarePins.get(h.rowid) ?? [],
    }));
    return computeFleet(cohortHosts, deps.cohorts ?? {});
  };

  const hostView = (h: HostRow, t: number, score: number | undefined) => ({
    id: h.id, hostname: h.hostname, imageId: h.imageId, role: h.role, status: statusOfHost(h, t), findings: h.findings,
    snowflake: score === undefined ? null : { score }, lastSeen: h.lastSeen === null ? null : new Date(h.lastSeen).toISOString(),
    flags: h.flags, via: h.via ?? 'agent',
  });

  app.get('/v1/hosts', { onRequest: admin }, async () => {
    const hosts = deps.store.listHosts();
    const { scores } = fleet(hosts);
    const t = now();
    return { hosts: hosts.map((h) => hostView(h, t, scores.get(h.id))) };
  });

  app.get<{ Params: { id: string } }>('/v1/hosts/:id', { onRequest: admin }, async (req) => {
    const h = deps.store.hostById(req.params.id);
    if (!h) throw new HttpError('DRIFT_ERR_NOT_FOUND', `no host ${req.params.id} has enrolled; list hosts with GET /v1/hosts`);
    const { scores } = fleet(deps.store.listHosts().filter((x) => x.imageId === h.imageId));
    const findings = deps.store.findings(h).map((f) => ({ ...f.finding, firstSeen: new Date(f.firstSeen).toISOString(), lastSeen: new Date(f.lastSeen).toISOString() }));
    const digest = h.imageId ? (ingest.baseline(h.imageId)?.digest ?? null) : null;
    return {
      ...hostView(h, now(), scores.get(h.id)),
      findings,
      findingsOmitted: h.omitted,
      baseline: h.imageId && digest ? { imageId: h.imageId, digest } : null,
      unread: h.unread,
      firstBoot: firstBootOf(h),
    };
  });

  /** What a host's report says about first-boot pinning; null before its first compare. */
  const firstBootOf = (h: HostRow) => {
    const stored = deps.store.pins.pinsOf(h.rowid);
    if (!stored) return null;
    return { pinnedAt: stored.book.pinnedAt, pins: Object.keys(stored.book.files).length, keys: stored.keys, user: deps.rules.vars['cloudInitUser'] ?? null };
  };

  const hostOrNotFound = (id: string): HostRow => {
    const h = deps.store.hostById(id);
    if (!h) throw new HttpError('DRIFT_ERR_NOT_FOUND', `no host ${id} has enrolled; list hosts with GET /v1/hosts`);
    return h;
  };

  app.get<{ Params: { id: string } }>('/v1/hosts/:id/pins', { onRequest: admin }, async (req) => {
    const h = hostOrNotFound(req.params.id);
    const stored = deps.store.pins.pinsOf(h.rowid);
    return {
      hostId: h.id,
      firstBoot: firstBootOf(h),
      pins: stored ? Object.entries(stored.book.files).map(([path, pin]) => ({ path, firstSeen: pin.firstSeen, entry: pin.entry })) : [],
      journal: deps.store.pins.journal(h.rowid),
    };
  });

  app.post<{ Params: { id: string } }>('/v1/hosts/:id/pins/repin', { onRequest: admin }, async (req) => {
    const parsed = RepinRequestSchema.safeParse(req.body ?? {});
    if (!parsed.success) throw new HttpError('DRIFT_ERR_USAGE', `re-pin body is not { paths?, reason, by? }: ${firstIssue(parsed.error)}`, 400);
    commit.flush(); // the host's queued reports are stored before its pins and findings are recomputed
    const h = hostOrNotFound(req.params.id);
    const r = ingest.repin(h, parsed.data.paths ?? [], parsed.data.by ?? null, parsed.data.reason);
    req.log.info({ host: h.id, paths: r.changed, by: parsed.data.by ?? null, reason: parsed.data.reason }, 'first-boot pins re-pinned');
    return { hostId: h.id, changed: r.changed, findings: r.findings, firstBoot: r.firstBoot };
  });

  app.get('/v1/fleet', { onRequest: admin }, async () => {
    const { cohorts } = fleet(deps.store.listHosts());
    return { cohorts };
  });

  app.post<{ Params: { id: string } }>('/v1/hosts/:id/reenroll', { onRequest: admin }, async (req) => {
    const h = deps.store.hostById(req.params.id);
    if (!h) throw new HttpError('DRIFT_ERR_NOT_FOUND', `no host ${req.params.id} has enrolled; it can enroll without approval`);
    const until = now() + REENROLL_APPROVAL_MS;
    deps.store.approveReenroll(h.rowid, until);
    req.log.info({ host: h.id }, 're-enrollment approved');
    return { hostId: h.id, approvedUntil: new Date(until).toISOString() };
  });
  const ledger = new Ledger(deps.store, { silentAfterMs: deps.silentAfterMs, verifiesBaselines: deps.baselineKeys.length > 0, ...(deps.cohorts ? { cohorts: deps.cohorts } : {}) });
  const guardBlocks = new GuardBlocks();
  registerActionRoutes(app, { ledger, admin, now, blocks: guardBlocks });

  app.get('/metrics', async (_req, reply) => {
    const t = now();
    const byStatus: Record<HostStatus, number> = { clean: 0, drifted: 0, silent: 0, 'unknown-image': 0 };
    for (const h of deps.store.listHosts()) byStatus[statusOfHost(h, t)]++;
    reply.type('text/plain; version=0.0.4; charset=utf-8');
    return metrics.render(byStatus, deps.store.sizeBytes(), pool?.workers() ?? 0) + renderActionMetrics(ledger, guardBlocks);
  });

  app.get('/healthz', async (_req, reply: FastifyReply) => {
    if (!deps.store.ping()) return reply.code(503).send(errorBody('DRIFT_ERR_IO', 'the database does not answer; check the collector log and the --db file'));
    return { ok: true };
  });

  app.addHook('onClose', async () => { await pool?.close(); commit.flush(); });

  return Object.assign(app, { metrics, ingest, pool });
}

function statusOf(err: unknown): number {
  const s = (err as { statusCode?: unknown }).statusCode;
  return typeof s === 'number' ? s : 500;
}

function statusReason(status: number): string {
  switch (status) {
    case 400: return 'malformed';
    case 401: return 'unauthorized';
    case 409: return 'replayed';
    case 413: return 'too-large';
    case 415: return 'malformed';
    case 422: return 'invalid';
    default: return `status-${status}`;
  }
}
