import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { DriftError, errnoOf } from '../protocol/errors.js';
import { canonicalPieces } from '../protocol/canonical.js';
import { gzipPieces } from './gzip.js';
import { REPORT_REQUEST_SCHEMA, SECTIONS, type Baseline, type SectionName } from '../protocol/manifest.js';
import { readSecretFile as readSecret } from '../secret.js';
import { EnrollResponseSchema, ReportResponseSchema, type EnrollRequest, type ReportRequest } from '../protocol/wire.js';

/**
 * HTTP client of the collector's wire API (docs/api.md): JSON bodies, gzip request
 * bodies, `Authorization: Bearer`, a deadline per request, abortable by a signal.
 *
 * Two audiences: the agent daemon, which needs outcomes it can act on without
 * exceptions (`CollectorClient`: accepted / need / unauthorized / refused /
 * unreachable), and the CLI (`pushBaseline`, `fetchHost`, ...), which needs a
 * DriftError saying what went wrong and what to do.
 */


/** Schema name of a report request body. */
export { REPORT_REQUEST_SCHEMA };

/** The request bodies, declared once with the collector (agent/protocol/wire.ts). */
export type { EnrollRequest, ReportRequest } from '../protocol/wire.js';

/** What became of one request, in terms the daemon acts on. */
export type Outcome<T> =
  | { kind: 'ok'; value: T }
  /** 401: the credential was refused. */
  | { kind: 'unauthorized'; message: string }
  /** Another 4xx: the request will never be accepted as it is. */
  | { kind: 'refused'; status: number; code: string; message: string }
  /**
   * The collector's TLS certificate is not trusted (self-signed, unknown CA, wrong
   * name, expired) or it does not speak TLS: trying again will not help until the
   * configuration changes (`--ca-file`, the URL).
   */
  | { kind: 'misconfigured'; message: string }
  /** Connection refused or reset, DNS, timeout, 5xx: worth trying again later. */
  | { kind: 'unreachable'; message: string }
  /** The caller's signal fired (shutdown). */
  | { kind: 'aborted' };

const ErrorBodySchema = z.object({ error: z.object({ code: z.string(), message: z.string() }) });
const PushResponseSchema = z.object({ imageId: z.string(), digest: z.string(), keyId: z.string().nullable() });

/** A report's answer: stored, or the sections the collector needs to store it. */
export type ReportAnswer = { accepted: true; seq: number } | { accepted: false; seq: number; need: SectionName[] };

/** Options shared by every request. */
export interface ClientOptions {
  /** Whole-request deadline in milliseconds (connect, send, answer). Default 30 s. */
  timeoutMs?: number;
  /** Extra CA certificates (PEM) to trust for an HTTPS collector. */
  ca?: string | Buffer;
  /** Gzip request bodies larger than this many bytes. Default 1 KiB. */
  gzipAbove?: number;
}

interface RawResponse { status: number; json: unknown; bytes: number }

/** Raised inside `send` for anything that is not an HTTP answer. */
class NetError extends Error {
  readonly aborted: boolean;
  constructor(message: string, aborted: boolean, cause?: unknown) { super(message, { cause }); this.aborted = aborted; }
}

/** OpenSSL's and Node's codes for a certificate the client does not trust. */
const CERT_ERRORS = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_UNTRUSTED', 'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'CERT_SIGNATURE_FAILURE',
  'CERT_REVOKED', 'INVALID_CA', 'ERR_TLS_CERT_ALTNAME_INVALID',
]);
/** Codes of a TLS handshake with something that does not speak TLS (an http:// collector behind https://). */
const NOT_TLS_ERRORS = new Set(['EPROTO', 'ERR_SSL_WRONG_VERSION_NUMBER', 'ERR_SSL_PACKET_LENGTH_TOO_LONG']);

/**
 * A configuration error behind a failed connection, in a person's words, or null
 * when the failure may pass by itself (refused, reset, timeout).
 */
