import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { DriftError, errnoOf } from '../agent/protocol/errors.js';
import { readSecretFile } from '../agent/secret.js';
import { durationOption, sizeOption } from '../agent/units.js';
import { defaultWorkers, POOL_DEFAULTS } from './http/pool.js';

/**
 * `drift server` configuration: flags and an equivalent YAML file (`--config FILE`,
 * same names as the long flags without `--`); a flag wins over the file. Validated
 * once here with exact messages, then frozen.
 */
export interface ServerConfig {
  readonly listen: { readonly host: string; readonly port: number };
  readonly stateDir: string;
  readonly db: string;
  readonly enrollSecretFile: string;
  readonly adminTokenFile: string;
  readonly baselinePubkeys: readonly string[];
  readonly tls: { readonly cert: string; readonly key: string } | null;
  /** Extra rule folders, after the shipped rules. */
  readonly rules: readonly string[];
  readonly maxBody: number;
  readonly retentionMs: number;
  readonly silentAfterMs: number;
  readonly fleetWideShare: number;
  readonly rareShare: number;
  /** Cohort roles hosts may claim; null: any role (docs/api.md, cohort claims). */
  readonly roles: readonly string[] | null;
  /** Report workers (docs/api.md, limits): threads, queued reports, per-report time and heap bounds. */
  readonly reportWorkers: { readonly size: number; readonly queue: number; readonly timeoutMs: number; readonly heapMb: number };
}

/** The flags as commander hands them over (every value a string, repeatables arrays). */
export interface ServerFlags {
  config?: string;
  listen?: string;
  db?: string;
  stateDir?: string;
  enrollSecretFile?: string;
  adminTokenFile?: string;
  baselinePubkey?: string[];
  tlsCert?: string;
  tlsKey?: string;
  rules?: string[];
  maxBody?: string;
  retention?: string;
  silentAfter?: string;
  fleetWideShare?: string;
  rareShare?: string;
  roles?: string[];
  reportWorkers?: string;
  reportQueue?: string;
  reportTimeout?: string;
  reportHeap?: string;
}

export const DEFAULTS = Object.freeze({
  listen: '127.0.0.1:8750',
  /** Not /var/lib/drift: that is the agent's state folder on a host running both. */
  stateDir: '/var/lib/drift-server',
  enrollSecretFile: '/etc/drift/enroll-secret',
  adminTokenFile: '/etc/drift/admin-token',
  /** A live Debian host with ~80,000 watched files sends over 16 MiB of manifest JSON. */
  maxBody: 64 * 1024 * 1024,
  retention: '30d',
  silentAfter: '15m',
});

const strOrList = z.union([z.string().min(1), z.array(z.string().min(1))]).transform((v) => (Array.isArray(v) ? v : [v]));
const scalar = z.union([z.string(), z.number()]).transform(String);

/** The YAML file: a mapping with the long flag names. Unknown keys are refused. */
export const ServerFileSchema = z.strictObject({
  listen: z.string().optional(),
  db: z.string().min(1).optional(),
  'state-dir': z.string().min(1).optional(),
  'enroll-secret-file': z.string().min(1).optional(),
  'admin-token-file': z.string().min(1).optional(),
  'baseline-pubkey': strOrList.optional(),
  'tls-cert': z.string().min(1).optional(),
  'tls-key': z.string().min(1).optional(),
  rules: strOrList.optional(),
  'max-body': scalar.optional(),
  retention: z.string().optional(),
  'silent-after': z.string().optional(),
  'fleet-wide-share': scalar.optional(),
  'rare-share': scalar.optional(),
  roles: z.array(z.string().min(1).max(128)).max(1000).optional(),
  'report-workers': scalar.optional(),
  'report-queue': scalar.optional(),
  'report-timeout': z.string().optional(),
  'report-heap': scalar.optional(),
});
export type ServerFile = z.infer<typeof ServerFileSchema>;

/** `90s`, `15m`, `30d` → milliseconds; throws DRIFT_ERR_USAGE naming the option (agent/units.ts). */
export const parseDuration = (text: string, option: string): number => durationOption(text, option);

/** `16777216`, `16MiB`, `512K` (binary units) → bytes; throws DRIFT_ERR_USAGE naming the option (agent/units.ts). */
export const parseSize = (text: string, option: string): number => sizeOption(text, option);

