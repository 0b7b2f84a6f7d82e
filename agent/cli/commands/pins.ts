import type { Command } from 'commander';
import { userInfo } from 'node:os';
import { z } from 'zod';
import { DriftError } from '../../protocol/errors.js';
import { FirstBootSchema } from '../../protocol/pins.js';
import { fetchPins, readSecretFile, repinHost } from '../../transport/client.js';
import { collect } from '../common.js';

interface PinsOptions {
  collector?: string;
  adminTokenFile?: string;
  path?: string[];
  reason?: string;
  by?: string;
  format: string;
}

/** The parts of `GET /v1/hosts/{id}/pins` this command prints (docs/api.md). */
const PinsViewSchema = z.object({
  hostId: z.string(),
  firstBoot: FirstBootSchema.nullable(),
  pins: z.array(z.object({ path: z.string(), firstSeen: z.string(), entry: z.object({ type: z.string(), mode: z.string(), sha256: z.string().optional(), target: z.string().optional() }).passthrough().nullable() })),
  journal: z.array(z.object({ at: z.string(), action: z.string(), by: z.string().nullable(), reason: z.string().nullable(), paths: z.array(z.string()) })),
});

const RepinAnswerSchema = z.object({ hostId: z.string(), changed: z.array(z.string()), findings: z.number() });

export function register(program: Command): void {
  program
    .command('pins')
    .description('List or re-pin the first-boot values a collector pinned for a host (an operator\'s command).')
    .argument('<action>', 'list or repin')
    .argument('<host>', 'the host id (its machine-id, or the id it enrolled with)')
    .option('--collector <url>', 'the collector (drift server)')
    .option('--admin-token-file <file>', 'the collector\'s admin token')
    .option('--path <path>', 'repin: only this path (repeatable; default: every path)', collect)
    .option('--reason <text>', 'repin: why (required; kept in the pin journal)')
    .option('--by <name>', 'repin: who re-pins, for the journal (default: this user\'s login name)')
    .option('--format <format>', 'text or json', 'text')
    .addHelpText('after', `
First boot happens once: at a host's first report the collector pins the values its
expect rules accepted, and a later change to one is drift. After a wanted change (a
new key for the default user, a new hostname), re-pin: the host's last reported values
become its pins and its findings are recomputed. Every re-pin is journaled.

Exit status: 0 done, 2 trouble (bad arguments, unknown host, collector unreachable).

Examples:
  drift pins list 0123456789abcdef0123456789abcdef --collector https://drift.internal:8750 --admin-token-file ~/.drift-admin
  drift pins repin web-3 --path /home/admin/.ssh/authorized_keys --reason "second deploy key, CHG-1234" \\
    --collector https://drift.internal:8750 --admin-token-file ~/.drift-admin`)
    .action(async (action: string, host: string, opts: PinsOptions) => {
      if (action !== 'list' && action !== 'repin') throw new DriftError('DRIFT_ERR_USAGE', `pins: action must be list or repin, got "${action}"`);
      if (opts.format !== 'text' && opts.format !== 'json') throw new DriftError('DRIFT_ERR_USAGE', `pins: --format must be text or json, got "${opts.format}"`);
      if (!opts.collector) throw new DriftError('DRIFT_ERR_USAGE', 'pins: --collector URL is required (the drift server that pinned the host)');
      if (!opts.adminTokenFile) throw new DriftError('DRIFT_ERR_USAGE', 'pins: --admin-token-file FILE is required (the collector\'s admin token)');
      const token = await readSecretFile(opts.adminTokenFile);
      if (action === 'list') {
        if (opts.path || opts.reason) throw new DriftError('DRIFT_ERR_USAGE', 'pins list: --path and --reason are for repin');
        const raw = await fetchPins(opts.collector, token, host);
        if (opts.format === 'json') { process.stdout.write(`${JSON.stringify(raw, null, 2)}\n`); return; }
        const view = PinsViewSchema.safeParse(raw);
        if (!view.success) throw new DriftError('DRIFT_ERR_MANIFEST', `${opts.collector} answered a pin list this drift does not understand (${view.error.issues[0]?.message ?? 'invalid'}); use --format json or a matching drift version`);
        process.stdout.write(formatPins(view.data));
        return;
      }
      if (!opts.reason || opts.reason.trim() === '') throw new DriftError('DRIFT_ERR_USAGE', 'pins repin: --reason TEXT is required: a re-pin accepts a change after first boot, and the journal says why');
      const by = opts.by ?? safeUser();
      const body = { reason: opts.reason, ...(opts.path ? { paths: opts.path } : {}), ...(by ? { by } : {}) };
      const raw = await repinHost(opts.collector, token, host, body);
      if (opts.format === 'json') { process.stdout.write(`${JSON.stringify(raw, null, 2)}\n`); return; }
      const answer = RepinAnswerSchema.safeParse(raw);
      if (!answer.success) throw new DriftError('DRIFT_ERR_MANIFEST', `${opts.collector} answered a re-pin this drift does not understand; use --format json`);
      const a = answer.data;
      const what = a.changed.length === 0 ? 'no pin changed' : `${a.changed.length} pin${a.changed.length === 1 ? '' : 's'} changed: ${a.changed.join(', ')}`;
      process.stdout.write(`re-pinned host ${a.hostId}: ${what}; ${a.findings} finding${a.findings === 1 ? '' : 's'} now\n`);
    });
}

function safeUser(): string | undefined {
  try { return userInfo().username; } catch { return undefined; }
}

function formatPins(v: z.infer<typeof PinsViewSchema>): string {
  const out: string[] = [];
  if (!v.firstBoot) {
    out.push(`host ${v.hostId}: nothing pinned yet (it has not reported against a baseline)`);
  } else {
    const keys = v.firstBoot.keys === 'verified' ? `; SSH keys of ${v.firstBoot.user ?? 'the default user'} verified against the instance's metadata`
      : v.firstBoot.keys === 'trust' ? `; SSH keys of ${v.firstBoot.user ?? 'the default user'} pinned on trust, not verified` : '';
    out.push(`host ${v.hostId}: first boot pinned ${v.firstBoot.pinnedAt}, ${v.firstBoot.pins} path${v.firstBoot.pins === 1 ? '' : 's'}${keys}`);
    for (const p of v.pins) {
      const e = p.entry;
      const value = e === null ? 'absent' : e.type === 'symlink' ? `symlink → ${e.target ?? '?'}` : `${e.type} ${e.mode}${e.sha256 ? ` sha256 ${e.sha256.slice(0, 12)}…` : ''}`;
      out.push(`  ${p.path}  ${value}  (since ${p.firstSeen})`);
    }
  }
  if (v.journal.length > 0) {
    out.push('journal (newest first):');
    for (const j of v.journal) {
      const who = j.by ? ` by ${j.by}` : '';
      const why = j.reason ? `: ${j.reason}` : '';
      out.push(`  ${j.at} ${j.action}${who}${why} (${j.paths.length} path${j.paths.length === 1 ? '' : 's'}${j.paths.length > 0 && j.paths.length <= 5 ? `: ${j.paths.join(', ')}` : ''})`);
    }
  }
  return `${out.join('\n')}\n`;
}
