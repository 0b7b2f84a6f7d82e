import type { Command } from 'commander';
import { resolve } from 'node:path';
import { collectManifest } from '../../manifest.js';
import { readHostInfo } from '../../identity.js';
import { baselineDigest } from '../../baseline.js';
import { loadPublicKey, verifyBaseline } from '../../sign.js';
import { loadRuleSet } from '../../rules/load.js';
import { DriftError } from '../../protocol/errors.js';
import { BaselineSchema, ManifestSchema, type Manifest } from '../../protocol/manifest.js';
import { compare } from '../../engine/compare.js';
import { buildReport, exitCodeOf } from '../../engine/report.js';
import { format, FORMATS, useColor, type FormatName } from '../format/index.js';
import { formatJunitMany } from '../format/junit.js';
import { sortedJson } from '../../protocol/canonical.js';
import { readSecretFile } from '../../transport/client.js';
import { FLEET_SCHEMA, fleetSummary, hostReport, remoteFleet, remoteHost } from '../remote.js';
import { exit } from '../exit.js';
import { defaultStateDir, resolveRootAndProc } from '../../config.js';
import { collect, readJsonFile } from '../common.js';

interface ScanOptions {
  baseline?: string;
  pubkey?: string[];
  root?: string;
  proc?: string;
  manifest?: string;
  rules?: string[];
  format: string;
  stateDir?: string;
  forceRehash: boolean;
  collector?: string;
  adminTokenFile?: string;
  host?: string;
  fleet: boolean;
}

export function register(program: Command): void {
  program
    .command('scan')
    .description('Compare this host, a root folder or a saved manifest with its image\'s baseline and explain every difference.')
    .option('--baseline <file>', 'the image\'s baseline (from drift baseline)')
    .option('--pubkey <file>', 'trusted ed25519 public key: refuse a baseline not signed by one of them (repeatable)', collect)
    .option('--root <dir>', 'scan this root folder instead of /')
    .option('--proc <dir>', 'read processes and ports from this /proc (default: /proc for the live host, none for --root)')
    .option('--manifest <file>', 'compare this saved manifest instead of collecting one')
    .option('--rules <dir>', 'site rule folder, after the shipped rules (repeatable)', collect)
    .option('--format <format>', `output format: ${FORMATS.join(', ')}`, 'text')
    .option('--state-dir <dir>', 'folder for the stat cache (default $DRIFT_STATE_DIR, /var/lib/drift as root)')
    .option('--force-rehash', 'hash every file, ignoring the stat cache', false)
    .option('--collector <url>', 'ask this collector (drift server) instead of scanning here; with --host or --fleet')
    .option('--admin-token-file <file>', 'the collector\'s admin token (with --collector)')
    .option('--host <id>', 'with --collector: the collector\'s view of this host')
    .option('--fleet', 'with --collector: every host, cohorts, fleet-wide drift and snowflakes', false)
    .addHelpText('after', `
Exit status (as diff(1)): 0 no drift, 1 drift found, 2 trouble (bad input, unreadable baseline, bad signature).
Colour is used only on a terminal, and never when NO_COLOR is set.

Examples:
  drift scan --baseline /etc/drift/baseline.json --pubkey /etc/drift/bake.pub
  drift scan --root /mnt/suspect --baseline baseline.json --format json
  drift scan --manifest host.json --baseline baseline.json --format junit > drift.xml
  drift scan --collector https://drift.internal:8750 --admin-token-file /etc/drift/admin.token --fleet`)
    .action(async (opts: ScanOptions) => {
      if (!(FORMATS as readonly string[]).includes(opts.format)) {
        throw new DriftError('DRIFT_ERR_USAGE', `scan: --format must be one of ${FORMATS.join(', ')}, got "${opts.format}"`);
      }
      if (opts.collector !== undefined || opts.host !== undefined || opts.fleet) {
        exit(await scanRemote(opts, opts.format as FormatName));
        return;
      }
      if (!opts.baseline) throw new DriftError('DRIFT_ERR_USAGE', 'scan: --baseline FILE is required (the image\'s baseline from drift baseline)');
      const baselinePath = resolve(opts.baseline);
      const baseline = await readJsonFile(baselinePath, BaselineSchema, 'baseline');
      if (opts.pubkey && opts.pubkey.length > 0) {
        const keys = await Promise.all(opts.pubkey.map((p) => loadPublicKey(p)));
        verifyBaseline(baseline, keys, baselinePath);
      }
      const rules = await loadRuleSet(opts.rules ?? []);
      let manifest: Manifest;
      let target: string;
      if (opts.manifest) {
        manifest = await readJsonFile(resolve(opts.manifest), ManifestSchema, 'manifest');
        target = manifest.host.hostname || resolve(opts.manifest);
      } else {
        const { root, proc } = resolveRootAndProc(opts.root, opts.proc);
        manifest = await collectManifest({
          root, proc, rules,
          stateDir: resolve(opts.stateDir ?? defaultStateDir()),
          forceRehash: opts.forceRehash,
        }, await readHostInfo(root));
        target = root === '/' ? manifest.host.hostname : root;
      }
      const findings = compare({ baseline, manifest, rules });
      const report = buildReport({
        target,
        baseline: { imageId: baseline.host.image?.id ?? 'unknown', digest: baselineDigest(baseline) },
        findings,
        unread: manifest.unread,
      });
      process.stdout.write(format(report, { format: opts.format as FormatName, color: useColor(process.stdout, process.env) }));
      exit(exitCodeOf(report));
    });
}

