import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { linkSync, lstatSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getAttributeSync, listAttributesSync, setAttributeSync } from '@napi-rs/xattr';
import { MAX_ACL_ENTRIES, MAX_XATTRS, decodeAcl, decodeCaps, decodeXattrs, readXattrs, selinuxLabel, xattrErrno } from '../../../agent/collectors/attrs.js';
import { FlagsStream, LsattrLines, flagsMask, flagsText, parseLsattr, readFlags } from '../../../agent/collectors/flags.js';
import { StringDecoder } from 'node:string_decoder';
import { createFilesCollector, deviceText } from '../../../agent/collectors/files.js';
import { FileEntrySchema } from '../../../agent/protocol/manifest.js';
import { emptyRuleSet } from '../../../agent/protocol/rules.js';

const later = (): Date => new Date(Date.now() + 10_000);
const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const sh = (cmd: string, args: string[]): string => execFileSync(cmd, args, { encoding: 'utf8' });

function tempDir(t: { teardown: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'drift-attrs-'));
  t.teardown(() => {
    // Immutable and append-only files cannot be removed; chattr -R also complains of symlinks, which is fine here.
    spawnSync('chattr', ['-R', '-i', '-a', dir], { stdio: 'ignore' });
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

t.test('capabilities decode to the text getcap prints', async (t) => {
  // Recorded: `setcap cap_setuid+ep` (revision 2, effective).
  t.equal(decodeCaps(hex('01000002 80000000 00000000 00000000 00000000')), 'cap_setuid=ep');
  // cap_net_bind_service and cap_net_raw permitted+effective.
  t.equal(decodeCaps(hex('01000002 00240000 00000000 00000000 00000000')), 'cap_net_bind_service,cap_net_raw=ep');
  // cap_chown inheritable only, cap_setuid permitted, no effective bit.
  t.equal(decodeCaps(hex('00000002 80000000 01000000 00000000 00000000')), 'cap_chown=i cap_setuid+p');
  // A capability above 31 (cap_bpf, 39) lives in the second word.
  t.equal(decodeCaps(hex('01000002 00000000 00000000 80000000 00000000')), 'cap_bpf=ep');
  // Revision 3 (user namespaces) with a root id; revision 1 (one word).
  t.equal(decodeCaps(hex('01000003 80000000 00000000 00000000 00000000 e8030000')), 'cap_setuid=ep [rootid=1000]');
  t.equal(decodeCaps(hex('01000001 80000000 00000000')), 'cap_setuid=ep');
  t.equal(decodeCaps(hex('01000002 00000000 00000000 00000000 00000000')), '=', 'an empty set');

  t.test('against getcap on a real file', async (t) => {
    const dir = tempDir(t);
    const file = join(dir, 'bin');
    writeFileSync(file, '#!/bin/sh\n');
    for (const caps of ['cap_setuid+ep', 'cap_net_raw,cap_net_admin+ep', 'cap_sys_admin+ip']) {
      sh('setcap', [caps, file]);
      const value = getAttributeSync(file, 'security.capability');
      t.ok(value, caps);
      t.equal(decodeCaps(value as Buffer), sh('getcap', [file]).trim().slice(file.length + 1), `${caps} reads as getcap prints it`);
    }
  });
});

t.test('hostile capability values are recorded by digest, never guessed', async (t) => {
  t.match(decodeCaps(hex('0100')), /^invalid sha256:[0-9a-f]{64}$/, 'too short');
  t.match(decodeCaps(hex('01000002 80000000')), /^invalid sha256:/, 'revision 2 cut short');
  t.match(decodeCaps(hex('01000009 80000000 00000000 00000000 00000000')), /^invalid sha256:/, 'an unknown revision');
  t.match(decodeCaps(Buffer.alloc(65536, 0xff)), /^invalid sha256:/, 'the largest value the kernel allows');
});

t.test('ACLs decode to the entries getfacl prints, with numeric ids', async (t) => {
  // Recorded: `setfacl -m u:1000:rwx` on a 0644 file.
  const value = Buffer.from('AgAAAAEABgD/////AgAHAOgDAAAEAAQA/////xAABwD/////IAAEAP////8=', 'base64');
  t.same(decodeAcl(value), ['user::rw-', 'user:1000:rwx', 'group::r--', 'mask::rwx', 'other::r--']);

  t.test('against getfacl on a real file and folder', async (t) => {
    const dir = tempDir(t);
    const file = join(dir, 'f');
    writeFileSync(file, 'x');
    sh('setfacl', ['-m', 'u:1000:r,g:50:rw', file]);
    sh('setfacl', ['-d', '-m', 'u:1001:rx', dir]);
    const lines = (path: string, prefix = ''): string[] => sh('getfacl', ['-n', '-c', '-E', path]).split('\n').filter((l) => l !== '' && l.startsWith(prefix));
    t.same(decodeAcl(getAttributeSync(file, 'system.posix_acl_access') as Buffer), lines(file));
    t.same(decodeAcl(getAttributeSync(dir, 'system.posix_acl_default') as Buffer), lines(dir, 'default:').map((l) => l.slice('default:'.length)));
  });

  t.test('a value that is not an ACL decodes to null', async (t) => {
    t.equal(decodeAcl(hex('03000000 01000600 ffffffff')), null, 'another version');
    t.equal(decodeAcl(hex('02000000 01000600 ffff')), null, 'a cut entry');
    t.equal(decodeAcl(hex('02000000 40000600 ffffffff')), null, 'an unknown tag');
    t.equal(decodeAcl(hex('02000000 01000f00 ffffffff')), null, 'permission bits beyond rwx');
    const many = Buffer.alloc(4 + (MAX_ACL_ENTRIES + 1) * 8);
    many.writeUInt32LE(2, 0);
    for (let i = 0; i <= MAX_ACL_ENTRIES; i++) many.writeUInt16LE(0x02, 4 + i * 8);
    t.equal(decodeAcl(many), null, `more than ${MAX_ACL_ENTRIES} entries`);
  });
});

t.test('other xattrs by digest, the SELinux label as text, bounded in number', async (t) => {
  t.equal(selinuxLabel(Buffer.from('system_u:object_r:bin_t:s0\0')), 'system_u:object_r:bin_t:s0');
  t.match(selinuxLabel(Buffer.from('evil\nlabel\0')), /^sha256:/, 'control characters: digest');
  t.match(selinuxLabel(Buffer.alloc(300, 0x61)), /^sha256:/, 'too long: digest');
  const names = Array.from({ length: MAX_XATTRS + 10 }, (_, i) => `user.a${String(i).padStart(3, '0')}`);
  const { facts, problems } = decodeXattrs(names, () => Buffer.from('v'));
  t.equal(Object.keys(facts.xattrs ?? {}).length, MAX_XATTRS, `at most ${MAX_XATTRS} recorded`);
  t.match(problems, [{ reason: new RegExp(`xattrs: ${MAX_XATTRS + 10} attributes, more than the ${MAX_XATTRS}`) }], 'and the rest is said, not hidden');
  const bad = decodeXattrs(['system.posix_acl_access'], () => hex('07000000'));
  t.match(bad.facts.xattrs?.['system.posix_acl_access'], /^sha256:/, 'an undecodable ACL is kept by digest');
  t.equal(bad.problems.length, 1);
  t.equal(xattrErrno(new Error('No such file or directory (os error 2)')), 'ENOENT');
});

t.test('xattrs are read from the path itself, never through a symlink', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'f');
  writeFileSync(file, 'x');
  setAttributeSync(file, 'user.mark', 'target');
  symlinkSync('f', join(dir, 'link'));
  t.same(listAttributesSync(join(dir, 'link')), [], 'the library lists the link, not its target');
  t.same(readXattrs(join(dir, 'link')), { facts: {}, problems: [] });
  t.same(Object.keys(readXattrs(file).facts.xattrs ?? {}), ['user.mark']);
  t.same(readXattrs(join(dir, 'gone')).problems, [{ reason: 'xattrs: ENOENT' }]);
});

