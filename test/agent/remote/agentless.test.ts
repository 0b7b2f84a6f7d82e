import t from 'tap';
import { AGENTLESS_COMMANDS, parseGetfattr, parseListing, parseSha256sums, splitNul } from '../../../agent/remote/agentless.js';

/** The parsers of an agentless scan's remote output: every byte is the host's, and hostile. */

const H = 'a'.repeat(64);
const G = 'b'.repeat(64);

t.test('sha256sum -z records answer only the path asked, in order', async (t) => {
  const out = Buffer.from(`${H}  /etc/a\0${G}  /etc/new\nline\0`);
  t.same(parseSha256sums(['/etc/a', '/etc/new\nline'], out, ''), [H, G], 'a name with a newline is one record');
  // A record for another path (a host answering what was not asked) answers nothing.
  const lying = Buffer.from(`${H}  /etc/shadow\0`);
  t.same(parseSha256sums(['/etc/a'], lying, 'sha256sum: /etc/a: Permission denied\n'), [{ reason: 'EACCES' }], 'the reason comes from stderr');
  // A missing file is skipped by sha256sum: the next record still answers the next path.
  t.same(parseSha256sums(['/gone', '/etc/a'], Buffer.from(`${H}  /etc/a\0`), 'sha256sum: /gone: No such file or directory\n'), [{ reason: 'ENOENT' }, H]);
  t.same(parseSha256sums(['/x'], Buffer.from(`${H.slice(1)}Z  /x\0`), ''), [{ reason: 'EIO' }], 'a hash that is not hex is refused');
  t.same(parseSha256sums(['/x'], Buffer.from(`${H}  /x`), 'sha256sum: /x: \x1b[31mevil\n'), [H], 'a last record without its NUL still parses');
  t.same(parseSha256sums(['/y'], Buffer.alloc(0), 'sha256sum: /y: \x1b[31mevil\n'), [{ reason: '?[31mevil' }], 'control characters of a message are not passed on');
});

t.test('the listing: fields checked, numbers strict, a bad record refuses all', async (t) => {
  const rec = (f: string[]): string => f.map((x) => `${x}\0`).join('');
  const ok = ['/etc/passwd', 'f', '4755', '0', '0', '1234', '-5.9', '1', '2049', '8', ''];
  const [one] = parseListing(Buffer.from(rec(ok)), 'h');
  t.equal(one?.perms, 0o4755, 'setuid kept');
  t.equal(one?.mtime, -5, 'toward zero, as the local collector');
  t.throws(() => parseListing(Buffer.from(rec(['etc', ...ok.slice(1)])), 'h'), /no absolute path/);
  t.throws(() => parseListing(Buffer.from(rec([ok[0] as string, 'X', ...ok.slice(2)])), 'h'), /unknown type/);
  t.throws(() => parseListing(Buffer.from(rec([...ok.slice(0, 3), '-1', ...ok.slice(4)])), 'h'), /uid that is not a number/);
  t.throws(() => parseListing(Buffer.from(rec([...ok.slice(0, 6), '1e9', ...ok.slice(7)])), 'h'), /mtime that is not a time/);
  t.throws(() => parseListing(Buffer.from(rec(ok) + 'extra\0'), 'h'), /not a multiple of 11/);
  t.same(splitNul(Buffer.from('\0\0')), [Buffer.alloc(0), Buffer.alloc(0)], 'empty fields are fields');
});

t.test('getfattr dump: escaped names cannot forge another file', async (t) => {
  const text = '# file: /etc/a\\012# file: /etc/shadow\nuser.x=0x6869\nsecurity.capability=0x0100000200200000\n\n# file: /etc/b\\\\c\nuser.y="q"\n\n';
  const dump = parseGetfattr(text);
  t.same([...dump.keys()], ['/etc/a\n# file: /etc/shadow', '/etc/b\\c']);
  t.same(dump.get('/etc/a\n# file: /etc/shadow')?.get('user.x'), Buffer.from('hi'));
  t.equal(dump.get('/etc/b\\c')?.get('user.y')?.toString(), 'q');
});

t.test('the remote commands are fixed strings', async (t) => {
  for (const command of Object.values(AGENTLESS_COMMANDS)) {
    t.match(command, /^LC_ALL=C (find|xargs) /);
    t.notMatch(command, /\$|`|;|&|\|/, 'no expansion, no chaining');
  }
});
