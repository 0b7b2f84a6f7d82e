import { stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { DriftError, errnoOf } from './protocol/errors.js';
import { DEFAULT_SPOOL_MAX_BYTES } from './transport/spool.js';
import { ByteBudget, DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_SCAN_BYTES, readFileChecked, unreadableWhy } from './hash.js';

/** Largest agent config file read. */
const AGENT_CONFIG_MAX_BYTES = 1024 * 1024;
import { SECTIONS, type SectionName } from './protocol/manifest.js';
import { parseDuration, parseSize } from './units.js';

/**
 * Configuration of `drift agent`. Every setting is a flag and, with the same name, a
 * key of an optional YAML file (`--config FILE`):
 *
 * ```yaml
 * collector: https://collector.internal:8443
 * enroll-secret-file: /etc/drift/enroll-secret
 * interval: 5m
 * splay: 30s
 * role: web
 * rules: [/etc/drift/rules.d]
 * max-file-bytes: 2GiB      # larger files are listed unread, not read
 * max-scan-bytes: 32GiB     # bytes one collection may read in all
 * ```
 *
 * Flags given on the command line win over the file; the file wins over defaults.
 * The result is validated once, with messages naming the flag or file key, then frozen.
 */

/** Durations and sizes: one parser for agent and collector (binary size units). */
export { parseDuration, parseSize } from './units.js';

/** A size setting (number of bytes or text for parseSize) of at least 1 byte; `name` is its flag/key name. */
const sizeSetting = (name: string, example: string) => z.union([z.number(), z.string()]).transform((v, ctx) => {
  const n = typeof v === 'number' ? v : parseSize(v);
  if (n === null || !Number.isInteger(n) || n < 1) {
    ctx.addIssue({ code: 'custom', message: `${name}: ${JSON.stringify(v)} is not a size of at least 1 byte (use ${example})` });
    return z.NEVER;
  }
  return n;
});

/**
 * The byte budgets of one collection from `--max-file-bytes` and `--max-scan-bytes`
 * (text for parseSize; undefined: the default). A bad size is a DRIFT_ERR_USAGE naming the flag.
 */
export function byteBudget(maxFile: string | number | undefined, maxScan: string | number | undefined): ByteBudget {
  const read = (v: string | number | undefined, flag: string, fallback: number): number => {
    if (v === undefined) return fallback;
    const n = typeof v === 'number' ? v : parseSize(v);
    if (n === null || !Number.isInteger(n) || n < 1) throw new DriftError('DRIFT_ERR_USAGE', `--${flag}: ${JSON.stringify(v)} is not a size of at least 1 byte (use 2GiB, 512MiB, 1073741824)`);
    return n;
  };
  return new ByteBudget(read(maxFile, 'max-file-bytes', DEFAULT_MAX_FILE_BYTES), read(maxScan, 'max-scan-bytes', DEFAULT_MAX_SCAN_BYTES));
}

const duration = () => z.union([z.string(), z.number()]).transform((v, ctx) => {
  const ms = typeof v === 'number' ? Math.round(v * 1000) : parseDuration(v);
  if (ms === null) { ctx.addIssue({ code: 'custom', message: `${JSON.stringify(v)} is not a duration (use 30s, 5m, 1h)` }); return z.NEVER; }
  return ms;
});

/** The settings as a file or the flags give them (all optional; names are the long flag names). */
export const AgentConfigInputSchema = z.strictObject({
  collector: z.string().min(1).optional(),
  'enroll-secret-file': z.string().min(1).optional(),
  root: z.string().min(1).optional(),
  proc: z.string().min(1).optional(),
  'state-dir': z.string().min(1).optional(),
  interval: duration().optional(),
  splay: duration().optional(),
  timeout: duration().optional(),
  once: z.boolean().optional(),
  'host-id': z.string().min(1).optional(),
  role: z.string().min(1).optional(),
  rules: z.array(z.string().min(1)).optional(),
  'spool-max': z.union([z.number(), z.string().regex(/^\d+$/).transform(Number)]).pipe(z.number().int().min(1, 'spool-max must be at least 1')).optional(),
  'spool-max-bytes': sizeSetting('spool-max-bytes', '268435456, 512MiB, 1GiB').optional(),
  'max-file-bytes': sizeSetting('max-file-bytes', '2GiB, 512MiB, 1073741824').optional(),
  'max-scan-bytes': sizeSetting('max-scan-bytes', '32GiB, 1TiB').optional(),
  'ca-file': z.string().min(1).optional(),
  sections: z.union([z.string(), z.array(z.string())]).transform((v) => parseSections(Array.isArray(v) ? v.join(',') : v, 'sections')).optional(),
});
export type AgentConfigInput = z.input<typeof AgentConfigInputSchema>;

/** The agent's settings, resolved and validated. */
export interface AgentConfig {
  readonly collector: string;
  readonly enrollSecretFile: string;
  /** Root folder to collect: `/` for the live host. */
  readonly root: string;
  /** The /proc to read, or null: an offline root without `--proc` collects no processes or ports. */
  readonly proc: string | null;
  readonly stateDir: string;
  readonly intervalMs: number;
  readonly splayMs: number;
  readonly timeoutMs: number;
  readonly once: boolean;
  readonly hostId: string | null;
  readonly role: string | null;
  readonly rules: readonly string[];
  readonly spoolMax: number;
  /** The most bytes of manifests the spool keeps (default 256 MiB). */
  readonly spoolMaxBytes: number;
  /** Per-file byte budget: larger files are unread, not read (default 2 GiB). */
  readonly maxFileBytes: number;
  /** Per-collection byte budget of everything read (default 32 GiB). */
  readonly maxScanBytes: number;
  readonly caFile: string | null;
  /** The sections to collect (`--sections`); null for all. */
  readonly sections: readonly SectionName[] | null;
}

/**
 * What a root and a /proc mean together: the live host (`/`) reads /proc unless told
 * otherwise; any other root reads no live state unless a /proc is given (an offline
 * image has nothing running). Shared by the agent and the baseline and scan commands.
 */
export function resolveRootAndProc(root: string | undefined, proc: string | undefined): { root: string; proc: string | null } {
  const r = resolve(root ?? '/');
  if (proc !== undefined) return { root: r, proc: resolve(proc) };
  return { root: r, proc: r === '/' ? '/proc' : null };
}

/**
 * Refuse a root that is not an existing folder: collecting nothing would give a
 * signed empty baseline, or a scan in which everything was removed.
 */
export async function requireRootDir(root: string, flag = '--root'): Promise<void> {
  let isDir: boolean;
  try { isDir = (await stat(root)).isDirectory(); } catch (err) {
    throw new DriftError('DRIFT_ERR_USAGE', `${flag} ${root} cannot be read (${errnoOf(err)}); give the folder of a mounted image, a chroot or /`, { cause: err });
  }
  if (!isDir) throw new DriftError('DRIFT_ERR_USAGE', `${flag} ${root} is not a folder; give the folder of a mounted image, a chroot or /`);
}

/**
 * Parse `--sections packages,files,...`: a comma-separated subset of the manifest
 * sections, in manifest order without duplicates. Refuses an unknown or empty list.
 */
export function parseSections(text: string, flag = '--sections'): SectionName[] {
  const names = text.split(',').map((n) => n.trim()).filter((n) => n !== '');
  const unknown = names.filter((n) => !(SECTIONS as readonly string[]).includes(n));
  if (names.length === 0 || unknown.length > 0) {
    throw new DriftError('DRIFT_ERR_USAGE', `${flag} must list sections among ${SECTIONS.join(', ')} separated by commas${unknown.length ? `; unknown: ${unknown.map((u) => JSON.stringify(u)).join(', ')}` : ''}`);
  }
  return SECTIONS.filter((s) => names.includes(s));
}

/**
 * Default state folder: $DRIFT_STATE_DIR, else systemd's $STATE_DIRECTORY, else
 * /var/lib/drift for root and ~/.local/state/drift for anyone else (the same folder
 * `drift baseline` and `drift scan` use for the stat cache).
 */
export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env['DRIFT_STATE_DIR']) return resolve(env['DRIFT_STATE_DIR']);
  const first = env['STATE_DIRECTORY']?.split(':')[0];
  if (first) return first;
  if (process.getuid?.() === 0) return '/var/lib/drift';
  return join(homedir(), '.local', 'state', 'drift');
}