t.test('lsattr output is matched to the paths it was given, whatever their names', async (t) => {
  t.equal(flagsText(flagsMask('----ia--------e-------')), 'ia', 'bookkeeping flags (e) are left out');
  const paths = ['/a', '/a b', '/gone', '/x/dev'];
  const stdout = '----i---------e------- /a\n-----a--------e------- /a b\n';
  const stderr = 'lsattr: No such file or directory while trying to stat /gone\nlsattr: Operation not supported While reading flags on /x/dev\n';
  const r = parseLsattr(paths, stdout, stderr);
  t.same([...r.flags], [flagsMask('i'), flagsMask('a'), -1, -1]);
  t.same([...r.errors], [[2, 'ENOENT'], [3, 'EOPNOTSUPP']]);
  // A name crafted to look like another path's line does not borrow its flags.
  const forged = parseLsattr(['/a', '/a\n----i--- /b'], '----i---------e------- /a\n----i---- /b\n', '');
  t.equal(forged.flags[1], -1, 'a later line that only starts with the name is not its line');

  t.test('matched as it arrives: any split of the output gives what the whole output gives', async (t) => {
    const names = ['/a', '/a b', '/gone', '/x/dev', '/é/ü', '/last'];
    const out = '----i---------e------- /a\n-----a--------e------- /a b\n---------------------- /é/ü\n--------------e------- /last\n';
    const whole = parseLsattr(names, out, '');
    const bytes = Buffer.from(out, 'utf8');
    for (let cut = 0; cut <= bytes.length; cut++) {
      const got = new Int32Array(names.length).fill(-1);
      const lines = new LsattrLines(names.length, (k) => names[k] as string, (k, mask) => {
        got[k] = mask;
      });
      // Split on a byte boundary, as a pipe may (inside a UTF-8 sequence too).
      const decoder = new StringDecoder('utf8');
      lines.push(decoder.write(bytes.subarray(0, cut)));
      lines.push(decoder.write(bytes.subarray(cut)));
      lines.push(decoder.end());
      lines.end();
      if (!t.same([...got], [...whole.flags], `split at byte ${cut}`)) break;
      t.same(lines.failed, [2, 3], `split at byte ${cut}: the unanswered paths`);
    }
    // A line only starting like the expected path, a partial last line and a forged field answer nothing.
    const got: number[] = [];
    const lines = new LsattrLines(3, (k) => ['/a', '/b', '/c'][k] as string, (k) => got.push(k));
    lines.push('----i--- /ab\n-x-!---- /b\n----i--- /c');
    lines.end();
    t.same(got, [], 'no path answered');
    t.same(lines.failed, [0, 1, 2]);
  });

  t.test('against lsattr on real files, with a newline in a name', async (t) => {
    const dir = tempDir(t);
    const plain = join(dir, 'plain');
    const odd = join(dir, 'odd\n----i---------e------- plain');
    writeFileSync(plain, 'x');
    writeFileSync(odd, 'x');
    execFileSync('chattr', ['+a', odd]);
    execFileSync('chattr', ['+i', plain]);
    const result = await readFlags([plain, odd, dir]);
    t.same([...result.flags], [flagsMask('i'), flagsMask('a'), 0]);
    t.equal(result.missing, null);
  });
});