export function tlsProblem(code: string, url: URL): string | null {
  if (CERT_ERRORS.has(code)) {
    return `the collector's TLS certificate is not trusted (${code}); pass --ca-file with the CA certificate (PEM) that signed it`;
  }
  if (NOT_TLS_ERRORS.has(code)) return `${url.host} does not speak TLS (${code}); check the URL's scheme (http:// or https://)`;
  return null;
}

/** Join a collector base URL and an API path (with an optional `?query`), keeping any base path prefix. */
export function apiUrl(base: string, path: string): URL {
  let url: URL;
  try { url = new URL(base); } catch {
    throw new DriftError('DRIFT_ERR_USAGE', `collector URL ${JSON.stringify(base)} is not a URL; give one like http://collector:8443`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new DriftError('DRIFT_ERR_USAGE', `collector URL ${base} must start with http:// or https://`);
  }
  const q = path.indexOf('?');
  url.pathname = `${url.pathname.replace(/\/+$/, '')}${q < 0 ? path : path.slice(0, q)}`;
  if (q >= 0) url.search = path.slice(q);
  return url;
}

/**
 * A request body as canonical JSON, gzipped when it is longer than `gzipAbove` bytes.
 * A full report of a live host is over 16 MiB of JSON: it is serialised and
 * compressed piece by piece, so only the gzip output (a few MiB) is held whole.
 * Canonical, so a clean host's sections arrive byte for byte as their baseline's
 * (the collector then recognises them by one sha256, server/http/sections.ts).
 */
export async function encodeBody(body: unknown, gzipAbove: number): Promise<{ payload: Buffer; gzipped: boolean }> {
  const pieces = canonicalPieces(body);
  const head: string[] = [];
  let bytes = 0;
  for (let r = pieces.next(); !r.done; r = pieces.next()) {
    head.push(r.value);
    bytes += Buffer.byteLength(r.value);
    if (bytes > gzipAbove) {
      const chunks: Buffer[] = [];
      const rest = function* (): Generator<string, void, undefined> { yield* head.splice(0); yield* pieces; };
      await gzipPieces(rest(), (chunk) => chunks.push(chunk));
      return { payload: Buffer.concat(chunks), gzipped: true };
    }
  }
  return { payload: Buffer.from(head.join('')), gzipped: false };
}

/** Bytes sent in the last request (compressed when gzip applied); for tests and logs. */
export interface SendStats { requestBytes: number; responseBytes: number }

/**
 * One HTTP exchange. Resolves with any HTTP answer (any status); rejects with NetError
 * for everything else. Bodies above `gzipAbove` bytes travel gzip-compressed.
 */
async function send(
  method: string, url: URL, token: string | null, body: unknown, opts: ClientOptions & { signal?: AbortSignal; agent?: HttpAgent | HttpsAgent },
  stats?: SendStats,
): Promise<RawResponse> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (token !== null) headers.authorization = `Bearer ${token}`;
  let payload: Buffer | null = null;
  if (body !== undefined) {
    const encoded = await encodeBody(body, opts.gzipAbove ?? 1024);
    payload = encoded.payload;
    headers['content-type'] = 'application/json';
    if (encoded.gzipped) headers['content-encoding'] = 'gzip';
    headers['content-length'] = String(payload.length);
  }
  if (stats) stats.requestBytes = payload?.length ?? 0;
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const signal = opts.signal;
  if (signal?.aborted) throw new NetError('aborted', true);

  return new Promise<RawResponse>((resolve, reject) => {
    const isHttps = url.protocol === 'https:';
    const reqOpts = { method, headers, ...(opts.agent ? { agent: opts.agent } : {}), ...(isHttps && opts.ca ? { ca: opts.ca } : {}) };
    const req = (isHttps ? httpsRequest : httpRequest)(url, reqOpts);
    let settled = false;
    const finish = (err: NetError | null, res?: RawResponse): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      if (err) { req.destroy(); reject(err); } else resolve(res as RawResponse);
    };
    const timer = setTimeout(() => finish(new NetError(`no answer within ${timeoutMs} ms`, false)), timeoutMs);
    const onAbort = (): void => finish(new NetError('aborted', true));
    signal?.addEventListener('abort', onAbort, { once: true });
    req.on('error', (err) => finish(new NetError(errnoOf(err), false, err)));
    req.on('response', (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        // An answer this large is not one of ours; stop reading rather than fill memory.
        if (size > 256 * 1024 * 1024) finish(new NetError('answer larger than 256 MiB', false));
        else chunks.push(c);
      });
      res.on('error', (err) => finish(new NetError(errnoOf(err), false, err)));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown = null;
        try { json = text.length ? JSON.parse(text) as unknown : null; } catch { json = null; }
        if (stats) stats.responseBytes = size;
        finish(null, { status: res.statusCode ?? 0, json, bytes: size });
      });
    });
    req.end(payload ?? undefined);
  });
}