function describe(err: z.ZodError, where: string): string {
  return err.issues.map((i) => {
    const key = i.path.join('.');
    if (i.code === 'unrecognized_keys') return `${where}: unknown setting ${i.keys.map((k) => JSON.stringify(k)).join(', ')} (see drift agent --help)`;
    return `${where}: ${key ? `${key}: ` : ''}${i.message}`;
  }).join('; ');
}

/** Parse a YAML config file's text; errors name the file and line. */
export function parseConfigFile(text: string, path: string): z.output<typeof AgentConfigInputSchema> {
  const doc = parseDocument(text);
  const first = doc.errors[0];
  if (first) {
    const pos = first.linePos?.[0];
    throw new DriftError('DRIFT_ERR_CONFIG', `${path}${pos ? `:${pos.line}:${pos.col}` : ''}: ${(first.message.split('\n')[0] ?? 'invalid YAML').replace(/ at line \d+, column \d+:?$/, '')}`);
  }
  const data: unknown = doc.toJS() ?? {};
  const parsed = AgentConfigInputSchema.safeParse(data);
  if (!parsed.success) throw new DriftError('DRIFT_ERR_CONFIG', describe(parsed.error, path));
  return parsed.data;
}

/**
 * Merge flags over the file over defaults and validate. `flags` holds only the flags
 * given on the command line (names as in the file). Relative paths in the file are
 * relative to the file's folder; relative paths in flags to the working directory.
 */
