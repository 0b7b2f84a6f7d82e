import type { Command } from 'commander';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { collectManifest } from '../../manifest.js';
import { readHostInfo } from '../../identity.js';
import { baselineDigest, checkPackedBaseline, packBaseline, packBaselineBytes, scopedRules, scopeOf, type PackedBaseline } from '../../baseline.js';
import { loadTrustedKeys, TRUST_DIR } from '../../sign.js';
import { loadRuleSet } from '../../rules/load.js';
import { DriftError } from '../../protocol/errors.js';
import { BaselineSchema, ManifestSchema, type Baseline, type HostInfo, type Manifest, type SectionName } from '../../protocol/manifest.js';
import { IMAGE_STAMP_PATH } from '../../identity.js';
import { compareWithDrops } from '../../engine/compare.js';
import { compareWithPins } from '../../engine/pins.js';
import { readInstanceKeys } from '../../instance-data.js';
import { compareUnread } from '../../protocol/unread.js';
import { beforeFirstBoot, readPins, writePins } from '../../pins-store.js';
import type { FirstBoot } from '../../protocol/pins.js';
import type { Drop, Finding } from '../../protocol/finding.js';
import { buildReport, exitCodeOf, linkCauses } from '../../engine/report.js';
import { format, FORMATS, useColor, type FormatName } from '../format/index.js';
import { visible } from '../format/common.js';
import { formatJunitMany } from '../format/junit.js';
import { formatPrometheusMany } from '../format/prometheus.js';
import { nextSteps, shellWord } from '../format/next.js';
import { formatVerdict } from '../format/verdict.js';
import { sortedJson } from '../../protocol/canonical.js';
import { readSecretFile } from '../../transport/client.js';
import { FLEET_SCHEMA, fleetSummary, hostReport, remoteFleet, resolveHost } from '../remote.js';
import { exit } from '../exit.js';
import { byteBudget, defaultStateDir, parseSections, requireRootDir, resolveRootAndProc } from '../../config.js';
import { BUDGET_HELP, clientOptions, collect, readJsonFile } from '../common.js';
import { durationOption } from '../../units.js';
import type { RuleSet } from '../../protocol/rules.js';
import type { SshOptions } from '../../remote/ssh.js';

interface ScanOptions {
  baseline?: string;
  pubkey?: string[];
  trustDir: string;
  anyImage: boolean;
  root?: string;
  proc?: string;
  manifest?: string;
  rules?: string[];
  format: string;
  stateDir?: string;
  forceRehash: boolean;
  maxFileBytes?: string;
  maxScanBytes?: string;
  repin: boolean;
  collector?: string;
  adminTokenFile?: string;
  host?: string;
  fleet: boolean;
  sections?: string;
  caFile?: string;
  finding?: string;
  nextSteps: boolean;
  ssh?: string;
  agentless: boolean;
  knownHosts?: string;
  acceptNew: boolean;
  identity?: string;
  connectTimeout?: string;
  timeout?: string;
  remoteDrift?: string;
  ssm?: string;
  targets?: string;
  region?: string;
  endpoint?: string;
  concurrency?: string;
  readOnly: boolean;
  wholeVerdict: boolean;
  ssmOutputS3?: string;
  s3Endpoint?: string;
}

