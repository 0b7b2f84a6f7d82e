import { readFile, stat } from 'node:fs/promises';
import { DriftError, errnoOf } from '../protocol/errors.js';
import type { Report } from '../protocol/finding.js';
import type { Manifest } from '../protocol/manifest.js';
import { SEVERITIES_DESC } from '../engine/report.js';
import { mapLimit } from '../limit.js';
import { visible } from '../cli/format/common.js';
import type { VerdictTruncation } from '../cli/format/verdict.js';
import { parseInstanceId } from './ssm.js';
import { parseSshTarget, type SshTarget } from './ssh.js';

/**
 * Fleet sweeps: a list of agentless targets (`ssh://user@host:port`, `ssm://i-…`), each
 * scanned with at most N in flight; one failing target is reported and the sweep goes on.
 */

/** Bounds of a targets file: it may come from an inventory export, so it is checked like any input. */
export const TARGETS_LIMITS = Object.freeze({ bytes: 1024 * 1024, lines: 10_000, lineChars: 1024, concurrency: 64 });

export type Via = 'ssh' | 'ssm';

export type SweepTarget =
  | { via: 'ssm'; text: string; line: number; instanceId: string; imageId?: string }
  | { via: 'ssh'; text: string; line: number; ssh: SshTarget; imageId?: string };

const IMAGE_ID = /^[A-Za-z0-9][A-Za-z0-9._:/+-]{0,255}$/;

