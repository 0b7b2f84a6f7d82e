import t from 'tap';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AGENTLESS_COMMANDS, parseGetfattr, parseImageHashes, parseListing, parseSha256sums, sameStat, splitNul, type ImageRead } from '../../../agent/remote/agentless.js';

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
    // What the login shell reads outside single quotes: no expansion, no chaining there.
    t.notMatch(command.replace(/'[^']*'/g, 'Q'), /\$|`|;|&|\||'/, 'no expansion, no chaining');
  }
  // The one script: sh -c with the paths as its arguments ("$@"), never as code.
  t.match(AGENTLESS_COMMANDS.imageHash, /^LC_ALL=C xargs -0 -r sh -c '[^']*' sh$/);
  t.notMatch(AGENTLESS_COMMANDS.imageHash, /\$(?!@)|`|&|\||eval/, 'no other expansion in the script');
});

t.test('image hashes come between two stats of the same paths, and a change between them shows', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'drift-imagehash-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const a = join(dir, 'a');
  writeFileSync(a, 'image a\n');
  const gone = join(dir, 'gone');
  // The command itself, run by the shell as the host's login shell would.
  const run = (paths: string[]): { stdout: Buffer; stderr: string } => {
    try {
      return { stdout: execFileSync('sh', ['-c', AGENTLESS_COMMANDS.imageHash], { input: paths.map((p) => `${p}\0`).join(''), stdio: ['pipe', 'pipe', 'pipe'] }), stderr: '' };
    } catch (err) {
      const e = err as { stdout: Buffer; stderr: Buffer };
      return { stdout: e.stdout, stderr: e.stderr.toString('utf8') };
    }
  };
  const r = run([gone, a]);
  const got = parseImageHashes([gone, a], r.stdout, r.stderr);
  if (got === 'no sha256sum') throw new Error('sha256sum is missing here');
  t.same(got[0], { reason: 'ENOENT' }, 'a path that is not there gets stat\'s reason');
  const read = got[1] as ImageRead;
  t.ok('sha256' in read, 'the file is read');
  if (!('sha256' in read)) return;
  t.equal(read.sha256, createHash('sha256').update('image a\n').digest('hex'));
  t.ok(sameStat(read.before, read.after), 'nothing changed it');
  t.match(read.before.id, /^\d+:\d+$/);
  t.equal(read.before.size, 8);

  const rec = (...f: string[]): string => f.map((x) => `${x}\0`).join('');
  const H = 'c'.repeat(64);
  const st = (path: string, size: string, mtime: string): string => rec(path, '2049:131', '81ed', size, mtime, '2026-12-01 10:00:00.000000001 +0000');
  const t1 = '2026-12-01 10:00:00.000000001 +0000';
  const t2 = '2026-12-01 10:00:00.500000000 +0000';
  const written = parseImageHashes(['/proc/7/exe'], Buffer.from(`${rec('B')}${st('/proc/7/exe', '10', t1)}${rec('H', `${H}  /proc/7/exe`, 'A')}${st('/proc/7/exe', '10', t2)}`), '');
  t.not(written, 'no sha256sum');
  const w = (written as ImageRead[])[0] as ImageRead;
  t.ok('sha256' in w && !sameStat(w.before, w.after), 'written to while read: the stats differ, so the hash is not taken');
  const twice = parseImageHashes(['/proc/7/exe'], Buffer.from(`${rec('B')}${st('/proc/7/exe', '10', t1)}${st('/proc/7/exe', '11', t1)}${rec('H', `${H}  /proc/7/exe`, 'A')}${st('/proc/7/exe', '10', t1)}`), '');
  t.same(twice, [{ reason: 'EIO' }], 'a path stat\'ed twice in one part is not trusted');
  const noPart = parseImageHashes(['/proc/7/exe'], Buffer.from(`${st('/proc/7/exe', '10', t1)}${rec(`${H}  /proc/7/exe`)}`), '');
  t.same(noPart, [{ reason: 'EIO' }], 'output without its part marks is refused');
  const badTime = parseImageHashes(['/proc/7/exe'], Buffer.from(`${rec('B')}${st('/proc/7/exe', '10', 'soon')}${rec('H', `${H}  /proc/7/exe`, 'A')}${st('/proc/7/exe', '10', t1)}`), '');
  t.same(badTime, [{ reason: 'EIO' }], 'a stat record that does not parse is not taken');
  t.equal(parseImageHashes(['/proc/7/exe'], Buffer.from(rec('B', 'H', 'A')), 'sh: 1: sha256sum: not found\n'), 'no sha256sum');
});
