import { InvalidArgumentError, Option, type Command } from 'commander';
import { sortedJson } from '../../protocol/canonical.js';
import { formatProblem, verifyDpkg } from '../../verify/dpkg.js';
import { exit } from '../exit.js';
import { visible } from '../format/common.js';

const HELP_AFTER = `
Checks every file dpkg installed (info/*.list) against the md5 it recorded
(info/*.md5sums, or the Conffiles md5 of the status file), and reports each path
whose content or type changed and each one that is missing, listed folders and
conffiles included. The set of paths equals what \`dpkg --verify\` (or
\`dpkg --root DIR --verify\`) reports; where dpkg would abort (a file that became
a folder), drift reports the path and carries on.

Text output, one line per path, dpkg's format plus the package:
  ??5?????? c /etc/foo  [foo:amd64]        content changed (c: a conffile)
  ?M5??????   /usr/bin/x  [x:amd64]        no longer a regular file
  missing     /usr/share/doc/x  [x:amd64]  gone (a reason follows when not ENOENT)

JSON output: an array of
  { "path", "status": "missing"|"changed", "checks": 9 characters as above,
    "conffile": boolean, "package", "arch", "reason"?: string }

Exit status: 0 nothing changed, 1 differences found, 2 trouble (bad root,
no or unreadable dpkg database).`;

/** `drift verify-packages [--root DIR] [--format text|json]`. */
export function register(program: Command): void {
  program
    .command('verify-packages')
    .description('List package-owned files whose content no longer matches what dpkg installed, and missing ones (like dpkg --verify).')
    .option('--root <dir>', 'root folder to verify (a mounted image or chroot)', '/')
    .addOption(new Option('--format <format>', 'output format').choices(['text', 'json']).default('text'))
    .option('--concurrency <n>', 'files hashed at once', (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1 || n > 256) throw new InvalidArgumentError(`must be an integer from 1 to 256, got ${v}`);
      return n;
    }, 8)
    .addHelpText('after', HELP_AFTER)
    .action(async (opts: VerifyPackagesOptions) => {
      exit(await runVerifyPackages(opts, (s) => process.stdout.write(s)));
    });
}

/** Options of `drift verify-packages`, as commander parses them. */
export interface VerifyPackagesOptions {
  root: string;
  format: 'text' | 'json';
  concurrency: number;
}

/**
 * The command's work: verify, write the report through `write`, and return the
 * exit code (0 clean, 1 differences). Trouble is thrown as a DriftError (exit 2).
 */
export async function runVerifyPackages(opts: VerifyPackagesOptions, write: (s: string) => void): Promise<number> {
  const report = await verifyDpkg(opts.root, { concurrency: opts.concurrency });
  if (opts.format === 'json') write(sortedJson(report.problems));
  else for (const p of report.problems) write(`${visible(formatProblem(p))}\n`);
  return report.problems.length > 0 ? 1 : 0;
}