t.test('lsattr over more paths than a pipe holds: every path answered in order, failures by name', async (t) => {
  const dir = tempDir(t);
  // 3,000 names of ~120 bytes: ~360 KB of input and of output, many pipe buffers each way.
  const paths = Array.from({ length: 3000 }, (_, i) => join(dir, `${String(i).padStart(5, '0')}-${'x'.repeat(110)}`));
  for (const p of paths) writeFileSync(p, '');
  execFileSync('chattr', ['+d', paths[1500] as string]);
  rmSync(paths[2999] as string);
  const result = await readFlags([...paths, join(dir, 'never-made')]);
  t.equal(result.missing, null);
  t.equal(result.flags[1500], flagsMask('d'), 'the flagged file in the middle');
  t.equal([...result.flags.subarray(0, 2999)].filter((m) => m === 0).length, 2998, 'every other file read, none set');
  t.same([...result.errors], [[2999, 'ENOENT'], [3000, 'ENOENT']], 'the missing paths, with their reason');
});

t.test('lsattr fed paths while its answers come in: each answer under the index it was added with, a newline name in its own run', async (t) => {
  const dir = tempDir(t);
  // ~1.4 MB of paths: more than one lsattr process takes (1 MiB of arguments), so the first answers before the last path is added.
  const deep = join(dir, 'd'.repeat(200), 'e'.repeat(200));
  mkdirSync(deep, { recursive: true });
  const paths = Array.from({ length: 2500 }, (_, i) => join(deep, `${String(i).padStart(5, '0')}-${'y'.repeat(150)}`));
  for (const p of paths) writeFileSync(p, '');
  const odd = join(dir, 'odd\n----i---------e------- 00007');
  writeFileSync(odd, '');
  execFileSync('chattr', ['+a', odd]);
  execFileSync('chattr', ['+d', paths[1234] as string]);
  rmSync(paths[7] as string);
  // Indexes are the caller's own: every other one, the odd name in the middle.
  const byIndex = new Map<number, string>();
  const got = new Map<number, number>();
  let answeredBeforeFinish = 0;
  const stream = new FlagsStream((i) => byIndex.get(i) as string, (i, mask) => got.set(i, mask));
  for (let k = 0; k < paths.length; k++) {
    byIndex.set(2 * k, paths[k] as string);
    stream.add(2 * k);
    if (k === 1000) {
      byIndex.set(1, odd);
      stream.add(1);
    }
    // Turns of the event loop between adds, as the files collector's walk gives them.
    if (k % 250 === 249) {
      await new Promise<void>((resolve) => setTimeout(resolve, 20));
      answeredBeforeFinish = got.size;
    }
  }
  const result = await stream.finish();
  t.equal(result.missing, null);
  t.ok(answeredBeforeFinish > 0, 'answers arrive before finish');
  t.equal(got.get(2 * 1234), flagsMask('d'), 'the flagged file, under its index');
  t.equal(got.get(1), flagsMask('a'), 'the name with a newline, read on its own');
  t.same([...result.errors], [[14, 'ENOENT']], 'the removed path, under its index');
  t.equal(got.size, paths.length, 'every other path answered');
});

