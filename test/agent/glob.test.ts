import t from 'tap';
import { compilePathRules, globBases, isUnder, lastMatch, withBaseAt } from '../../agent/glob.js';
import { emptyRuleSet, type RuleSet } from '../../agent/protocol/rules.js';
import { globMatcher, normaliseGlob } from '../../agent/protocol/glob.js';

function rules(watch: string[], ignore: string[] = []): RuleSet {
  const r = emptyRuleSet();
  r.watch = watch.map((path) => ({ path }));
  r.ignore = ignore.map((path) => ({ path, why: 'test' }));
  return r;
}

t.test('the static base of a glob is its literal leading folders, braces expanded', async (t) => {
  t.same(globBases('/etc/**'), ['/etc']);
  t.same(globBases('/usr/{bin,sbin,lib}/**'), ['/usr/bin', '/usr/lib', '/usr/sbin']);
  t.same(globBases('/etc/machine-id'), ['/etc/machine-id']);
  t.same(globBases('/etc/ssh/*.pub'), ['/etc/ssh']);
  t.same(globBases('/etc/ssh/ssh_host_*_key'), ['/etc/ssh']);
  t.same(globBases('/**'), ['/']);
  t.same(globBases('/a/b{c,d}/x/**'), ['/a/bc/x', '/a/bd/x']);
  t.same(globBases('/a/{b,{c,d}}/**'), ['/a/b', '/a/c', '/a/d'], 'nested braces expand, inner pair first');
  t.same(globBases('/a/\\*b/**'), ['/a/*b'], 'an escaped wildcard is a literal name');
  t.same(globBases('//etc//ssh/**'), ['/etc/ssh']);
});

t.test('walk roots are minimal and the candidates of a path come from the bases above it', async (t) => {
  const compiled = compilePathRules(rules(['/etc/**', '/etc/ssh/*.pub', '/usr/{bin,sbin}/**', '/usr/bin/ls']));
  t.same(compiled.walkRoots, ['/etc', '/usr/bin', '/usr/sbin']);
  t.ok(compiled.aboveWatchBase.has('/usr'));
  t.ok(compiled.aboveWatchBase.has('/'));
  t.notOk(compiled.aboveWatchBase.has('/etc/ssh/x'));
  let cands = withBaseAt([], compiled.watchAt, '/etc');
  t.equal(cands.length, 1);
  cands = withBaseAt(cands, compiled.watchAt, '/etc/ssh');
  t.same(cands.map((c) => c.index), [0, 1], 'kept in rule order');
  t.equal(lastMatch(cands, '/etc/ssh/a.pub')?.index, 1, 'the last matching rule wins');
  t.equal(lastMatch(cands, '/etc/ssh/a.key')?.index, 0);
  t.equal(withBaseAt(cands, compiled.watchAt, '/etc/nothing-here'), cands, 'no allocation when nothing is added');
});

t.test('globs match dot files and the base itself', async (t) => {
  const compiled = compilePathRules(rules(['/etc/**']));
  const cands = withBaseAt([], compiled.watchAt, '/etc');
  t.ok(lastMatch(cands, '/etc'));
  t.ok(lastMatch(cands, '/etc/.pwd.lock'));
  t.notOk(lastMatch(cands, '/etcx'));
});

t.test('a relative glob is refused with the rule that wrote it', async (t) => {
  const r = emptyRuleSet();
  r.watch = [{ path: 'etc/**', source: { file: 'rules/base.yaml', line: 3, col: 5 } }];
  t.throws(() => compilePathRules(r), { name: 'DriftError', code: 'DRIFT_ERR_RULES', message: /rules\/base\.yaml:3: watch path "etc\/\*\*" is not absolute/ });
  t.throws(() => compilePathRules(rules(['/etc/**'], ['tmp/**'])), { code: 'DRIFT_ERR_RULES', message: /ignore path/ });
});

t.test('isUnder is about whole folder names', async (t) => {
  t.ok(isUnder('/etc/ssh', '/etc'));
  t.ok(isUnder('/etc', '/etc'));
  t.notOk(isUnder('/etcx', '/etc'));
  t.ok(isUnder('/anything', '/'));
});

t.test('every name a file system holds is matched: newline, CR, U+2028, U+2029', async (t) => {
  for (const name of ['evil\n', 'a\r.sh', 'x\u2028y', 'x\u2029y', '\n']) {
    // Messages name the bytes in hex: a raw U+2028 would break the TAP stream itself.
    const hex = Buffer.from(name).toString('hex');
    t.ok(globMatcher('/etc/**')(`/etc/sudoers.d/${name}`), `** matches ${hex}`);
    t.ok(globMatcher('/etc/sudoers.d/*')(`/etc/sudoers.d/${name}`), `* matches ${hex}`);
    t.ok(globMatcher('/etc/sudoers.d/?*')(`/etc/sudoers.d/${name}`), `?* matches ${hex}`);
  }
  t.ok(globMatcher('/etc/**')('/etc/a\nb/c'), 'in a folder name too');
  t.notOk(globMatcher('/etc/*')('/etc/a\n/b'), '* still stays within one folder');
});

t.test('/** at the end of a brace alternative matches the folder itself, as it does outside braces', async (t) => {
  const sudo = globMatcher('/etc/{sudoers,sudoers.d/**,doas.conf,doas.d/**}');
  for (const p of ['/etc/sudoers', '/etc/sudoers.d', '/etc/sudoers.d/x', '/etc/sudoers.d/a/b', '/etc/doas.d']) t.ok(sudo(p), p);
  for (const p of ['/etc/sudoersx', '/etc/sudoers.dx', '/etc/doas']) t.notOk(sudo(p), p);
  t.equal(normaliseGlob('/etc/{pam.d/**,security/**,ld.so.preload}'), '/etc/{pam.d{,/**},security{,/**},ld.so.preload}');
  t.equal(normaliseGlob('/etc/**'), '/etc/**', 'outside braces nothing changes');
  t.equal(normaliseGlob('/etc/{a,b\\/**}'), '/etc/{a,b\\/**}', 'an escaped / is not a folder separator');
});
