import t from 'tap';
import { spawnSync } from 'node:child_process';
import { Command } from 'commander';
import { register } from '../../../../agent/cli/commands/rules.js';
import { driftBin, fixtures } from '../../../helpers/paths.js';

/** Run `drift rules ...` through register() on a fresh program, capturing stdout and stderr. */
async function runRegistered(args: string[]): Promise<{ out: string; err: string }> {
  const program = new Command('drift').exitOverride();
  register(program);
  for (const c of program.commands) c.exitOverride();
  let out = '';
  let err = '';
  const o = process.stdout.write.bind(process.stdout);
  const e = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((s: string) => { out += s; return true; }) as typeof process.stdout.write;
  process.stderr.write = ((s: string) => { err += s; return true; }) as typeof process.stderr.write;
  try {
    await program.parseAsync(args, { from: 'user' });
  } finally {
    process.stdout.write = o;
    process.stderr.write = e;
  }
  return { out, err };
}

t.test('rules check prints every problem as file:line:col: message', async (t) => {
  const f = fixtures('rules', 'multi', 'many.yaml');
  const { out, err } = await runRegistered(['rules', 'check', '--no-shipped', f]);
  const lines = out.trimEnd().split('\n');
  t.equal(lines.length, 8);
  t.equal(lines[0], `${f}:6:14: content must be true, false or "names", got "yes"`);
  t.equal(lines[7], `${f}:20:35: lines: undefined variable "\${nobody}" (defined: cloudInitUser; define it under vars:)`);
  t.equal(err, 'drift: 8 problems in rule files\n');
});

t.test('rules check with no folder checks the shipped rules', async (t) => {
  const { out } = await runRegistered(['rules', 'check']);
  t.match(out, /^\d+ files, \d+ rules: OK\n$/);
});

// Through the real launcher, as an operator runs it.
t.test('drift rules check exit codes', async (t) => {
  t.match(spawnSync(process.execPath, [driftBin, '--help'], { encoding: 'utf8' }).stdout, /^\s+rules\b/m, 'drift --help lists rules');
  const ok = spawnSync(process.execPath, [driftBin, 'rules', 'check', fixtures('rules', 'merge', 'b')], { encoding: 'utf8' });
  t.equal(ok.status, 0, ok.stderr);
  t.match(ok.stdout, /^\d+ files, \d+ rules: OK\n$/);
  const bad = spawnSync(process.execPath, [driftBin, 'rules', 'check', '--no-shipped', fixtures('rules', 'bad', 'severity.yaml')], { encoding: 'utf8' });
  t.equal(bad.status, 2);
  t.equal(bad.stdout, `${fixtures('rules', 'bad', 'severity.yaml')}:3:15: severity must be one of low, medium, high, critical, got "urgent"\n`);
  const missing = spawnSync(process.execPath, [driftBin, 'rules', 'check', '/nonexistent/rules.d'], { encoding: 'utf8' });
  t.equal(missing.status, 2);
  t.match(missing.stderr, /^drift: rules folder \/nonexistent\/rules\.d cannot be read \(ENOENT\)/);
});
