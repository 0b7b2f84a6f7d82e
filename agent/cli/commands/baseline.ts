import type { Command } from 'commander';
import { mkdir } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { collectManifest } from '../../manifest.js';
import { readHostInfo } from '../../identity.js';
import { baselineDigest, makeBaseline, scopeOf, serialiseBaseline, stampImage } from '../../baseline.js';
import { writeFileAtomic } from '../../atomic.js';
import { loadPrivateKey } from '../../sign.js';
import { loadRuleSet } from '../../rules/load.js';
import { DriftError } from '../../protocol/errors.js';
import { byteBudget, defaultStateDir, parseSections, requireRootDir, resolveRootAndProc } from '../../config.js';
import { IMAGE_STAMP_PATH } from '../../identity.js';
import { BUDGET_HELP, collect } from '../common.js';
import { pushBaseline, readSecretFile } from '../../transport/client.js';

interface BaselineOptions {
  imageId: string;
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
}

export function register(program: Command): void {
  program
    .command('baseline')
    .description('Record an image\'s manifest at bake time: packages, watched files, processes and ports; sign it, write it, and stamp the image with its identity.')
    .requiredOption('--image-id <id>', 'the image this baseline describes (an AMI id, a build id)')
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
    .addHelpText('after', `
The baseline records the scope it was taken with (the merged watch, ignore and expect
rules, with their digest, under the signature): agents and scans of the image collect
exactly that scope, whatever rule files a host holds later. Exits 2 when --root does
not exist.

${BUDGET_HELP.after}

Examples:
  drift keygen --out /secure/bake
  drift baseline --image-id ami-0abc --image-version 2026.11.1 --sign-key /secure/bake.key --out baseline.json --stamp
  drift baseline --root /mnt/image --image-id build-42 --out /tmp/b.json
  drift baseline --image-id ami-0abc --sign-key bake.key --push https://drift.internal:8750 --admin-token-file admin.token --stamp`)
    .action(async (opts: BaselineOptions) => {
      if (!opts.out && !opts.push) throw new DriftError('DRIFT_ERR_USAGE', 'baseline: --out FILE is required (where to write the baseline; - for standard output), unless --push URL uploads it');
      if (opts.push && !opts.adminTokenFile) throw new DriftError('DRIFT_ERR_USAGE', 'baseline: --push needs --admin-token-file FILE (the collector\'s admin token)');
      const adminToken = opts.adminTokenFile ? await readSecretFile(opts.adminTokenFile) : null;
      const { root, proc } = resolveRootAndProc(opts.root, opts.proc);
      await requireRootDir(root);
      const sections = opts.sections !== undefined ? parseSections(opts.sections) : undefined;
      const key = opts.signKey ? await loadPrivateKey(opts.signKey) : null;
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
      const image = opts.imageVersion !== undefined ? { id: opts.imageId, version: opts.imageVersion } : { id: opts.imageId };
      const baseline = makeBaseline(manifest, image, key, scopeOf(rules));
      const text = serialiseBaseline(baseline);
      if (opts.out === '-') process.stdout.write(text);
      else if (opts.out) {
        await mkdir(dirname(resolve(opts.out)), { recursive: true });
        await writeFileAtomic(resolve(opts.out), text);
      }
      if (opts.push && adminToken) {
        const stored = await pushBaseline(opts.push, adminToken, baseline);
        process.stderr.write(`drift: pushed baseline of image ${stored.imageId} to ${opts.push} (digest ${stored.digest})\n`);
      }
      if (opts.stamp) await stampImage(root, baseline);
      const counts = `${Object.keys(baseline.packages ?? {}).length} packages, ${Object.keys(baseline.files ?? {}).length} files`
        + (baseline.processes ? `, ${Object.keys(baseline.processes).length} processes, ${Object.keys(baseline.ports ?? {}).length} ports` : '');
      process.stderr.write(`drift: baseline of image ${opts.imageId}: ${counts}, ${baseline.unread.length} unread; digest ${baselineDigest(baseline)}`
        + `, scope ${baseline.scope?.digest ?? 'none'}${baseline.signature ? `, signed by key ${baseline.signature.keyId}` : ', unsigned'}${opts.stamp ? `; stamped ${root === '/' ? '' : root}/etc/drift/image.json` : ''}\n`);
    });
}