/** The collector's error message from an error body, else a description of the status. */
function errorOf(res: RawResponse): { code: string; message: string } {
  const parsed = ErrorBodySchema.safeParse(res.json);
  if (parsed.success) return parsed.data.error;
  return { code: `HTTP_${res.status}`, message: `HTTP ${res.status} without an error body` };
}

function classify<T>(res: RawResponse, parse: (json: unknown) => T | null, what: string): Outcome<T> {
  if (res.status >= 200 && res.status < 300) {
    const value = parse(res.json);
    if (value === null) return { kind: 'unreachable', message: `${what}: the answer is not the expected JSON (is this a drift collector?)` };
    return { kind: 'ok', value };
  }
  const e = errorOf(res);
  if (res.status === 401) return { kind: 'unauthorized', message: e.message };
  // Too many failed enrollments from this address: worth trying again after the window.
  if (res.status === 429) return { kind: 'unreachable', message: `${what}: HTTP 429: ${e.message}` };
  if (res.status >= 400 && res.status < 500) return { kind: 'refused', status: res.status, code: e.code, message: e.message };
  return { kind: 'unreachable', message: `${what}: HTTP ${res.status}: ${e.message}` };
}

function netOutcome(err: unknown, what: string, url: URL): Outcome<never> {
  if (err instanceof NetError) {
    if (err.aborted) return { kind: 'aborted' };
    const tls = tlsProblem(err.message, url);
    return tls !== null ? { kind: 'misconfigured', message: `${what}: ${tls}` } : { kind: 'unreachable', message: `${what}: ${err.message}` };
  }
  throw err;
}

/**
 * The agent's view of one collector. Never throws for network or HTTP trouble:
 * every call returns an Outcome the daemon decides on.
 */
export class CollectorClient {
  readonly base: string;
  private readonly opts: ClientOptions;
  private readonly agent: HttpAgent | HttpsAgent;
  /** Sizes of the last report request, for logs and tests. */
  readonly lastReport: SendStats = { requestBytes: 0, responseBytes: 0 };

  constructor(base: string, opts: ClientOptions = {}) {
    apiUrl(base, '/'); // validate once, early, with the user-facing message
    this.base = base;
    this.opts = opts;
    this.agent = base.startsWith('https:') ? new HttpsAgent({ keepAlive: true }) : new HttpAgent({ keepAlive: true });
  }

  /** `POST /v1/enroll` with the enrollment secret: the host's new node key. */
  async enroll(secret: string, body: EnrollRequest, signal?: AbortSignal): Promise<Outcome<string>> {
    const url = apiUrl(this.base, '/v1/enroll');
    try {
      const res = await send('POST', url, secret, body, { ...this.opts, agent: this.agent, ...(signal ? { signal } : {}) });
      return classify(res, (j) => { const p = EnrollResponseSchema.safeParse(j); return p.success ? p.data.nodeKey : null; }, `POST ${url.href}`);
    } catch (err) { return netOutcome(err, `POST ${url.href}`, url); }
  }

