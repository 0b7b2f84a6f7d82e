/**
 * Terminal safety of everything drift prints for a person besides the report formats:
 * errors on stderr (they quote file names, hostnames and rule text), `drift rules check`
 * problems, the hosts table and --next-steps. A rule file named `\x1b[2J` or a host
 * named with a right-to-left override must print escaped, never act on the terminal.
 */
import t from 'tap';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManifestSchema, type Manifest } from '../../../agent/protocol/manifest.js';
import { emptyRuleSet } from '../../../agent/protocol/rules.js';
import { compare } from '../../../agent/engine/compare.js';
import { buildReport } from '../../../agent/engine/report.js';
import { nextSteps } from '../../../agent/cli/format/next.js';
import { hostTable, type HostSummary } from '../../../agent/cli/remote.js';
import { drift } from '../../helpers/run.js';
import { fixtures } from '../../helpers/paths.js';

const CLEAR = '\u001b[2J';
const RLO = '\u202e';
// C0 but LF, DEL, C1, bidi controls and line separators: none may reach the terminal raw.
const RAW = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

const work = await mkdtemp(join(tmpdir(), 'drift-terminal-'));
t.teardown(() => rm(work, { recursive: true, force: true }));

t.test('drift rules check: a rule file named and containing ESC[2J prints escaped', async (t) => {
  const dir = join(work, `rules${CLEAR}`);
  await mkdir(dir);
  await writeFile(join(dir, `site${CLEAR}.yaml`), `watch:\n  - path: "/etc/${CLEAR}x"\n    bogus${CLEAR}: 1\n`);
  const r = await drift(['rules', 'check', '--no-shipped', dir]);
  t.equal(r.code, 2, 'the rule file has a problem');
  t.notMatch(r.stdout + r.stderr, RAW, 'no control character reaches the terminal');
  t.match(r.stdout, /rules\\x1b\[2J\/site\\x1b\[2J\.yaml:\d+:\d+: /, 'the file name is shown escaped, with its line and column');
  t.match(r.stderr, /drift: \d+ problems? in rule files/);
});

t.test('errors on stderr quote hostile names escaped: a missing rule folder, an unknown option', async (t) => {
  const missing = await drift(['rules', 'check', '--no-shipped', join(work, `gone${CLEAR}${RLO}`)]);
  t.equal(missing.code, 2);
  t.notMatch(missing.stderr, RAW);
  t.match(missing.stderr, /gone\\x1b\[2J\\u202e/, 'the folder is named, escaped');
  const option = await drift(['scan', `--${CLEAR}`]);
  t.equal(option.code, 2);
  t.notMatch(option.stderr, RAW);
  t.match(option.stderr, /--\\x1b\[2J/, 'commander\'s usage error is escaped too');
  const config = await drift(['agent', '--once', '--config', join(work, `cfg${RLO}.yaml`)]);
  t.equal(config.code, 2);
  t.notMatch(config.stderr, RAW);
  t.match(config.stderr, /cfg\\u202e\.yaml/);
});

t.test('the hosts table escapes a hostname with a right-to-left override', async (t) => {
  const hosts: HostSummary[] = [{
    id: `i-1${CLEAR}`, hostname: `web${RLO}exe.1`, imageId: `ami${CLEAR}`, role: null, status: 'drifted', findings: 1, snowflake: null, lastSeen: null,
  } as HostSummary];
  const table = hostTable(hosts).join('\n');
  t.notMatch(table, RAW);
  t.match(table, /web\\u202eexe\.1 +i-1\\x1b\[2J +ami\\x1b\[2J/);
});

t.test('--next-steps escapes the baseline path, the image and the finding keys', async (t) => {
  const baseline = ManifestSchema.parse(JSON.parse(readFileSync(fixtures('engine', 'baseline.json'), 'utf8')));
  const manifest: Manifest = structuredClone(baseline);
  manifest.files = { ...manifest.files, [`/etc/${CLEAR}evil${RLO}`]: { type: 'file', mode: '0644', uid: 0, gid: 0, size: 1, sha256: 'cd'.repeat(32) } };
  const report = buildReport({
    target: `web${RLO}`, baseline: { imageId: `ami-1${RLO}`, digest: `sha256:${'ab'.repeat(32)}` },
    findings: compare({ baseline, manifest, rules: emptyRuleSet() }), unread: [],
  });
  const text = nextSteps(report, { exitCode: 1, baselinePath: `/tmp/b${CLEAR}.json`, command: 'drift scan', rulesDir: `/etc/drift/rules.d${RLO}` });
  t.notMatch(text, RAW);
  t.match(text, /The baseline is \/tmp\/b\\x1b\[2J\.json \(image ami-1\\u202e/);
  t.match(text, /evil\\u202e/, 'the finding key is escaped');
});