export async function resolveAgentConfig(flags: Record<string, unknown>, env: NodeJS.ProcessEnv = process.env): Promise<AgentConfig> {
  const parsedFlags = AgentConfigInputSchema.extend({ config: z.string().optional() }).safeParse(flags);
  if (!parsedFlags.success) throw new DriftError('DRIFT_ERR_USAGE', describe(parsedFlags.error, 'drift agent flags'));
  const { config: configPath, ...cli } = parsedFlags.data;

  let file: z.output<typeof AgentConfigInputSchema> = {};
  let fileDir = process.cwd();
  if (configPath !== undefined) {
    let text: string;
    // No-follow, non-blocking, regular file only and bounded, as every file drift reads.
    try { text = readFileChecked(configPath, AGENT_CONFIG_MAX_BYTES, { checkPath: false }).toString('utf8'); } catch (err) {
      throw new DriftError('DRIFT_ERR_CONFIG', `cannot read agent config ${configPath}: ${unreadableWhy(errnoOf(err), AGENT_CONFIG_MAX_BYTES)}`, { cause: err });
    }
    file = parseConfigFile(text, configPath);
    fileDir = resolve(configPath, '..');
  }
  const fromFile = (p: string | undefined): string | undefined => (p === undefined ? undefined : isAbsolute(p) ? p : resolve(fileDir, p));
  const pick = <K extends keyof typeof file>(k: K): (typeof file)[K] => (cli[k] !== undefined ? cli[k] : file[k]);
  const pickPath = (k: 'enroll-secret-file' | 'root' | 'proc' | 'state-dir' | 'ca-file'): string | undefined => cli[k] ?? fromFile(file[k]);

  const collector = pick('collector');
  if (!collector) throw new DriftError('DRIFT_ERR_USAGE', 'drift agent needs --collector URL (or `collector:` in --config)');
  const enrollSecretFile = pickPath('enroll-secret-file');
  if (!enrollSecretFile) throw new DriftError('DRIFT_ERR_USAGE', 'drift agent needs --enroll-secret-file F (or `enroll-secret-file:` in --config)');
  const { root, proc } = resolveRootAndProc(pickPath('root'), pickPath('proc'));
  const intervalMs = pick('interval') ?? 300_000;
  const splayMs = pick('splay') ?? 30_000;
  if (intervalMs < 1000) throw new DriftError('DRIFT_ERR_USAGE', `interval ${intervalMs} ms is too short; use at least 1s`);
  if (splayMs > intervalMs) throw new DriftError('DRIFT_ERR_USAGE', `splay (${splayMs} ms) must not exceed the interval (${intervalMs} ms)`);
  const rules = [...(file.rules ?? []).map((r) => fromFile(r) as string), ...(cli.rules ?? [])];

  return Object.freeze({
    collector,
    enrollSecretFile,
    root,
    proc,
    stateDir: resolve(pickPath('state-dir') ?? defaultStateDir(env)),
    intervalMs,
    splayMs,
    timeoutMs: pick('timeout') ?? 30_000,
    once: pick('once') ?? false,
    hostId: pick('host-id') ?? null,
    role: pick('role') ?? null,
    rules: Object.freeze(rules),
    spoolMax: pick('spool-max') ?? 1000,
    spoolMaxBytes: pick('spool-max-bytes') ?? DEFAULT_SPOOL_MAX_BYTES,
    maxFileBytes: pick('max-file-bytes') ?? DEFAULT_MAX_FILE_BYTES,
    maxScanBytes: pick('max-scan-bytes') ?? DEFAULT_MAX_SCAN_BYTES,
    caFile: pickPath('ca-file') ?? null,
    sections: pick('sections') ?? null,
  });
}