export function register(program: Command): void {
  program
    .command('scan')
    .description('Compare this host, a root folder or a saved manifest with its image\'s baseline and explain every difference.')
    .option('--baseline <file>', 'the image\'s baseline (from drift baseline)')
    .option('--pubkey <file>', 'trusted ed25519 public key, besides those of --trust-dir (repeatable)', collect)
    .option('--trust-dir <dir>', 'folder of trusted public keys (*.pub); with any trusted key, a baseline not signed by one of them is refused', TRUST_DIR)
    .option('--any-image', 'compare even when the host\'s image stamp names another image than the baseline', false)
    .option('--root <dir>', 'scan this root folder instead of /')
    .option('--proc <dir>', 'read processes and ports from this /proc (default: /proc for the live host, none for --root)')
    .option('--manifest <file>', 'compare this saved manifest instead of collecting one')
    .option('--rules <dir>', 'site rule folder, after the shipped rules (repeatable); with a baseline that records its scope, only their policy is used', collect)
    .option('--sections <list>', 'collect and compare only these sections: packages,files,processes,ports (comma-separated)')
    .option('--format <format>', `output format: ${FORMATS.join(', ')}, or verdict (one compressed line under 24,000 characters, what --ssm reads)`, 'text')
    .option('--state-dir <dir>', 'folder for the stat cache (default $DRIFT_STATE_DIR, /var/lib/drift as root)')
    .option('--force-rehash', 'hash every file, ignoring the stat cache', false)
    .option('--read-only', 'write nothing: no stat cache (every watched file is hashed), first-boot pins read but never written (what --ssm runs on an instance)', false)
    .option('--whole-verdict', 'with --format verdict: never cut the verdict to 24,000 characters; report and manifest whole (what --ssm-output-s3 runs on an instance)', false)
    .option('--max-file-bytes <size>', BUDGET_HELP.file)
    .option('--max-scan-bytes <size>', BUDGET_HELP.scan)
    .option('--repin', 'take this scan\'s first-boot values as the pinned ones (after a wanted change to a pinned path)', false)
    .option('--collector <url>', 'ask this collector (drift server) instead of scanning here; with --host or --fleet')
    .option('--admin-token-file <file>', 'the collector\'s admin token (with --collector)')
    .option('--host <id|hostname>', 'with --collector: the collector\'s view of this host (its id, or its hostname when unique)')
    .option('--fleet', 'with --collector: every host, cohorts, fleet-wide drift and snowflakes', false)
    .option('--ca-file <file>', 'with --collector: extra CA certificates (PEM) to trust for an HTTPS collector')
    .option('--finding <key>', 'report only the finding with this key (a path, dpkg:name:arch, exe|user, proto:addr:port), e.g. with --format json to see it in full')
    .option('--ssm <instance-id>', 'scan this EC2 instance through AWS Systems Manager: runs its baked drift against /etc/drift/baseline.json')
    .option('--targets <file>', 'sweep: scan every target in FILE (ssh://[user@]host[:port] or ssm://i-..., optional image id, # comments)')
    .option('--concurrency <n>', 'with --targets: targets scanned at once (1-64, default 8)')
    .option('--region <region>', 'with --ssm or ssm:// targets: the AWS region (default AWS_REGION)')
    .option('--endpoint <url>', 'with --ssm or ssm:// targets: another SSM endpoint (a VPC endpoint)')
    .option('--ssm-output-s3 <s3-url>', 'with --ssm or ssm:// targets: s3://BUCKET/PREFIX where SSM writes the whole output; the whole report and manifest are read from there (at most 64 MiB)')
    .option('--s3-endpoint <url>', 'with --ssm-output-s3: another S3 endpoint (a VPC endpoint; path-style requests)')
    .option('--timeout <duration>', 'the most one remote target may take, e.g. 2m: with --ssh the whole collection, connect included (default 10m); with --ssm or --targets each target (default 5m)')
    .option('--next-steps', 'after the report, print on standard error what to do next: the exit code, one finding in full, a site rule to paste', false)
    .option('--ssh <target>', 'scan this host over SSH, reading only: [USER@]HOST[:PORT] or ssh://USER@HOST:PORT (with its drift, or agentless where it has none)')
    .option('--agentless', 'with --ssh: collect without drift on the host even where it is installed (fixed read-only commands and SFTP reads)', false)
    .option('--known-hosts <file>', 'with --ssh: the known_hosts file the host key is checked against (default ~/.ssh/known_hosts)')
    .option('--accept-new', 'with --ssh: trust a host key known_hosts does not list yet and add it there (trust on first use)', false)
    .option('--identity <file>', 'with --ssh: private key to log in with (default: the ssh-agent\'s keys, SSH_AUTH_SOCK)')
    .option('--connect-timeout <duration>', 'with --ssh: give up when the connection and SSH handshake take longer (default 10s)')
    .option('--remote-drift <path>', 'with --ssh: the drift executable on the host (default: drift on its PATH)')
    .addHelpText('after', `
Scope: what is watched, ignored and expected is the scope recorded in the baseline at bake
time; rule files on this host (shipped and --rules) give the policy (severity, action) only.
A baseline without a recorded scope is scanned with this host's rules. The report counts
the differences each ignore, expect and policy-ignore rule dropped.

Coverage: a path the baseline recorded that this scan cannot read is a finding of kind
coverage (high, by the shipped policy), never "no drift".

First boot happens once: the first scan of a root (or of this host) pins the values the
expect rules accepted, in the state folder; a later change to them is drift. The default
user's SSH keys are checked against the instance's metadata (run/cloud-init/instance-data*.json).

Exit status (as diff(1)): 0 no drift, 1 drift found, 2 trouble (bad input, a --root that
does not exist, unreadable baseline, bad signature, a host stamped with another image
than the baseline's).
Colour is used only on a terminal, and never when NO_COLOR is set. Names, content
and every other string from the host are printed with control characters and bidi
overrides escaped (\\x1b, \\u202e) in text and markdown.

${BUDGET_HELP.after}

Signatures: the baseline is verified whenever a trusted key is at hand (--pubkey, or *.pub in
--trust-dir, default ${TRUST_DIR}); every report says what was checked: verified, unverified
(signed, but no trusted key here) or unsigned.

SSH (--ssh): the host key must be in known_hosts (strict checking; --accept-new trusts a
first-seen host); login by the ssh-agent or --identity, never a prompt. drift on the host
runs "drift collect --root / --scope - --gzip" (read-only: no stat cache, no pins there)
and sends the manifest back compressed; the same version must be installed there ("drift
--version" runs only after a failed collect, to say why). Where drift is not installed (or with --agentless), the host is read
agentless: find, sha256sum, lsattr, getfattr and stat with paths on stdin, small files
by SFTP, nothing written; packages (dpkg, apk), files and host fields only (processes and
ports are listed as unread). Pins of an SSH target are kept here, in --state-dir. Every failure
(unknown or changed host key, refused login, unreachable host, timeout) exits 2.

Image: a host stamped by drift baseline --stamp (etc/drift/image.json) is compared only with
its own image's baseline; --any-image compares anyway.

--format prometheus writes a node_exporter textfile (findings by severity, scan time, unread
paths): drift scan ... --format prometheus > /var/lib/node_exporter/drift.prom.tmp; mv it in place.

Agentless: --ssm INSTANCE_ID sends AWS-RunShellScript with two fixed commands (see README):
drift must be on the instance's PATH and its baseline at /etc/drift/baseline.json; the
instance answers with a verdict (--format verdict), printed here in --format. A verdict
that had to be truncated to fit SSM's 24,000 characters says so. --targets FILE sweeps
many targets (--concurrency at once), prints a report per target and a summary table,
and exits with the worst code; with --collector and --admin-token-file it posts each
whole manifest as that host's report (via ssh or ssm). An ssm verdict carries the
manifest only when it fits in SSM's output; otherwise the table says it was not posted.
--ssm-output-s3 s3://BUCKET/PREFIX has SSM write the whole output to S3: the instance
prints its whole verdict (report and manifest) and it is read from there (at most 64 MiB,
inflating to at most 256 MiB), so every ssm manifest is posted. The instance's scan
writes nothing there (--read-only).

Examples:
  drift scan --ssm i-0123456789abcdef0 --region eu-west-1
  drift scan --targets fleet.txt --concurrency 8 --collector https://drift.internal:8750 --admin-token-file /etc/drift/admin.token
  drift scan --baseline /etc/drift/baseline.json --pubkey /etc/drift/bake.pub
  drift scan --root /mnt/suspect --baseline baseline.json --format json
  drift scan --manifest host.json --baseline baseline.json --format junit > drift.xml
  drift scan --ssh admin@web-1.internal --baseline baseline.json --identity ~/.ssh/drift_ed25519
  drift scan --ssh ssh://admin@10.0.1.23:2222 --baseline baseline.json --known-hosts fleet_known_hosts --format json
  drift scan --collector https://drift.internal:8750 --admin-token-file /etc/drift/admin.token --fleet
  drift scan --collector https://drift.internal:8750 --admin-token-file /etc/drift/admin.token --host web-1 --ca-file ca.pem`)
    .action(async (opts: ScanOptions) => {
      const verdict = opts.format === 'verdict';
      if (!(FORMATS as readonly string[]).includes(opts.format) && !verdict) {
        throw new DriftError('DRIFT_ERR_USAGE', `scan: --format must be one of ${FORMATS.join(', ')}, verdict, got "${opts.format}"`);
      }
      if (opts.ssm !== undefined || opts.targets !== undefined) {
        if (verdict) throw new DriftError('DRIFT_ERR_USAGE', 'scan: --format verdict is what an instance prints for --ssm; pick text, json, markdown, junit or prometheus');
        if (opts.readOnly || opts.wholeVerdict) throw new DriftError('DRIFT_ERR_USAGE', 'scan: --read-only and --whole-verdict are for a scan of this host; --ssm and --targets always run read-only');
        if (opts.ssm !== undefined && opts.targets !== undefined) throw new DriftError('DRIFT_ERR_USAGE', 'scan: give --ssm INSTANCE_ID or --targets FILE, not both');
        const agentless = await import('./scan-agentless.js');
        const fmt = opts.format as FormatName;
        exit(opts.ssm !== undefined ? await agentless.scanSsmCommand(opts, fmt) : await agentless.scanTargetsCommand(opts, fmt));
        return;
      }
      if (verdict && (opts.collector !== undefined || opts.host !== undefined || opts.fleet)) {
        throw new DriftError('DRIFT_ERR_USAGE', 'scan: --format verdict is for a scan of this host; the collector\'s view prints in text, json, markdown, junit or prometheus');
      }
      if (opts.collector !== undefined || opts.host !== undefined || opts.fleet) {
        exit(await scanRemote(opts, opts.format as FormatName));
        return;
      }
      if (opts.ssmOutputS3 !== undefined || opts.s3Endpoint !== undefined) throw new DriftError('DRIFT_ERR_USAGE', 'scan: --ssm-output-s3 and --s3-endpoint go with --ssm or --targets');
      if (opts.wholeVerdict && !verdict) throw new DriftError('DRIFT_ERR_USAGE', 'scan: --whole-verdict goes with --format verdict');
      if (opts.readOnly && opts.repin) throw new DriftError('DRIFT_ERR_USAGE', 'scan: --repin writes pins; --read-only writes nothing');
      if (!opts.baseline) throw new DriftError('DRIFT_ERR_USAGE', 'scan: --baseline FILE is required (the image\'s baseline from drift baseline)');
      const baselinePath = resolve(opts.baseline);
      if (opts.manifest && opts.ssh !== undefined) throw new DriftError('DRIFT_ERR_USAGE', 'scan: give either --manifest FILE (a saved manifest) or --ssh HOST (collect over SSH), not both');
      // --ssh: the connection, and drift's start on the target, go on while the baseline is read here; the scope follows.
      let sshRules: { resolve: (rules: RuleSet) => void; reject: (err: unknown) => void } | undefined;
      const rulesForSsh = new Promise<RuleSet>((resolveRules, rejectRules) => {
        sshRules = { resolve: resolveRules, reject: rejectRules };
      });
      // A baseline that does not read is reported below; the collection only stops on it.
      rulesForSsh.catch(() => undefined);
      const sshRun = opts.ssh === undefined ? undefined : collectSsh(opts, rulesForSsh, opts.sections !== undefined ? parseSections(opts.sections) : undefined);
      sshRun?.catch(() => undefined);
      const prepared = (async () => {
        const baseline = await readBaseline(baselinePath);
        const signature = checkPackedBaseline(baseline, await loadTrustedKeys(opts.pubkey ?? [], resolve(opts.trustDir)), baselinePath);
        const hostRules = await loadRuleSet(opts.rules ?? []);
        return { baseline, signature, hostRules, rules: scopedRules(baseline, hostRules, baselinePath) };
      })();
      prepared.then((p) => sshRules?.resolve(p.rules), (err: unknown) => sshRules?.reject(err));
      const { baseline, signature, hostRules, rules } = await prepared;
      if (signature.status !== 'verified') {
        process.stderr.write(`drift: warning: baseline ${baselinePath} is ${signature.status === 'unsigned' ? 'not signed' : `signed by key ${signature.keyId ?? '?'}, but no trusted key is at hand to verify it`}; `
          + `findings are only as trustworthy as the file (put the bake key's .pub in ${opts.trustDir}, or pass --pubkey)\n`);
      }
      const sections = opts.sections !== undefined ? parseSections(opts.sections) : undefined;
      if (baseline.scope && scopeOf(hostRules).digest !== baseline.scope.digest) {
        process.stderr.write(`drift: collecting the scope recorded in the baseline (${baseline.scope.digest}); the watch, ignore and expect rules here differ and are not used (their policy is)\n`);
      }
      let manifest: Manifest;
      let target: string;
      let findings: Finding[];
      let dropped: Drop[];
      let firstBoot: FirstBoot | undefined;
      const compareInput = (m: Manifest) => ({ baseline: onlySections(baseline, sections), manifest: onlySections(m, sections), rules: hostRules });
      // The first scan of a target pins its first-boot values in the state folder (here, also for an SSH target).
      const compareAndPin = async (m: Manifest, pinRoot: string, stateDir: string): Promise<{ findings: Finding[]; dropped: Drop[]; firstBoot?: FirstBoot }> => {
        if (beforeFirstBoot(m.host.machineId)) {
          if (opts.repin) throw new DriftError('DRIFT_ERR_USAGE', `scan: ${pinRoot} has no machine-id yet (first boot has not happened), so there is nothing to pin`);
          return compareWithDrops(compareInput(m));
        }
        const pinTarget = { root: pinRoot, machineId: m.host.machineId, imageId: baseline.host.image?.id ?? 'unknown' };
        const book = await readPins(stateDir, pinTarget);
        const now = new Date().toISOString();
        const result = compareWithPins(compareInput(m), opts.repin ? { book, now, repin: { paths: [] } } : { book, now });
        if (!opts.readOnly && (book === null || result.changed.length > 0)) await writePins(stateDir, pinTarget, result.book);
        // --read-only with no pins yet: judged as a first scan, but nothing was pinned, so the report says no pin time.
        if (opts.readOnly && book === null) return { findings: result.findings, dropped: result.dropped };
        return { findings: result.findings, dropped: result.dropped, firstBoot: result.firstBoot };
      };
      if (opts.manifest) {
        if (opts.repin) throw new DriftError('DRIFT_ERR_USAGE', 'scan: --repin pins what a scan of a host or root finds; a saved manifest (--manifest) has no pins');
        const manifestPath = resolve(opts.manifest);
        manifest = await readJsonFile(manifestPath, ManifestSchema, 'manifest');
        if (!opts.anyImage) checkImage(manifest.host, baseline, `manifest ${manifestPath} (host.image)`, baselinePath);
        target = manifest.host.hostname || manifestPath;
        ({ findings, dropped } = compareWithDrops(compareInput(manifest)));
      } else {
        let pinRoot: string;
        if (opts.ssh !== undefined) {
          const stateDir = resolve(opts.stateDir ?? defaultStateDir());
          ({ manifest, target } = await (sshRun as Promise<{ manifest: Manifest; target: string }>));
          if (!opts.anyImage) checkImage(manifest.host, baseline, `${target}/${IMAGE_STAMP_PATH}`, baselinePath);
          pinRoot = target;
          ({ findings, dropped, firstBoot } = await compareAndPin(manifest, pinRoot, stateDir));
        } else {
          const { root, proc } = resolveRootAndProc(opts.root, opts.proc);
          await requireRootDir(root);
          const stateDir = resolve(opts.stateDir ?? defaultStateDir());
          // The stamp is read before the collection: a host of another image is refused at once.
          const host = await readHostInfo(root);
          if (!opts.anyImage) checkImage(host, baseline, `${root === '/' ? '' : root}/${IMAGE_STAMP_PATH}`, baselinePath);
          const instance = await readInstanceKeys(root);
          if (instance.keys) host.instanceKeys = instance.keys;
          manifest = await collectManifest({
            // --read-only: no stat cache is read or written (as drift collect).
            root, proc, rules, stateDir: opts.readOnly ? null : stateDir,
            forceRehash: opts.forceRehash || opts.readOnly,
            budget: byteBudget(opts.maxFileBytes, opts.maxScanBytes),
            sections,
          }, host);
          if (instance.unread.length > 0) manifest.unread = [...manifest.unread, ...instance.unread].sort(compareUnread);
          target = root === '/' ? manifest.host.hostname : root;
          pinRoot = root;
          ({ findings, dropped, firstBoot } = await compareAndPin(manifest, pinRoot, stateDir));
        }
      }
      if (opts.finding !== undefined) {
        const key = opts.finding;
        const one = findings.filter((f) => f.key === key);
        if (one.length === 0) throw new DriftError('DRIFT_ERR_USAGE', `scan: no finding has the key ${JSON.stringify(key)}; run the scan without --finding to see the keys`);
        // Its consequences ride along, so a package shows the files that went with it.
        findings = linkCauses(findings).filter((f) => f.key === key || f.cause?.key === key);
      }
      const report = buildReport({
        target,
        baseline: { imageId: baseline.host.image?.id ?? 'unknown', digest: baselineDigest(baseline), signature },
        findings,
        unread: manifest.unread,
        dropped,
        ...(firstBoot ? { firstBoot } : {}),
      });
      process.stdout.write(verdict ? formatVerdict(report, manifest, opts.wholeVerdict ? Infinity : undefined) : format(report, { format: opts.format as FormatName, color: useColor(process.stdout, process.env) }));
      if (opts.nextSteps) {
        const command = ['npx drift scan', '--baseline', shellWord(opts.baseline),
          ...(opts.root ? ['--root', shellWord(opts.root)] : []), ...(opts.ssh ? ['--ssh', shellWord(opts.ssh)] : []), ...(opts.stateDir ? ['--state-dir', shellWord(opts.stateDir)] : []),
          ...(opts.rules ?? []).flatMap((r) => ['--rules', shellWord(r)])].join(' ');
        process.stderr.write(nextSteps(report, { exitCode: exitCodeOf(report), baselinePath: opts.baseline, command, rulesDir: opts.stateDir ? `${opts.stateDir}/rules.d` : '/etc/drift/rules.d' }));
      }
      exit(exitCodeOf(report));
    });
}

