import type { Command } from 'commander';
import { gzipSync } from 'node:zlib';
import { collectManifest } from '../../manifest.js';
import { readHostInfo } from '../../identity.js';
import { readInstanceKeys } from '../../instance-data.js';
import { scopeDigest } from '../../baseline.js';
import { canonicalJson } from '../../protocol/canonical.js';
import { DriftError } from '../../protocol/errors.js';
import { ScopeSchema } from '../../protocol/manifest.js';
import { compareUnread } from '../../protocol/unread.js';
import { byteBudget, parseSections, requireRootDir, resolveRootAndProc } from '../../config.js';
import { BUDGET_HELP } from '../common.js';
import { readFileChecked } from '../../hash.js';

/** The most a scope sent on standard input may weigh (a baseline's scope is a few KB). */
export const MAX_SCOPE_BYTES = 16 * 1024 * 1024;

interface CollectOptions {
  root?: string;
  proc?: string;
  scope?: string;
  sections?: string;
  gzip: boolean;
  maxFileBytes?: string;
  maxScanBytes?: string;
}

/** Read standard input whole, refusing more than `max` bytes. */
async function readStdin(max: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > max) throw new DriftError('DRIFT_ERR_TOO_LARGE', `collect: the scope on standard input is over ${max} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

export function register(program: Command): void {
  program
    .command('collect')
    .description('Collect this host\'s manifest within a baseline\'s scope and print it, reading only: what drift scan --ssh runs on a target that has drift.')
    .option('--root <dir>', 'read this root folder instead of /')
    .option('--proc <dir>', 'read processes and ports from this /proc (default: /proc for the live host, none for --root)')
    .requiredOption('--scope <file>', 'the scope to collect (a baseline\'s `scope` object, as JSON); - reads it from standard input')
    .option('--sections <list>', 'collect only these sections: packages,files,processes,ports (comma-separated)')
    .option('--gzip', 'write the manifest gzip-compressed', false)
    .option('--max-file-bytes <size>', BUDGET_HELP.file)
    .option('--max-scan-bytes <size>', BUDGET_HELP.scan)
    .addHelpText('after', `
Writes nothing on the host: no stat cache (every watched file is hashed), no pins, no
stamp. The manifest goes to standard output as canonical JSON (gzip-compressed with --gzip).

Example (what drift scan --ssh HOST runs there, the baseline's scope on stdin):
  drift collect --root / --scope - --gzip < scope.json | gunzip | jq .digests`)
    .action(async (opts: CollectOptions) => {
      const raw = opts.scope === '-' || opts.scope === undefined
        ? await readStdin(MAX_SCOPE_BYTES)
        : readFileChecked(opts.scope, MAX_SCOPE_BYTES, { checkPath: false });
      let data: unknown;
      try { data = JSON.parse(raw.toString('utf8')); } catch {
        throw new DriftError('DRIFT_ERR_USAGE', `collect: the scope (${opts.scope === '-' ? 'standard input' : opts.scope}) is not JSON; give a baseline's "scope" object`);
      }
      const parsed = ScopeSchema.safeParse(data);
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        throw new DriftError('DRIFT_ERR_USAGE', `collect: the scope is not a drift scope (${issue ? `${issue.path.join('.') || '(top level)'}: ${issue.message}` : 'invalid'})`);
      }
      const scope = parsed.data;
      if (scopeDigest(scope) !== scope.digest) throw new DriftError('DRIFT_ERR_USAGE', `collect: the scope does not match its digest ${scope.digest}`);
      const { root, proc } = resolveRootAndProc(opts.root, opts.proc);
      await requireRootDir(root);
      const sections = opts.sections !== undefined ? parseSections(opts.sections) : undefined;
      const host = await readHostInfo(root);
      const instance = await readInstanceKeys(root);
      if (instance.keys) host.instanceKeys = instance.keys;
      // stateDir null: no stat cache is read or written. The collection only reads.
      const manifest = await collectManifest({
        root, proc,
        rules: { vars: { ...scope.vars }, watch: scope.watch, ignore: scope.ignore, expect: scope.expect, policy: [] },
        stateDir: null,
        forceRehash: true,
        budget: byteBudget(opts.maxFileBytes, opts.maxScanBytes),
        sections,
      }, host);
      if (instance.unread.length > 0) manifest.unread = [...manifest.unread, ...instance.unread].sort(compareUnread);
      const text = canonicalJson(manifest);
      process.stdout.write(opts.gzip ? gzipSync(text, { level: 6 }) : `${text}\n`);
    });
}