t.test('device numbers as c/b MAJOR:MINOR, large numbers included', async (t) => {
  t.equal(deviceText(0o020644, (1n << 8n) | 3n), 'c 1:3');
  // makedev(259, 65536): major above 255 and minor above 255 use the high bits.
  const dev = ((259n & 0xfffn) << 8n) | ((259n & ~0xfffn) << 32n) | (65536n & 0xffn) | ((65536n & ~0xffn) << 12n);
  t.equal(deviceText(0o060600, dev), 'b 259:65536');
  t.equal(deviceText(0o010644, 0n), undefined, 'a FIFO has none');
});

t.test('every attribute change drift reuses from the stat cache moves ctime on this file system (the cache is keyed on it)', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'f');
  const folder = join(dir, 'd');
  writeFileSync(file, 'x');
  mkdirSync(folder);
  const probe = join(dir, 'probe');
  const ctimeNs = (p: string): bigint => lstatSync(p, { bigint: true }).ctimeNs;
  const changes: Array<[string, string[], string]> = [
    ['chattr', ['+d'], file], ['chattr', ['-d'], file], ['chattr', ['+a'], folder], ['chattr', ['-a'], folder],
    ['setfattr', ['-n', 'user.k', '-v', 'v'], file], ['setfattr', ['-x', 'user.k'], file],
    ['setfacl', ['-m', 'u:1000:r'], file], ['setfacl', ['-d', '-m', 'g:50:rx'], folder],
    ['setcap', ['cap_net_raw+ep'], file], ['setcap', ['-r'], file],
  ];
  for (const [tool, args, path] of changes) {
    const before = ctimeNs(path);
    // Wait until the file system's clock (coarse: one kernel tick) has passed `before`,
    // seen on a scratch file, so that an unchanged ctime can only mean "not moved".
    let ticked = false;
    for (let i = 0; i < 1_000_000 && !ticked; i++) {
      writeFileSync(probe, '');
      ticked = ctimeNs(probe) > before;
    }
    t.ok(ticked, 'the file system clock moved');
    sh(tool, [...args, path]);
    t.not(ctimeNs(path), before, `${tool} ${args.join(' ')} on a ${path === file ? 'file' : 'folder'} moves its ctime`);
  }
});