/** `HOST:PORT` (`[::1]:8750` for IPv6) → parts; port 0 picks a free port. */
export function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]+)):(\d{1,5})$/.exec(text.trim());
  const port = Number(m?.[3]);
  if (!m || port > 65535) throw new DriftError('DRIFT_ERR_USAGE', `--listen must be HOST:PORT, e.g. 127.0.0.1:8750 or [::1]:8750 (got ${JSON.stringify(text)})`);
  return { host: (m[1] ?? m[2]) as string, port };
}

function parseCount(text: string, option: string, min: number, max: number): number {
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || n < min || n > max) throw new DriftError('DRIFT_ERR_USAGE', `${option} must be a whole number from ${min} to ${max} (got ${JSON.stringify(text)})`);
  return n;
}

function parseShare(text: string, option: string): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0 || n >= 1) throw new DriftError('DRIFT_ERR_USAGE', `${option} must be a share between 0 and 1, e.g. 0.5 (got ${JSON.stringify(text)})`);
  return n;
}

/**
 * Merge flags over the file's values and defaults, validate, and freeze (pure).
 * `where` names the config file in messages.
 */
export function resolveServerConfig(flags: ServerFlags, file: ServerFile = {}, where = '--config'): ServerConfig {
  const stateDir = flags.stateDir ?? file['state-dir'] ?? DEFAULTS.stateDir;
  const tlsCert = flags.tlsCert ?? file['tls-cert'];
  const tlsKey = flags.tlsKey ?? file['tls-key'];
  if ((tlsCert === undefined) !== (tlsKey === undefined)) {
    throw new DriftError('DRIFT_ERR_USAGE', `--tls-cert and --tls-key go together (only ${tlsCert !== undefined ? '--tls-cert' : '--tls-key'} given${flags.config ? `, flags and ${where} merged` : ''})`);
  }
  const maxBodyText = flags.maxBody ?? file['max-body'];
  const cfg: ServerConfig = {
    listen: Object.freeze(parseListen(flags.listen ?? file.listen ?? DEFAULTS.listen)),
    stateDir,
    db: flags.db ?? file.db ?? join(stateDir, 'drift.db'),
    enrollSecretFile: flags.enrollSecretFile ?? file['enroll-secret-file'] ?? DEFAULTS.enrollSecretFile,
    adminTokenFile: flags.adminTokenFile ?? file['admin-token-file'] ?? DEFAULTS.adminTokenFile,
    baselinePubkeys: Object.freeze([...(flags.baselinePubkey?.length ? flags.baselinePubkey : (file['baseline-pubkey'] ?? []))]),
    tls: tlsCert !== undefined && tlsKey !== undefined ? Object.freeze({ cert: tlsCert, key: tlsKey }) : null,
    rules: Object.freeze([...(flags.rules?.length ? flags.rules : (file.rules ?? []))]),
    maxBody: maxBodyText === undefined ? DEFAULTS.maxBody : parseSize(maxBodyText, '--max-body'),
    retentionMs: parseDuration(flags.retention ?? file.retention ?? DEFAULTS.retention, '--retention'),
    silentAfterMs: parseDuration(flags.silentAfter ?? file['silent-after'] ?? DEFAULTS.silentAfter, '--silent-after'),
    fleetWideShare: parseShare(flags.fleetWideShare ?? file['fleet-wide-share'] ?? '0.5', '--fleet-wide-share'),
    rareShare: parseShare(flags.rareShare ?? file['rare-share'] ?? '0.1', '--rare-share'),
    roles: flags.roles?.length ? Object.freeze([...flags.roles]) : file.roles ? Object.freeze([...file.roles]) : null,
    reportWorkers: Object.freeze(reportWorkers(flags, file)),
  };
  return Object.freeze(cfg);
}

