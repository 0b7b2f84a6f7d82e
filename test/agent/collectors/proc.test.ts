import t from 'tap';
import { readFileSync } from 'node:fs';
import { SocketAddress } from 'node:net';
import {
  type NetTable,
  decodeHexAddress,
  formatIPv6,
  isKernelThread,
  isListening,
  parseExeLink,
  parseNetTable,
  parsePasswd,
  parseSocketLink,
  parseStat,
  parseStatus,
  portKey,
} from '../../../agent/collectors/proc.js';
import { fixtures } from '../../helpers/paths.js';

// Recorded on a Debian 12 VM (kernel 6.18) by test/fixtures/proc/record.sh.
const recorded = (name: string): string => readFileSync(fixtures('proc', 'recorded', name), 'utf8');

t.test('stat: a command name with spaces and parentheses is read up to the last )', async (t) => {
  const s = parseStat(recorded('paren-comm.stat'));
  t.same(s, { pid: 32480, comm: 'a) b (c', state: 'S', ppid: 32461, flags: 4194304 });
  t.notOk(s && isKernelThread(s, parseStatus(recorded('paren-comm.status')), true), 'a user process');
});

t.test('stat: kernel threads carry PF_KTHREAD', async (t) => {
  const kthreadd = parseStat(recorded('kthreadd.stat'));
  t.same(kthreadd, { pid: 2, comm: 'kthreadd', state: 'S', ppid: 0, flags: 2129984 });
  const kworker = parseStat(recorded('kworker.stat'));
  t.equal(kworker?.comm, 'kworker/R-rcu_gp');
  t.equal(kworker?.state, 'I');
  t.equal(kworker?.ppid, 2);
  for (const s of [kthreadd, kworker]) t.ok(s && isKernelThread(s, null, true), `${s?.comm} is a kernel thread by its flags`);
  const init = parseStat(recorded('init.stat'));
  t.equal(init?.comm, 'process_api');
  t.notOk(init && isKernelThread(init, null, true), 'PID 1 is not a kernel thread');
});

t.test('kernel threads are found without PF_KTHREAD too', async (t) => {
  const oldKernel = { pid: 40, comm: 'kworker/0:1', state: 'I', ppid: 2, flags: 0 };
  t.ok(isKernelThread(oldKernel, null, false), 'no exe and kthreadd as parent');
  t.notOk(isKernelThread(oldKernel, null, true), 'an exe makes it a user process');
  t.ok(isKernelThread({ pid: 2, comm: 'kthreadd', state: 'S', ppid: 0, flags: 0 }, null, false), 'kthreadd itself');
  t.ok(isKernelThread({ ...oldKernel, ppid: 7 }, { realUid: 0, kthread: true }, true), 'the Kthread: status line');
  t.notOk(isKernelThread({ ...oldKernel, ppid: 7 }, { realUid: 0, kthread: false }, false), 'another parent, no flag: not one');
});

t.test('stat: text that is not a stat line gives null', async (t) => {
  t.equal(parseStat(''), null);
  t.equal(parseStat('12 (x'), null);
  t.equal(parseStat('12 (x) 9 1'), null);
});

t.test('status: the real uid is the first of the Uid: line', async (t) => {
  t.same(parseStatus(recorded('init.status')), { realUid: 0, kthread: false });
  t.same(parseStatus('Name:\tx\nUid:\t1000\t0\t0\t0\nGid:\t1\t1\t1\t1\n'), { realUid: 1000, kthread: null });
  t.equal(parseStatus('Name:\tx\n'), null);
});

t.test('passwd: uid to name, first line wins', async (t) => {
  const users = parsePasswd('# local\nroot:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\ntoor:x:0:0::/:/bin/sh\nbroken\n\n');
  t.same([...users], [[0, 'root'], [1000, 'alice']]);
});