/** Parse a targets file's text; every error names `file:line` and what to write instead. */
export function parseTargets(text: string, file: string): SweepTarget[] {
  const lines = text.split('\n');
  if (lines.length > TARGETS_LIMITS.lines) throw new DriftError('DRIFT_ERR_USAGE', `${file}: ${lines.length} lines, more than ${TARGETS_LIMITS.lines}; split the sweep into several files`);
  const out: SweepTarget[] = [];
  const seen = new Map<string, number>();
  lines.forEach((raw, i) => {
    const n = i + 1;
    const where = `${file}:${n}`;
    if (raw.length > TARGETS_LIMITS.lineChars) throw new DriftError('DRIFT_ERR_USAGE', `${where}: line is ${raw.length} characters, more than ${TARGETS_LIMITS.lineChars}`);
    const line = raw.replace(/#.*$/, '').trim();
    if (line === '') return;
    const words = line.split(/\s+/);
    if (words.length > 2) throw new DriftError('DRIFT_ERR_USAGE', `${where}: ${visible(JSON.stringify(line.slice(0, 200)))}: write one target and at most an image id, e.g. "ssm://i-0123456789abcdef0 ami-0abc"`);
    const [url = '', imageId] = words;
    if (imageId !== undefined && !IMAGE_ID.test(imageId)) throw new DriftError('DRIFT_ERR_USAGE', `${where}: ${visible(JSON.stringify(imageId.slice(0, 100)))} is not an image id (letters, digits, . _ : / + -)`);
    const m = /^(ssh|ssm):\/\/(.+)$/.exec(url);
    if (!m) throw new DriftError('DRIFT_ERR_USAGE', `${where}: ${visible(JSON.stringify(url.slice(0, 200)))} is not a target; write ssh://[user@]host[:port] or ssm://i-…`);
    let target: SweepTarget;
    try {
      target = m[1] === 'ssm'
        ? { via: 'ssm', text: url, line: n, instanceId: parseInstanceId(m[2] as string, where) }
        : { via: 'ssh', text: url, line: n, ssh: parseSshTarget(m[2] as string) };
    } catch (err) {
      if (err instanceof DriftError && !err.message.startsWith(where)) throw new DriftError('DRIFT_ERR_USAGE', `${where}: ${err.message}`, { cause: err });
      throw err;
    }
    if (imageId !== undefined) target.imageId = imageId;
    const first = seen.get(url);
    if (first !== undefined) throw new DriftError('DRIFT_ERR_USAGE', `${where}: ${url} is listed twice (first at line ${first}); list each target once`);
    seen.set(url, n);
    out.push(target);
  });
  if (out.length === 0) throw new DriftError('DRIFT_ERR_USAGE', `${file}: no targets (one per line: ssh://[user@]host[:port] or ssm://i-…, an optional image id, # comments)`);
  return out;
}

/** Read and parse a targets file, at most TARGETS_LIMITS.bytes. */
export async function readTargets(file: string): Promise<SweepTarget[]> {
  let text: string;
  try {
    const s = await stat(file);
    if (!s.isFile()) throw new DriftError('DRIFT_ERR_USAGE', `targets file ${file} is not a regular file`);
    if (s.size > TARGETS_LIMITS.bytes) throw new DriftError('DRIFT_ERR_USAGE', `targets file ${file} is ${s.size} bytes, more than ${TARGETS_LIMITS.bytes}; split the sweep`);
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (err instanceof DriftError) throw err;
    throw new DriftError('DRIFT_ERR_IO', `cannot read targets file ${file}: ${errnoOf(err)}`, { cause: err });
  }
  return parseTargets(text, file);
}

/** What came of one target. `exit` is the scan's: 0 clean, 1 drifted, 2 trouble. */
export interface SweepResult {
  target: string;
  via: Via;
  line: number;
  status: 'clean' | 'drifted' | 'error';
  exit: 0 | 1 | 2;
  report?: Report;
  /** The manifest, when the target gave one whole (ssh always; ssm only when it fit in the output). */
  manifest?: Manifest;
  truncated?: VerdictTruncation;
  error?: string;
  /** Set when a collector was given: `posted`, or why not. */
  posted?: string;
  /** Host id the collector keeps the target under. */
  hostId?: string;
}

/** Scan one target; never throws: trouble becomes an exit-2 result. */
export type ScanOne = (t: SweepTarget) => Promise<{ report: Report; manifest?: Manifest; truncated?: VerdictTruncation }>;

/** Run a sweep: every target through `scan`, at most `concurrency` at once, results in the file's order. */
export async function sweep(targets: readonly SweepTarget[], concurrency: number, scan: ScanOne): Promise<SweepResult[]> {
  return mapLimit(targets, concurrency, async (t): Promise<SweepResult> => {
    const base = { target: t.text, via: t.via, line: t.line };
    try {
      const r = await scan(t);
      if (t.imageId !== undefined && r.report.baseline.imageId !== t.imageId) {
        return { ...base, status: 'error', exit: 2, report: r.report, error: `${t.text} was judged against image ${visible(r.report.baseline.imageId)}, but the targets file says ${t.imageId} (line ${t.line}); fix the file or rebuild the host` };
      }
      const drifted = r.report.summary.findings > 0;
      const out: SweepResult = { ...base, status: drifted ? 'drifted' : 'clean', exit: drifted ? 1 : 0, report: r.report };
      if (r.manifest) out.manifest = r.manifest;
      if (r.truncated) out.truncated = r.truncated;
      return out;
    } catch (err) {
      return { ...base, status: 'error', exit: 2, error: visible(err instanceof Error ? err.message : String(err)) };
    }
  });
}

/** The worst exit code of a sweep: 2 > 1 > 0. */
export function worstExit(results: readonly SweepResult[]): 0 | 1 | 2 {
  return results.reduce<0 | 1 | 2>((w, r) => (r.exit > w ? r.exit : w), 0);
}

/** The summary table: one line per target, findings by severity, exit code. */
export function sweepTable(results: readonly SweepResult[]): string {
  const withPost = results.some((r) => r.posted !== undefined);
  const header = ['TARGET', 'VIA', 'STATUS', ...SEVERITIES_DESC.map((s) => s.toUpperCase()), 'EXIT', ...(withPost ? ['POSTED'] : [])];
  const rows = results.map((r) => [
    visible(r.target), r.via, r.status + (r.truncated && (r.truncated.findings > 0 || r.truncated.unread > 0 || r.truncated.diffs > 0) ? ' (truncated)' : ''),
    ...SEVERITIES_DESC.map((s) => (r.report ? String(r.report.summary.bySeverity[s]) : '-')),
    String(r.exit), ...(withPost ? [visible(r.posted ?? '-')] : []),
  ]);
  const widths = header.map((_, i) => Math.max(...[header, ...rows].map((row) => (row[i] ?? '').length)));
  const lines = [header, ...rows].map((row) => row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ').trimEnd());
  const errors = results.filter((r) => r.error !== undefined).map((r) => `${visible(r.target)}: ${r.error ?? ''}`);
  const counts = { clean: 0, drifted: 0, error: 0 };
  for (const r of results) counts[r.status]++;
  return [`drift sweep: ${results.length} targets, ${counts.drifted} drifted, ${counts.clean} clean, ${counts.error} failed; exit ${worstExit(results)}`, '', ...lines,
    ...(errors.length > 0 ? ['', ...errors] : [])].join('\n') + '\n';
}