t.test('the collector records every attribute, and a warm scan equals a cold one after each change', async (t) => {
  const dir = tempDir(t);
  const root = join(dir, 'root');
  const state = join(dir, 'state');
  mkdirSync(join(root, 'etc/conf.d'), { recursive: true });
  writeFileSync(join(root, 'etc/tool'), '#!/bin/sh\n', { mode: 0o755 });
  writeFileSync(join(root, 'etc/plain'), 'x\n');
  symlinkSync('plain', join(root, 'etc/link'));
  const rules = emptyRuleSet();
  rules.watch = [{ path: '/etc/**' }];
  const collector = createFilesCollector({ clock: later });
  const collect = (stateDir: string | null) => collector.collect({ root, proc: null, rules, stateDir, forceRehash: false });
  await collect(state);

  const changes: Array<[string, () => void, (e: Record<string, unknown>) => void]> = [
    ['setcap', () => sh('setcap', ['cap_net_raw+ep', join(root, 'etc/tool')]), (e) => t.match(e['/etc/tool'], { caps: 'cap_net_raw=ep' })],
    ['setfattr', () => sh('setfattr', ['-n', 'user.k', '-v', 'v', join(root, 'etc/plain')]), (e) => t.match(e['/etc/plain'], { xattrs: { 'user.k': /^sha256:/ } })],
    ['setfacl', () => sh('setfacl', ['-m', 'u:1000:r', join(root, 'etc/plain')]), (e) => t.match(e['/etc/plain'], { acl: ['user::rw-', 'user:1000:r--', 'group::r--', 'mask::r--', 'other::r--'] })],
    ['setfacl -d', () => sh('setfacl', ['-d', '-m', 'g:50:rx', join(root, 'etc/conf.d')]), (e) => t.match(e['/etc/conf.d'], { defaultAcl: ['user::rwx', 'group::r-x', 'group:50:r-x', 'mask::r-x', 'other::r-x'] })],
    ['chattr', () => sh('chattr', ['+a', join(root, 'etc/conf.d')]), (e) => t.match(e['/etc/conf.d'], { flags: 'a' })],
    ['ln', () => linkSync(join(root, 'etc/tool'), join(dir, 'elsewhere')), (e) => t.match(e['/etc/tool'], { nlink: 2 })],
    ['mknod', () => sh('mknod', [join(root, 'etc/mem'), 'c', '1', '1']), (e) => t.match(e['/etc/mem'], { type: 'other', device: 'c 1:1' })],
    ['touch', () => sh('touch', ['-d', '2001-02-03 04:05:06Z', join(root, 'etc/plain')]), (e) => t.match(e['/etc/plain'], { mtime: 981173106 })],
  ];
  for (const [tool, change, check] of changes) {
    change();
    const warm = await collect(state);
    const cold = await collect(null);
    t.same(warm, cold, `${tool}: the warm scan equals a cold one`);
    t.same(warm.unread, [], `${tool}: nothing unread`);
    check(warm.entries);
    for (const [key, entry] of Object.entries(warm.entries)) {
      if (!FileEntrySchema.safeParse(entry).success) t.fail(`${key} does not fit FileEntrySchema`);
    }
  }
  const link = (await collect(null)).entries['/etc/link'];
  t.match(link, { type: 'symlink', target: 'plain' });
  t.notOk(link && ('acl' in link || 'xattrs' in link), 'the symlink carries nothing of its target');
});

