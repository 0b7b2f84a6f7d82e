import type { Command } from 'commander';
import { createPublicKey } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { collectManifest } from '../../manifest.js';
import { readHostInfo } from '../../identity.js';
import { baselineDigest, makeBaseline, scopeOf, serialiseBaseline, stampImage } from '../../baseline.js';
import { writeFileAtomic } from '../../atomic.js';
import { checkBaseline, keyIdOf, loadPrivateKey, loadTrustedKeys, TRUST_DIR } from '../../sign.js';
import { loadRuleSet } from '../../rules/load.js';
import { DriftError } from '../../protocol/errors.js';
import { byteBudget, defaultStateDir, parseSections, requireRootDir, resolveRootAndProc } from '../../config.js';
import { IMAGE_STAMP_PATH } from '../../identity.js';
import { BUDGET_HELP, clientOptions, collect, readJsonFile } from '../common.js';
import { plural, visible } from '../format/common.js';
import { BaselineSchema } from '../../protocol/manifest.js';
import { pushBaseline, readSecretFile } from '../../transport/client.js';

interface BaselineOptions {
  imageId?: string;
  imageVersion?: string;
  root?: string;
  proc?: string;
  rules?: string[];
  signKey?: string;
  out?: string;
  stamp: boolean;
  stateDir?: string;
  forceRehash: boolean;
  maxFileBytes?: string;
  maxScanBytes?: string;
  push?: string;
  adminTokenFile?: string;
  sections?: string;
  caFile?: string;
}

interface PushOptions {
  collector?: string;
  push?: string;
  adminTokenFile?: string;
  pubkey?: string[];
  trustDir: string;
  caFile?: string;
}