  /** `POST /v1/reports` with the node key. */
  async report(nodeKey: string, body: ReportRequest, signal?: AbortSignal): Promise<Outcome<ReportAnswer>> {
    const url = apiUrl(this.base, '/v1/reports');
    try {
      const res = await send('POST', url, nodeKey, body, { ...this.opts, agent: this.agent, ...(signal ? { signal } : {}) }, this.lastReport);
      return classify(res, (j): ReportAnswer | null => {
        const p = ReportResponseSchema.safeParse(j);
        if (!p.success) return null;
        if (p.data.accepted) return { accepted: true, seq: p.data.seq };
        const need = p.data.need.filter((n): n is SectionName => (SECTIONS as readonly string[]).includes(n));
        return { accepted: false, seq: p.data.seq, need };
      }, `POST ${url.href}`);
    } catch (err) { return netOutcome(err, `POST ${url.href}`, url); }
  }

  /** Close idle keep-alive connections (so a `--once` run exits at once). */
  close(): void { this.agent.destroy(); }
}

/**
 * Full-jitter backoff (AWS architecture blog, "Exponential Backoff And Jitter"): a
 * uniformly random delay in [0, min(cap, base·2^attempt)) milliseconds. `attempt`
 * counts failures so far, from 0.
 */
export function backoffDelay(attempt: number, baseMs = 1_000, capMs = 300_000, random: () => number = Math.random): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(Math.max(attempt, 0), 40));
  return Math.floor(random() * ceiling);
}

/** Secret files are read the one way agent and collector share (agent/secret.ts). */
export async function readSecretFile(path: string, warn?: (msg: string) => void): Promise<string> {
  return readSecret(path, warn ? { warn } : {});
}

/** Read `--ca-file`: the PEM certificates to trust for an HTTPS collector, with a clear error. */
export async function readCaFile(path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    throw new DriftError('DRIFT_ERR_CONFIG', `cannot read CA file ${path}: ${errnoOf(err)}; give the PEM file of the CA that signed the collector's certificate`, { cause: err });
  }
}

/** Throw the user-facing DriftError for a failed admin request. */
function adminFailure(method: string, url: URL, o: Exclude<Outcome<unknown>, { kind: 'ok' }>, hint: string): never {
  switch (o.kind) {
    case 'unauthorized':
      // The collector's message already says what to check; adding advice here would say it twice.
      throw new DriftError('DRIFT_ERR_UNAUTHORIZED', `${method} ${url.href}: ${o.message}`);
    case 'misconfigured':
      throw new DriftError('DRIFT_ERR_CONFIG', o.message);
    case 'refused':
      throw new DriftError(o.status === 404 ? 'DRIFT_ERR_NOT_FOUND' : o.status === 409 ? 'DRIFT_ERR_CONFLICT' : o.status === 413 ? 'DRIFT_ERR_TOO_LARGE' : 'DRIFT_ERR_USAGE',
        `${method} ${url.href}: the collector answered ${o.status} ${o.code}: ${o.message}`);
    case 'unreachable':
      throw new DriftError('DRIFT_ERR_UNREACHABLE', `cannot reach the collector: ${o.message}; ${hint}`);
    case 'aborted':
      throw new DriftError('DRIFT_ERR_UNREACHABLE', `${method} ${url.href}: interrupted`);
    default: {
      const never: never = o;
      throw new Error(`unexpected outcome ${JSON.stringify(never)}`);
    }
  }
}

const REACH_HINT = 'check the URL, that `drift server` runs there and that this machine may reach its port';

async function adminCall<T>(method: string, collectorUrl: string, path: string, adminToken: string, body: unknown, parse: (j: unknown) => T | null, opts: ClientOptions): Promise<T> {
  const url = apiUrl(collectorUrl, path);
  let o: Outcome<T>;
  try {
    o = classify(await send(method, url, adminToken, body, opts), parse, `${method} ${url.href}`);
  } catch (err) {
    o = netOutcome(err, `${method} ${url.href}`, url);
  }
  if (o.kind === 'ok') return o.value;
  return adminFailure(method, url, o, REACH_HINT);
}