t.test('a file system without inode flags is reported once, lsattr missing once, and nothing else is lost', async (t) => {
  const dir = tempDir(t);
  const root = join(dir, 'root');
  mkdirSync(join(root, 'run'), { recursive: true });
  // ramfs has no inode flags (tmpfs has them since Linux 6.0).
  execFileSync('mount', ['-t', 'ramfs', 'drift-test', join(root, 'run')]);
  t.teardown(() => spawnSync('umount', [join(root, 'run')]));
  writeFileSync(join(root, 'run/b'), 'b');
  writeFileSync(join(root, 'run/a'), 'a');
  const rules = emptyRuleSet();
  rules.watch = [{ path: '/run/**' }];
  const collector = createFilesCollector({ clock: later });
  const state = join(dir, 'state');
  const collect = (stateDir: string | null) => collector.collect({ root, proc: null, rules, stateDir, forceRehash: false });
  const first = await collect(state);
  t.same(first.unread, [{ path: '/run', reason: 'flags: not supported by the file system of this path (EOPNOTSUPP/ENOTTY): no inode flags were read for any path on it' }], 'once, at the first path by name');
  t.same(Object.keys(first.entries).sort(), ['/run', '/run/a', '/run/b'], 'every path is still recorded');
  t.same(await collect(state), first, 'a warm scan reads them again and says the same');

  // A PATH with xargs and no lsattr.
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  symlinkSync(execFileSync('sh', ['-c', 'command -v xargs'], { encoding: 'utf8' }).trim(), join(bin, 'xargs'));
  const path = process.env['PATH'];
  process.env['PATH'] = bin;
  t.teardown(() => {
    process.env['PATH'] = path;
  });
  const without = await collect(null);
  process.env['PATH'] = path;
  t.same(without.unread, [{ path: '/', reason: 'flags: lsattr not found (install e2fsprogs to record inode flags)' }]);
  t.same(without.entries, first.entries, 'the rest of the collection is whole');
});

t.test('a manifest from a hostile host cannot carry unbounded attributes', async (t) => {
  const base = { type: 'file', mode: '0644', uid: 0, gid: 0 };
  const xattrs = Object.fromEntries(Array.from({ length: MAX_XATTRS + 1 }, (_, i) => [`user.${i}`, 'sha256:x']));
  t.notOk(FileEntrySchema.safeParse({ ...base, xattrs }).success, `more than ${MAX_XATTRS} xattrs`);
  t.notOk(FileEntrySchema.safeParse({ ...base, acl: Array.from({ length: MAX_ACL_ENTRIES + 1 }, () => 'user::rwx') }).success, `more than ${MAX_ACL_ENTRIES} ACL entries`);
  t.notOk(FileEntrySchema.safeParse({ ...base, xattrs: { ['user.' + 'x'.repeat(300)]: 'v' } }).success, 'an xattr name longer than the kernel allows');
  t.notOk(FileEntrySchema.safeParse({ ...base, caps: 'c'.repeat(5000) }).success, 'a capability text beyond any real one');
  t.notOk(FileEntrySchema.safeParse({ ...base, flags: 'i\n' }).success, 'flags other than letters');
  t.notOk(FileEntrySchema.safeParse({ ...base, device: 'c 1:3; rm -rf /' }).success, 'device numbers other than b|c MAJOR:MINOR');
  t.notOk(FileEntrySchema.safeParse({ ...base, nlink: 1 }).success, 'a link count of 1 is written as none');
  t.ok(FileEntrySchema.safeParse({ ...base, caps: 'cap_setuid=ep', acl: ['user::rw-'], flags: 'ia', device: 'b 259:65536', nlink: 3, mtime: -5 }).success, 'real values pass');
});