export function register(program: Command): void {
  const baseline = program
    .command('baseline')
    .description('Record an image\'s manifest at bake time: packages, watched files, processes and ports; sign it, write it, and stamp the image with its identity.')
    .option('--image-id <id>', 'the image this baseline describes (an AMI id, a build id); required')
    .option('--image-version <version>', 'a version label for the image')
    .option('--root <dir>', 'read this root folder (a mounted image, a chroot) instead of /')
    .option('--proc <dir>', 'read processes and ports from this /proc (default: /proc for the live host, none for --root)')
    .option('--rules <dir>', 'site rule folder, after the shipped rules (repeatable); their watch, ignore and expect rules are recorded in the baseline as its scope', collect)
    .option('--sections <list>', 'collect only these sections: packages,files,processes,ports (comma-separated)')
    .option('--sign-key <file>', 'sign with this ed25519 private key (drift keygen makes one)')
    .option('--out <file>', 'write the baseline here (use - for standard output)')
    .option('--stamp', 'write the image identity to etc/drift/image.json under the root', false)
    .option('--state-dir <dir>', 'folder for the stat cache (default $DRIFT_STATE_DIR, /var/lib/drift as root)')
    .option('--force-rehash', 'hash every file, ignoring the stat cache', false)
    .option('--max-file-bytes <size>', BUDGET_HELP.file)
    .option('--max-scan-bytes <size>', BUDGET_HELP.scan)
    .option('--push <url>', 'upload the baseline to this collector (drift server)')
    .option('--admin-token-file <file>', 'the collector\'s admin token (with --push)')
    .option('--ca-file <file>', 'extra CA certificates (PEM) to trust for an HTTPS collector (with --push)')
    .addHelpText('after', `
The baseline records the scope it was taken with (the merged watch, ignore and expect
rules, with their digest, under the signature): agents and scans of the image collect
exactly that scope, whatever rule files a host holds later. Exits 2 when --root does
not exist.


With --stamp and --sign-key, the bake key's public half is written to etc/drift/keys/ under the
root, so hosts of the image verify their baseline by default. Upload a baseline written
earlier with drift baseline push FILE: collecting again would change its digest, and hosts
stamped with the first one would be refused.

${BUDGET_HELP.after}

Examples:
  drift keygen --out /secure/bake
  drift baseline --image-id ami-0abc --image-version 2026.11.1 --sign-key /secure/bake.key --out baseline.json --stamp
  drift baseline --root /mnt/image --image-id build-42 --out /tmp/b.json
  drift baseline --image-id ami-0abc --sign-key bake.key --push https://drift.internal:8750 --admin-token-file admin.token --stamp
  drift baseline push baseline.json --collector https://drift.internal:8750 --admin-token-file admin.token --pubkey bake.pub`)
    .action(async (opts: BaselineOptions) => {
      if (!opts.imageId) throw new DriftError('DRIFT_ERR_USAGE', 'baseline: --image-id ID is required (the image this baseline describes); to upload a baseline file, use drift baseline push FILE');
      const imageId = opts.imageId;
      if (!opts.out && !opts.push) throw new DriftError('DRIFT_ERR_USAGE', 'baseline: --out FILE is required (where to write the baseline; - for standard output), unless --push URL uploads it');
      if (opts.push && !opts.adminTokenFile) throw new DriftError('DRIFT_ERR_USAGE', 'baseline: --push needs --admin-token-file FILE (the collector\'s admin token)');
      const adminToken = opts.adminTokenFile ? await readSecretFile(opts.adminTokenFile) : null;
      const client = await clientOptions(opts.caFile);
      const { root, proc } = resolveRootAndProc(opts.root, opts.proc);
      await requireRootDir(root);
      const sections = opts.sections !== undefined ? parseSections(opts.sections) : undefined;
      const key = opts.signKey ? await loadPrivateKey(opts.signKey) : null;
      let trustedKey: string | null = null;
      if (key && opts.stamp) {
        // Hosts of the image then verify their baseline without being told which key to trust.
        const pub = createPublicKey(key);
        trustedKey = join(root, TRUST_DIR, `bake-${keyIdOf(pub)}.pub`);
        await mkdir(dirname(trustedKey), { recursive: true, mode: 0o755 });
        await writeFileAtomic(trustedKey, pub.export({ type: 'spki', format: 'pem' }).toString());
      }
      const rules = await loadRuleSet(opts.rules ?? []);
      // The stamp's folder exists before the collection, so the baseline records it as
      // the image has it; the stamp itself (and a baseline written there) come after.
      if (opts.stamp) await mkdir(dirname(resolve(root, IMAGE_STAMP_PATH)), { recursive: true, mode: 0o755 });
      const host = await readHostInfo(root);
      const manifest = await collectManifest({
        root, proc, rules,
        stateDir: resolve(opts.stateDir ?? defaultStateDir()),
        forceRehash: opts.forceRehash,
        budget: byteBudget(opts.maxFileBytes, opts.maxScanBytes),
        sections,
      }, host);
      const image = opts.imageVersion !== undefined ? { id: imageId, version: opts.imageVersion } : { id: imageId };
      const baseline = makeBaseline(manifest, image, key, scopeOf(rules));
      const text = serialiseBaseline(baseline);
      if (opts.out === '-') process.stdout.write(text);
      else if (opts.out) {
        await mkdir(dirname(resolve(opts.out)), { recursive: true });
        await writeFileAtomic(resolve(opts.out), text);
      }
      if (opts.push && adminToken) {
        const stored = await pushBaseline(opts.push, adminToken, baseline, client);
        process.stderr.write(`drift: pushed baseline of image ${visible(stored.imageId)} to ${visible(opts.push)} (digest ${visible(stored.digest)})\n`);
      }
      if (opts.stamp) await stampImage(root, baseline);
      const counts = `${plural(Object.keys(baseline.packages ?? {}).length, 'package')}, ${plural(Object.keys(baseline.files ?? {}).length, 'file')}`
        + (baseline.processes ? `, ${plural(Object.keys(baseline.processes).length, 'process', 'processes')}, ${plural(Object.keys(baseline.ports ?? {}).length, 'port')}` : '');
      process.stderr.write(`drift: baseline of image ${visible(imageId)}: ${counts}, ${baseline.unread.length} unread; digest ${baselineDigest(baseline)}`
        + `, scope ${baseline.scope?.digest ?? 'none'}${baseline.signature ? `, signed by key ${visible(baseline.signature.keyId)}` : ', unsigned'}${opts.stamp ? `; stamped ${root === '/' ? '' : root}/etc/drift/image.json` : ''}`
        + `${trustedKey ? `; bake key trusted in ${trustedKey}` : ''}${opts.out && opts.out !== '-' ? `; written to ${resolve(opts.out)}` : ''}\n`);
    });

  baseline
    .command('push <file>')
    .description('Upload a baseline file written earlier (by drift baseline --out) to a collector, after checking its signature here.')
    .option('--collector <url>', 'the collector (drift server) to upload to; required')
    .option('--admin-token-file <file>', 'the collector\'s admin token; required')
    .option('--pubkey <file>', 'trusted ed25519 public key, besides those of --trust-dir (repeatable)', collect)
    .option('--trust-dir <dir>', 'folder of trusted public keys (*.pub)', TRUST_DIR)
    .option('--ca-file <file>', 'extra CA certificates (PEM) to trust for an HTTPS collector')
    .addHelpText('after', `
The file is uploaded byte for byte as it was baked, so its digest stays the one stamped on the
image's hosts. With any trusted key (--pubkey, --trust-dir), a baseline that is unsigned, signed
by another key or changed after signing is refused here and nothing is uploaded.

Examples:
  drift baseline push /etc/drift/baseline.json --collector https://drift.internal:8750 --admin-token-file admin.token --pubkey bake.pub`)
    .action(async (file: string, _opts: PushOptions, cmd: Command) => {
      // Options shared with \`drift baseline\` (--admin-token-file, --ca-file) may land on it: read both.
      const opts = cmd.optsWithGlobals<PushOptions>();
      const collector = opts.collector ?? opts.push;
      if (!collector) throw new DriftError('DRIFT_ERR_USAGE', 'baseline push: --collector URL is required (the collector to upload to)');
      if (!opts.adminTokenFile) throw new DriftError('DRIFT_ERR_USAGE', 'baseline push: --admin-token-file FILE is required (the collector\'s admin token)');
      const path = resolve(file);
      const stored = await readJsonFile(path, BaselineSchema, 'baseline');
      if (!stored.host.image?.id) throw new DriftError('DRIFT_ERR_USAGE', `baseline ${path} names no image (host.image.id); it is a manifest, not a baseline: make one with drift baseline --image-id ID`);
      const signature = checkBaseline(stored, await loadTrustedKeys(opts.pubkey ?? [], resolve(opts.trustDir)), path);
      if (signature.status !== 'verified') {
        process.stderr.write(`drift: warning: ${visible(path)} is ${signature.status === 'unsigned' ? 'not signed' : `signed by key ${visible(signature.keyId ?? '?')}, but no trusted key is at hand to verify it`}; uploading it unverified\n`);
      }
      const token = await readSecretFile(opts.adminTokenFile);
      const answer = await pushBaseline(collector, token, stored, await clientOptions(opts.caFile));
      const local = baselineDigest(stored);
      if (answer.digest !== local) {
        throw new DriftError('DRIFT_ERR_MANIFEST', `${collector} stored baseline of image ${answer.imageId} with digest ${answer.digest}, but ${path} has digest ${local}; is the collector the same drift version?`);
      }
      process.stderr.write(`drift: pushed baseline ${visible(path)} of image ${visible(answer.imageId)} to ${visible(collector)} (digest ${visible(answer.digest)}, signature ${signature.status}${signature.keyId ? ` by key ${visible(signature.keyId)}` : ''})\n`);
    });
}