/** `--ssh`: collect the host's manifest over SSH within the baseline's scope; the target is named `ssh://user@host:port`. */
async function collectSsh(opts: ScanOptions, rules: Promise<RuleSet>, sections: readonly SectionName[] | undefined): Promise<{ manifest: Manifest; target: string }> {
  if (opts.root !== undefined || opts.proc !== undefined) throw new DriftError('DRIFT_ERR_USAGE', 'scan: --ssh reads the remote host\'s own root and /proc; --root and --proc are for a local scan');
  // Loaded only here: a local scan never loads the SSH client.
  const { collectOverSsh, describeTarget, parseSshTarget } = await import('../../remote/ssh.js');
  const sshTarget = parseSshTarget(opts.ssh ?? '');
  const sshOpts: SshOptions = { acceptNew: opts.acceptNew };
  if (opts.knownHosts !== undefined) sshOpts.knownHosts = opts.knownHosts;
  if (opts.identity !== undefined) sshOpts.identity = opts.identity;
  if (opts.connectTimeout !== undefined) sshOpts.connectTimeoutMs = durationOption(opts.connectTimeout, '--connect-timeout');
  if (opts.timeout !== undefined) sshOpts.timeoutMs = durationOption(opts.timeout, '--timeout');
  if (opts.remoteDrift !== undefined) sshOpts.remoteDrift = opts.remoteDrift;
  if (opts.agentless) {
    if (opts.remoteDrift !== undefined) throw new DriftError('DRIFT_ERR_USAGE', 'scan: --agentless collects without drift on the host; --remote-drift names the drift there: give one of them');
    sshOpts.agentless = true;
  }
  const manifest = await collectOverSsh(sshTarget, sshOpts, { rules, sections });
  return { manifest, target: `ssh://${describeTarget(sshTarget)}` };
}