/**
 * Upload a baseline: `PUT /v1/baselines/{imageId}` with the admin token, the image id
 * taken from the baseline's `host.image.id`. Returns what the collector stored.
 */
export async function pushBaseline(collectorUrl: string, adminToken: string, baseline: Baseline, opts: ClientOptions = {}): Promise<{ imageId: string; digest: string; keyId: string | null }> {
  const imageId = baseline.host.image?.id;
  if (!imageId) throw new DriftError('DRIFT_ERR_USAGE', 'the baseline has no host.image.id; make it with drift baseline --image-id ID');
  return adminCall('PUT', collectorUrl, `/v1/baselines/${encodeURIComponent(imageId)}`, adminToken, baseline,
    (j) => { const p = PushResponseSchema.safeParse(j); return p.success ? p.data : null; }, opts);
}

const asObject = (j: unknown): Record<string, unknown> | null => (j !== null && typeof j === 'object' && !Array.isArray(j) ? j as Record<string, unknown> : null);

/** `GET /v1/hosts/{id}`: one host with its findings, as the collector returns it (docs/api.md). */
export async function fetchHost(collectorUrl: string, adminToken: string, hostId: string, opts: ClientOptions = {}): Promise<Record<string, unknown>> {
  return adminCall('GET', collectorUrl, `/v1/hosts/${encodeURIComponent(hostId)}`, adminToken, undefined, asObject, opts);
}

/** `GET /v1/hosts`: every host's status line, as `{ hosts: [...] }`. */
export async function fetchHosts(collectorUrl: string, adminToken: string, opts: ClientOptions = {}): Promise<{ hosts: Record<string, unknown>[] }> {
  return adminCall('GET', collectorUrl, '/v1/hosts', adminToken, undefined, (j) => {
    const o = asObject(j);
    return o && Array.isArray(o.hosts) ? { hosts: o.hosts as Record<string, unknown>[] } : null;
  }, opts);
}

/** `GET /v1/fleet`: cohorts with fleet-wide drift and snowflakes, as `{ cohorts: [...] }`. */
export async function fetchFleet(collectorUrl: string, adminToken: string, opts: ClientOptions = {}): Promise<{ cohorts: Record<string, unknown>[] }> {
  return adminCall('GET', collectorUrl, '/v1/fleet', adminToken, undefined, (j) => {
    const o = asObject(j);
    return o && Array.isArray(o.cohorts) ? { cohorts: o.cohorts as Record<string, unknown>[] } : null;
  }, opts);
}

/** `GET /v1/hosts/{id}/pins`: a host's first-boot pins and their journal. */
export async function fetchPins(collectorUrl: string, adminToken: string, hostId: string, opts: ClientOptions = {}): Promise<Record<string, unknown>> {
  return adminJson('GET', collectorUrl, `/v1/hosts/${encodeURIComponent(hostId)}/pins`, adminToken, undefined, opts);
}

/** `POST /v1/hosts/{id}/pins/repin`: re-pin a host's first-boot values (all, or `paths`), journaled with `reason` and `by`. */
export async function repinHost(collectorUrl: string, adminToken: string, hostId: string, body: { paths?: string[]; reason: string; by?: string }, opts: ClientOptions = {}): Promise<Record<string, unknown>> {
  return adminJson('POST', collectorUrl, `/v1/hosts/${encodeURIComponent(hostId)}/pins/repin`, adminToken, body, opts);
}

/**
 * Any admin route of the collector (docs/api.md): the JSON object it answers, or a
 * DriftError naming the route and the collector's reason (404, 409 keep their codes).
 */
export async function adminJson(method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', collectorUrl: string, path: string, adminToken: string, body?: unknown, opts: ClientOptions = {}): Promise<Record<string, unknown>> {
  return adminCall(method, collectorUrl, path, adminToken, body, asObject, opts);
}