/** `--collector`: print the collector's view of one host or the fleet; returns the exit code. */
async function scanRemote(opts: ScanOptions, fmt: FormatName): Promise<number> {
  if (!opts.collector) throw new DriftError('DRIFT_ERR_USAGE', 'scan: --host and --fleet ask a collector: give --collector URL too');
  if (!opts.adminTokenFile) throw new DriftError('DRIFT_ERR_USAGE', 'scan: --collector needs --admin-token-file FILE (the collector\'s admin token)');
  if ((opts.host === undefined) === !opts.fleet) throw new DriftError('DRIFT_ERR_USAGE', 'scan: with --collector, give exactly one of --host ID or --fleet');
  if (opts.baseline || opts.manifest || opts.root) throw new DriftError('DRIFT_ERR_USAGE', 'scan: --collector reads the collector\'s view; --baseline, --manifest and --root are for a local scan');
  const token = await readSecretFile(opts.adminTokenFile);
  const color = useColor(process.stdout, process.env);
  if (opts.host !== undefined) {
    const host = await remoteHost(opts.collector, token, opts.host);
    if (host.status === 'unknown-image') {
      throw new DriftError('DRIFT_ERR_NOT_FOUND', `host ${host.id} reports image ${host.imageId ?? '(none)'}, which has no baseline on ${opts.collector}; push one with drift baseline --push`);
    }
    if (host.status === 'silent') process.stderr.write(`drift: warning: host ${host.id} is silent (last report ${host.lastSeen ?? 'never'}); this is its last known state\n`);
    const report = hostReport(host);
    process.stdout.write(format(report, { format: fmt, color }));
    return exitCodeOf(report);
  }
  const { hosts, cohorts, reports } = await remoteFleet(opts.collector, token);
  switch (fmt) {
    case 'json':
      process.stdout.write(sortedJson({ schema: FLEET_SCHEMA, hosts, cohorts, reports }));
      break;
    case 'junit':
      process.stdout.write(formatJunitMany(reports));
      break;
    case 'text':
    case 'markdown':
      process.stdout.write([fleetSummary(hosts, cohorts, fmt === 'markdown'), ...reports.map((r) => format(r, { format: fmt, color }))].join('\n'));
      break;
    default: {
      const never: never = fmt;
      throw new TypeError(`unknown format ${String(never)}`);
    }
  }
  return reports.some((r) => exitCodeOf(r) === 1) ? 1 : 0;
}