t.test('exe link: the deleted suffix and the root prefix are taken off', async (t) => {
  t.same(parseExeLink('/usr/sbin/sshd', '/'), { path: '/usr/sbin/sshd', deleted: false });
  t.same(parseExeLink('/usr/sbin/sshd (deleted)', '/'), { path: '/usr/sbin/sshd', deleted: true });
  t.same(parseExeLink('/mnt/img/usr/bin/app (deleted)', '/mnt/img/'), { path: '/usr/bin/app', deleted: true });
  t.same(parseExeLink('/mnt/image/usr/bin/app', '/mnt/img'), { path: '/mnt/image/usr/bin/app', deleted: false }, 'only a whole-folder prefix');
});

t.test('socket links', async (t) => {
  t.equal(parseSocketLink('socket:[33311]'), '33311');
  t.equal(parseSocketLink('pipe:[33311]'), null);
  t.equal(parseSocketLink('/dev/null'), null);
});

const listening = (table: NetTable): string[] =>
  parseNetTable(recorded(`net-${table}`))
    .filter((r) => isListening(table, r))
    .map((r) => `${portKey(table, r.localAddress, r.localPort)} ${r.inode}`);

t.test('tcp: LISTEN rows only, addresses little-endian, ports hex', async (t) => {
  const rows = parseNetTable(recorded('net-tcp'));
  t.equal(rows.length, 95, 'every socket row, no header');
  t.same(rows[3], { localAddress: '192.0.2.2', localPort: 35900, remoteAddress: '203.0.113.80', remotePort: 80, state: 6, inode: '0' });
  t.same(listening('tcp'), ['tcp:0.0.0.0:2024 1060', 'tcp:0.0.0.0:36637 33311', 'tcp:127.0.0.1:45943 33312']);
});

t.test('tcp6: any, loopback and v4-mapped listeners', async (t) => {
  t.same(listening('tcp6'), ['tcp6:[::]:37703 33313', 'tcp6:[::ffff:127.0.0.1]:39691 33315', 'tcp6:[::1]:46069 33314']);
});

t.test('udp: bound, unconnected sockets only', async (t) => {
  t.same(listening('udp'), ['udp:0.0.0.0:47133 33317', 'udp:127.0.0.1:57960 33316']);
  const connected = parseNetTable(recorded('net-udp')).find((r) => r.inode === '33320');
  t.same(connected && [connected.remoteAddress, connected.remotePort, isListening('udp', connected)], ['127.0.0.1', 53, false]);
  t.same(listening('udp6'), ['udp6:[::1]:38584 33318', 'udp6:[::]:40862 33319']);
});

t.test('IPv6 text is what Node prints', async (t) => {
  t.equal(decodeHexAddress('00000000000000000000000001000000'), '::1');
  t.equal(decodeHexAddress('B80D0120000000000000000001000000'), '2001:db8::1');
  t.equal(formatIPv6([0xfe80, 0, 0, 0, 0, 0, 0, 1]), 'fe80::1');
  t.equal(formatIPv6([0x2001, 0xdb8, 0, 0, 1, 0, 0, 1]), '2001:db8::1:0:0:1', 'the first of equal runs');
  t.equal(formatIPv6([0x2001, 0, 1, 2, 3, 4, 5, 6]), '2001:0:1:2:3:4:5:6', 'one zero word is not compressed');
  // Shapes the rules treat specially, then random ones mixing zero and non-zero words.
  const samples: number[][] = [
    [0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0xffff, 0x7f00, 1],
    [0, 0, 0, 0, 0, 0, 0x102, 0x304], [0, 0, 0, 0, 0, 0xfffe, 1, 2], [1, 0, 0, 0, 0, 0, 0, 0],
  ];
  let seed = 7;
  const rand = (): number => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed; };
  for (let n = 0; n < 500; n++) samples.push(Array.from({ length: 8 }, () => (rand() % 3 === 0 ? rand() % 0x10000 : 0)));
  const wrong = samples
    .map((w) => [formatIPv6(w), new SocketAddress({ address: w.map((x) => x.toString(16)).join(':'), family: 'ipv6' }).address])
    .filter(([ours, node]) => ours !== node);
  t.same(wrong, [], 'formatIPv6 agrees with node:net on every sample');
});