/** The report workers' settings: 0 workers decides reports on the main thread (not advised: a large report then stalls the collector). */
function reportWorkers(flags: ServerFlags, file: ServerFile): ServerConfig['reportWorkers'] {
  const sizeText = flags.reportWorkers ?? file['report-workers'];
  const size = sizeText === undefined ? defaultWorkers() : parseCount(sizeText, '--report-workers', 0, 64);
  const queueText = flags.reportQueue ?? file['report-queue'];
  const heapText = flags.reportHeap ?? file['report-heap'];
  const heapBytes = heapText === undefined ? POOL_DEFAULTS.heapMb * 1024 * 1024 : parseSize(heapText, '--report-heap');
  if (heapBytes < 64 * 1024 * 1024) throw new DriftError('DRIFT_ERR_USAGE', `--report-heap must be at least 64MiB (got ${JSON.stringify(heapText)}): a worker needs that much to start and decide a clean host's report`);
  const timeoutText = flags.reportTimeout ?? file['report-timeout'];
  return {
    size,
    queue: queueText === undefined ? Math.max(1, size) * POOL_DEFAULTS.queuePerWorker : parseCount(queueText, '--report-queue', 1, 100_000),
    timeoutMs: timeoutText === undefined ? POOL_DEFAULTS.timeoutMs : parseDuration(timeoutText, '--report-timeout'),
    heapMb: Math.floor(heapBytes / 1024 / 1024),
  };
}

/** Read and validate the YAML config file; errors name the file and the key. */
export async function readServerFile(path: string): Promise<ServerFile> {
  let text: string;
  try { text = await readSmall(path, 1024 * 1024); } catch (err) {
    throw new DriftError('DRIFT_ERR_CONFIG', `cannot read config file ${path}: ${errnoOf(err)}`, { cause: err });
  }
  let data: unknown;
  try { data = parseYaml(text) ?? {}; } catch (err) {
    throw new DriftError('DRIFT_ERR_CONFIG', `${path}: not valid YAML: ${(err as Error).message}`, { cause: err });
  }
  const parsed = ServerFileSchema.safeParse(data);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const key = issue?.path.join('.') ?? '';
    const what = issue?.code === 'unrecognized_keys' ? `unknown key ${issue.keys.join(', ')} (keys are the long flag names: ${Object.keys(ServerFileSchema.shape).join(', ')})` : `${key || '(top)'}: ${issue?.message ?? 'invalid'}`;
    throw new DriftError('DRIFT_ERR_CONFIG', `${path}: ${what}`);
  }
  return parsed.data;
}

/** Flags plus `--config FILE`, resolved and frozen. */
export async function loadServerConfig(flags: ServerFlags): Promise<ServerConfig> {
  const file = flags.config ? await readServerFile(flags.config) : {};
  return resolveServerConfig(flags, file, flags.config ?? '--config');
}

/** Read at most `max` bytes of a file as UTF-8 (a config or secret file is small; a huge one is an error). */
async function readSmall(path: string, max: number): Promise<string> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(max + 1);
    const { bytesRead } = await fh.read(buf, 0, max + 1, 0);
    if (bytesRead > max) throw Object.assign(new Error(`larger than ${max} bytes`), { code: 'EFBIG' });
    return buf.subarray(0, bytesRead).toString('utf8');
  } finally { await fh.close(); }
}

/** Fewest characters of an enrollment secret or admin token. */
export const SECRET_MIN_CHARS = 16;

/**
 * Read a secret file (enrollment secret, admin token) of the collector: at least
 * SECRET_MIN_CHARS characters, and not readable or writable by others (every host holds
 * the enrollment secret, so a copy others on the collector can read is one more way in).
 * DRIFT_ERR_CONFIG (exit 2) naming the flag and the file (agent/secret.ts).
 */
export async function readSecret(path: string, flag: string): Promise<string> {
  return readSecretFile(path, { flag, minLength: SECRET_MIN_CHARS, private: true });
}

/**
 * Read the enrollment secret and the admin token; refuses one value for both (every
 * host holds the enrollment secret: it must never be the admin token).
 */
export async function readSecrets(cfg: Pick<ServerConfig, 'enrollSecretFile' | 'adminTokenFile'>): Promise<{ enrollSecret: string; adminToken: string }> {
  const enrollSecret = await readSecret(cfg.enrollSecretFile, '--enroll-secret-file');
  const adminToken = await readSecret(cfg.adminTokenFile, '--admin-token-file');
  if (enrollSecret === adminToken) {
    throw new DriftError('DRIFT_ERR_CONFIG', `--enroll-secret-file ${cfg.enrollSecretFile} and --admin-token-file ${cfg.adminTokenFile} hold the same value; every host holds the enrollment secret, so the admin token must differ: write a new one (head -c 32 /dev/urandom | base64)`);
  }
  return { enrollSecret, adminToken };
}
