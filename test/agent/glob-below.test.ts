import t from 'tap';
import { compilePathRules, expandGlob, globBases, hasSlashInGroup } from '../../agent/glob.js';
import { emptyRuleSet } from '../../agent/protocol/rules.js';

t.test('braces expand across folders and with empty alternatives', async (t) => {
  t.same(expandGlob('/{usr/,}lib/systemd/{system,user}/**'), [
    '/usr/lib/systemd/system/**', '/usr/lib/systemd/user/**', '/lib/systemd/system/**', '/lib/systemd/user/**',
  ]);
  t.same(expandGlob('/{root,home/*}/.ssh/**'), ['/root/.ssh/**', '/home/*/.ssh/**']);
  t.same(expandGlob('/etc/{a,{b,c}}'), ['/etc/{a,b}', '/etc/{a,c}'].flatMap((g) => expandGlob(g)), 'nested: the inner pair first, same meaning');
  t.same(expandGlob('/x/{1..3}'), ['/x/{1..3}'], 'ranges too');
  t.same(globBases('/{usr/,}lib/systemd/{system,user}/**'), ['/lib/systemd/system', '/lib/systemd/user', '/usr/lib/systemd/system', '/usr/lib/systemd/user']);
  t.same(globBases('/{root,home/*}/.ssh/**'), ['/home', '/root/.ssh'], 'never the whole filesystem');
});

t.test('below: the walk may skip folders where nothing can match', async (t) => {
  const rules = compilePathRules({ ...emptyRuleSet(), watch: [{ path: '/{root,home/*}/.ssh/**' }, { path: '/etc/**' }] });
  t.same(rules.walkRoots, ['/etc', '/home', '/root/.ssh']);
  const ssh = rules.watchAt.get('/home')?.[0];
  t.ok(ssh, 'the .ssh glob is based at /home');
  t.equal(ssh?.below('/home'), true);
  t.equal(ssh?.below('/home/alice'), true, 'a home may hold .ssh');
  t.equal(ssh?.below('/home/alice/.ssh'), true);
  t.equal(ssh?.below('/home/alice/.ssh/keys/old'), true, '** matches any depth');
  t.equal(ssh?.below('/home/alice/Documents'), false, 'nothing below Documents can match');
  t.equal(ssh?.below('/home/alice/.sshx'), false);
  const etc = rules.watchAt.get('/etc')?.[0];
  t.equal(etc?.below('/etc/deep/er/still'), true);
  const exact = compilePathRules({ ...emptyRuleSet(), watch: [{ path: '/etc/{shadow,gshadow}' }] }).watchAt.get('/etc/shadow')?.[0];
  t.equal(exact?.below('/etc/shadow'), true);
  t.equal(exact?.below('/etc/shadow/x'), false, 'a file glob has nothing below its path');
});

t.test('an extglob with a / inside its group: the walk enters every folder under its base', async (t) => {
  const rules = compilePathRules({ ...emptyRuleSet(), watch: [{ path: '/srv/@(foo|bar/baz)/**' }] });
  t.same(rules.walkRoots, ['/srv']);
  const g = rules.watchAt.get('/srv')?.[0];
  t.ok(g?.below('/srv/bar'), 'bar/baz is reached through /srv/bar');
  t.ok(g?.below('/srv/bar/baz'));
  t.ok(g?.match('/srv/bar/baz/x'));
  t.notOk(g?.match('/srv/bar/x'));
  t.ok(hasSlashInGroup('/srv/@(foo|bar/baz)/**'));
  t.notOk(hasSlashInGroup('/srv/@(foo|bar)/**'));
  t.notOk(hasSlashInGroup('/srv/\\(a/b\\)'), 'escaped parentheses are no group');
});
