/**
 * Rule files and the agent config are read as any file drift does not trust: a FIFO,
 * a symlink or a huge file given as one is a clear error, at once, never a read that
 * hangs or fills memory.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkRules, RULE_FILE_MAX_BYTES } from '../../../agent/rules/load.js';
import { resolveAgentConfig } from '../../../agent/config.js';

const work = await mkdtemp(join(tmpdir(), 'drift-hostile-rules-'));
t.teardown(() => rm(work, { recursive: true, force: true }));

t.test('a FIFO, a symlink to /dev/zero and a huge file in a rule folder are problems, reported at once', async (t) => {
  const dir = join(work, 'rules.d');
  await mkdir(dir);
  await writeFile(join(dir, 'a-good.yaml'), 'watch:\n  - path: /etc/**\n');
  execFileSync('mkfifo', [join(dir, 'b-fifo.yaml')]);
  await symlink('/dev/zero', join(dir, 'c-zero.yaml'));
  await writeFile(join(dir, 'd-huge.yaml'), '');
  await truncate(join(dir, 'd-huge.yaml'), RULE_FILE_MAX_BYTES + 1);
  const started = Date.now();
  const r = await checkRules([dir], { shipped: false });
  t.ok(Date.now() - started < 30_000, 'bounded');
  const byFile = new Map(r.problems.map((p) => [p.file.slice(dir.length + 1), p.message]));
  t.match(byFile.get('b-fifo.yaml'), /cannot read the file: not a regular file when opened \(a FIFO\)/);
  t.match(byFile.get('c-zero.yaml'), /cannot read the file: it is a symbolic link, which drift does not follow: name the file it points to/);
  t.match(byFile.get('d-huge.yaml'), new RegExp(`cannot read the file: it is larger than ${RULE_FILE_MAX_BYTES} bytes`));
  t.notOk(byFile.has('a-good.yaml'), 'the good file is read');
});

t.test('a FIFO or a symlink given as the agent config is a clear config error, at once', async (t) => {
  const fifo = join(work, 'agent-fifo.yaml');
  execFileSync('mkfifo', [fifo]);
  await t.rejects(resolveAgentConfig({ config: fifo }), { code: 'DRIFT_ERR_CONFIG', message: /cannot read agent config .*agent-fifo\.yaml: not a regular file when opened \(a FIFO\)/ });
  const link = join(work, 'agent-link.yaml');
  await symlink('/dev/zero', link);
  await t.rejects(resolveAgentConfig({ config: link }), { code: 'DRIFT_ERR_CONFIG', message: /agent-link\.yaml: it is a symbolic link, which drift does not follow/ });
});
