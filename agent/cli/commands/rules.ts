import type { Command } from 'commander';
import { checkRules, formatProblem, shippedRulesDir } from '../../rules/load.js';
import { exit } from '../exit.js';
import { plural, visible } from '../format/common.js';

/**
 * `drift rules check [DIR...]`: validate rule files the way `drift scan` and the
 * agent load them, printing every problem as `file:line:col: message` (exit 2) or
 * `N files, M rules: OK` (exit 0).
 */
export function register(program: Command): void {
  const rules = program
    .command('rules')
    .description('Work with rule files (what to watch, ignore and expect, and what a finding is worth); see rules/README.md.');
  rules
    .command('check')
    .description('Check rule files: the shipped rules, then each DIR (a folder of *.yaml/*.yml files, or one file) in merge order. '
      + 'Prints every problem as file:line:col: message and exits 2, or prints "N files, M rules: OK" and exits 0.')
    .argument('[dir...]', 'rule folders or files to check after the shipped ones, e.g. /etc/drift/rules.d')
    .option('--no-shipped', `check only the given folders, without the shipped rules in ${shippedRulesDir()}`)
    .addHelpText('after', '\nExamples:\n  drift rules check                        # the shipped rules\n'
      + '  drift rules check /etc/drift/rules.d     # site rules, merged after the shipped ones\n'
      + '  drift rules check --no-shipped ./my.yaml # one file on its own\n')
    .action(async (dirs: string[], opts: { shipped: boolean }) => {
      if (!opts.shipped && dirs.length === 0) {
        process.stderr.write('drift: --no-shipped needs at least one DIR to check\n');
        exit(2);
        return;
      }
      const result = await checkRules(dirs, { shipped: opts.shipped });
      if (result.problems.length > 0) {
        // A problem quotes the rule file's name and text: escaped for the terminal.
        for (const p of result.problems) process.stdout.write(`${visible(formatProblem(p))}\n`);
        const n = result.problems.length;
        process.stderr.write(`drift: ${plural(n, 'problem')} in rule files\n`);
        exit(2);
        return;
      }
      process.stdout.write(`${plural(result.files, 'file')}, ${plural(result.rules, 'rule')}: OK\n`);
      exit(0);
    });
}