/**
 * The baseline file, packed as it is read (packBaselineBytes: the file entries kept
 * as canonical JSON, never the whole parsed file); a file it refuses is read whole by
 * readJsonFile, which names the problem (or, should it accept it, is packed after).
 */
async function readBaseline(path: string): Promise<PackedBaseline> {
  let bytes: Buffer | null = null;
  try { bytes = await readFile(path); } catch { /* readJsonFile says why */ }
  const packed = bytes === null ? null : packBaselineBytes(bytes);
  bytes = null;
  return packed ?? packBaseline(await readJsonFile(path, BaselineSchema, 'baseline'));
}

/** A shallow copy of a manifest without the sections `--sections` left out (all kept when undefined). */
function onlySections<M extends Partial<Record<SectionName, unknown>>>(m: M, sections: readonly SectionName[] | undefined): M {
  if (sections === undefined) return m;
  const copy = { ...m };
  for (const s of ['packages', 'files', 'processes', 'ports'] as const) if (!sections.includes(s)) delete copy[s];
  return copy;
}

/**
 * Refuse to compare a host stamped with one image against another image's baseline:
 * every difference between two images would be reported as drift, with no hint why.
 */
function checkImage(host: HostInfo, baseline: Pick<Baseline, 'host'>, stampWhere: string, baselinePath: string): void {
  const stamped = host.image?.id;
  const wanted = baseline.host.image?.id;
  if (stamped === undefined || wanted === undefined || stamped === wanted) return;
  throw new DriftError('DRIFT_ERR_USAGE', `this host was baked from image ${JSON.stringify(stamped)} (${stampWhere}), not ${JSON.stringify(wanted)} (the image of ${baselinePath}); `
    + `scan with image ${stamped}'s baseline, or pass --any-image to compare anyway`);
}

