import t from 'tap';
import { readFileSync } from 'node:fs';
import { ManifestSchema, type Manifest } from '../../../../agent/protocol/manifest.js';
import { emptyRuleSet } from '../../../../agent/protocol/rules.js';
import { compare } from '../../../../agent/engine/compare.js';
import { buildReport } from '../../../../agent/engine/report.js';
import { format } from '../../../../agent/cli/format/index.js';
import { visible } from '../../../../agent/cli/format/common.js';
import { fleetSummary } from '../../../../agent/cli/remote.js';
import { fixtures } from '../../../helpers/paths.js';

/**
 * Strings from a host (file names, content in diffs, hostnames, unread paths and
 * reasons) reach a person's terminal through the text and markdown formats: none
 * of their control characters may reach it unescaped.
 */

const CLEAR = '\u001b[2J\u001b[H';
const TITLE = '\u001b]0;owned\u0007';
const RLO = '\u202e';
const CSI1 = '\u009b2J';

const baseline = ManifestSchema.parse(JSON.parse(readFileSync(fixtures('engine', 'baseline.json'), 'utf8')));
const rules = emptyRuleSet();
const manifest: Manifest = structuredClone(baseline);
manifest.files = { ...manifest.files };
manifest.files[`/etc/${CLEAR}evil`] = { type: 'file', mode: '0644', uid: 0, gid: 0, size: 1, sha256: 'cd'.repeat(32) };
const motd = Object.keys(baseline.files ?? {}).find((k) => baseline.files?.[k]?.content !== undefined) as string;
manifest.files[motd] = { ...(baseline.files?.[motd] as NonNullable<Manifest['files']>[string]), content: `line\t1\n${TITLE}${RLO}txt.exe\n${CSI1}\n`, sha256: 'ef'.repeat(32) };
const report = buildReport({
  target: `web-1${CLEAR}`,
  baseline: { imageId: `ami-1${RLO}`, digest: `sha256:${'ab'.repeat(32)}` },
  findings: compare({ baseline, manifest, rules }),
  unread: [{ path: `/home/u/\n${CLEAR}x`, reason: `EACCES${TITLE}` }],
});

// C0 but LF (and tab), DEL, C1, bidi controls and line separators: nothing of these may be printed raw.
const RAW = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

t.test('visible escapes every control character and bidi override, and nothing else', async (t) => {
  t.equal(visible(`a${CLEAR}b`), 'a\\x1b[2J\\x1b[Hb');
  t.equal(visible(`x${RLO}y\u2066z\u009b\u007f\u0000\n\t`), 'x\\u202ey\\u2066z\\x9b\\x7f\\x00\\n\\t');
  t.equal(visible('tab\there', true), 'tab\there', 'tabs kept where asked (diff lines)');
  t.equal(visible('/etc/ssh/sshd_config é ü 日本'), '/etc/ssh/sshd_config é ü 日本', 'printable text, any script, untouched');
});

for (const [name, color] of [['text', false], ['text', true], ['markdown', false]] as const) {
  t.test(`${name}${color ? ' in colour' : ''}: no control character from the host reaches the terminal`, async (t) => {
    const out = format(report, { format: name, color });
    // Our own colour codes are the only escapes: ESC [ digits ; m.
    const own = out.replace(/\u001b\[[0-9;]*m/g, '');
    t.notMatch(own, RAW, 'nothing raw');
    t.match(out, /\\x1b\[2J\\x1b\[Hevil/, 'the file name, shown escaped');
    t.match(out, /\\x1b\]0;owned\\x07\\u202etxt\.exe/, 'the diff line, shown escaped');
    t.match(out, /\\x9b2J/, 'a one-character C1 CSI, shown escaped');
    t.match(out, /web-1\\x1b\[2J/, 'the hostname, shown escaped');
    t.match(out, /\\n\\x1b\[2J\\x1b\[Hx/, 'the unread path keeps to its line');
    t.match(out, /line\t1/, 'a tab in a diff stays a tab');
  });
}

t.test('json and junit keep the strings exactly (their own escaping is the format\'s)', async (t) => {
  const json = JSON.parse(format(report, { format: 'json', color: false })) as { target: string };
  t.equal(json.target, `web-1${CLEAR}`);
  t.notMatch(format(report, { format: 'junit', color: false }), /\u001b/);
});

t.test('the fleet summary escapes hostnames and keys', async (t) => {
  const out = fleetSummary([], [{ imageId: `ami${CLEAR}`, role: null, hosts: 1, drifted: 1, fleetWide: [], snowflakes: [{ hostId: 'h1', hostname: `evil${TITLE}`, score: 1, why: 'rare' }] }] as unknown as Parameters<typeof fleetSummary>[1], false);
  t.notMatch(out, RAW);
  t.match(out, /evil\\x1b\]0;owned\\x07/);
});
