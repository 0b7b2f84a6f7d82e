import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { drift } from '../../helpers/run.js';
import { byteBudget, resolveAgentConfig } from '../../../agent/config.js';

/** The byte budgets as a user sets them: flags of drift scan and drift baseline, keys of the agent's config. */

t.test('drift scan --max-file-bytes / --max-scan-bytes: files over them are unread, with the flag to raise', async (t) => {
  const work = await mkdtemp(join(tmpdir(), 'drift-budget-'));
  t.teardown(() => rm(work, { recursive: true, force: true }));
  const root = join(work, 'root');
  await mkdir(join(root, 'etc'), { recursive: true });
  await writeFile(join(root, 'etc/small'), 'x\n');
  await writeFile(join(root, 'etc/large'), 'y'.repeat(4096));
  execFileSync('truncate', ['-s', '15T', join(root, 'etc/sparse')]);
  const rules = join(work, 'rules');
  await mkdir(rules);
  await writeFile(join(rules, 'w.yaml'), 'watch:\n  - path: /etc/**\n');
  const common = ['--root', root, '--rules', rules, '--state-dir', join(work, 'state')];
  const baseline = join(work, 'b.json');
  const b = await drift(['baseline', '--image-id', 'img', '--out', baseline, '--max-file-bytes', '1KiB', ...common]);
  t.equal(b.code, 0, b.stderr);
  const r = await drift(['scan', '--baseline', baseline, '--format', 'json', '--max-file-bytes', '1KiB', ...common]);
  t.equal(r.code, 0, r.stderr);
  const unread = (JSON.parse(r.stdout) as { unread: { path: string; reason: string }[] }).unread;
  t.match(unread.find((u) => u.path === '/etc/large')?.reason, /^over the per-file byte budget: 4096 bytes \(\d+ allocated\) > 1024; raise --max-file-bytes/);
  t.match(unread.find((u) => u.path === '/etc/sparse')?.reason, /^over the per-file byte budget: 16492674416640 bytes \(0 allocated, sparse\) > 1024/);
  // --force-rehash: a file answered from the stat cache is not read, so costs no budget.
  const scan = await drift(['scan', '--baseline', baseline, '--format', 'json', '--force-rehash', '--max-scan-bytes', '1', ...common]);
  t.match((JSON.parse(scan.stdout) as { unread: { path: string; reason: string }[] }).unread.find((u) => u.path === '/etc/small')?.reason, /^over the per-scan byte budget of 1 bytes; raise --max-scan-bytes/);
  const bad = await drift(['scan', '--baseline', baseline, '--max-file-bytes', 'lots', ...common]);
  t.equal(bad.code, 2);
  t.match(bad.stderr, /--max-file-bytes: "lots" is not a size of at least 1 byte/);
});

t.test('agent config: max-file-bytes and max-scan-bytes keys, with defaults', async (t) => {
  const base = { collector: 'http://127.0.0.1:1', 'enroll-secret-file': '/s' };
  const d = await resolveAgentConfig(base);
  t.equal(d.maxFileBytes, 2 * 1024 ** 3);
  t.equal(d.maxScanBytes, 32 * 1024 ** 3);
  const c = await resolveAgentConfig({ ...base, 'max-file-bytes': '4GiB', 'max-scan-bytes': '1TiB' });
  t.equal(c.maxFileBytes, 4 * 1024 ** 3);
  t.equal(c.maxScanBytes, 1024 ** 4);
  await t.rejects(resolveAgentConfig({ ...base, 'max-scan-bytes': '0' }), { message: /max-scan-bytes: "0" is not a size of at least 1 byte/ });
  t.throws(() => byteBudget('1PiB', undefined), { code: 'DRIFT_ERR_USAGE' });
});