/** `--collector`: print the collector's view of one host or the fleet; returns the exit code. */
async function scanRemote(opts: ScanOptions, fmt: FormatName): Promise<number> {
  if (!opts.collector) throw new DriftError('DRIFT_ERR_USAGE', 'scan: --host and --fleet ask a collector: give --collector URL too');
  if (!opts.adminTokenFile) throw new DriftError('DRIFT_ERR_USAGE', 'scan: --collector needs --admin-token-file FILE (the collector\'s admin token)');
  if ((opts.host === undefined) === !opts.fleet) throw new DriftError('DRIFT_ERR_USAGE', 'scan: with --collector, give exactly one of --host ID or --fleet');
  if (opts.baseline || opts.manifest || opts.root) throw new DriftError('DRIFT_ERR_USAGE', 'scan: --collector reads the collector\'s view; --baseline, --manifest and --root are for a local scan');
  const token = await readSecretFile(opts.adminTokenFile);
  const client = await clientOptions(opts.caFile);
  const color = useColor(process.stdout, process.env);
  if (opts.host !== undefined) {
    const host = await resolveHost(opts.collector, token, opts.host, client);
    if (host.status === 'unknown-image') {
      throw new DriftError('DRIFT_ERR_NOT_FOUND', host.imageId === null
        ? `host ${host.id} reports no image: its root has no stamp (etc/drift/image.json); bake its image with drift baseline --stamp so the collector knows which baseline applies`
        : `host ${host.id} reports image ${host.imageId}, which has no baseline on ${opts.collector}; push the baked one with drift baseline push FILE --collector ${opts.collector} (and stamp images with drift baseline --stamp)`);
    }
    if (host.status === 'silent') process.stderr.write(`drift: warning: host ${visible(host.id)} is silent (last report ${visible(host.lastSeen ?? 'never')}); this is its last known state\n`);
    const report = hostReport(host);
    process.stdout.write(format(report, { format: fmt, color }));
    return exitCodeOf(report);
  }
  const { hosts, cohorts, reports } = await remoteFleet(opts.collector, token, client);
  switch (fmt) {
    case 'json':
      process.stdout.write(sortedJson({ schema: FLEET_SCHEMA, hosts, cohorts, reports }));
      break;
    case 'junit':
      process.stdout.write(formatJunitMany(reports));
      break;
    case 'prometheus':
      process.stdout.write(formatPrometheusMany(reports));
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
