import t from 'tap';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { once } from 'node:events';
import { realpath, rm, writeFile } from 'node:fs/promises';
import { type AddressInfo, connect, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { portsCollector } from '../../../agent/collectors/ports.js';
import { PortEntrySchema } from '../../../agent/protocol/manifest.js';
import { buildProcTree, procContext } from '../../helpers/proc-tree.js';


t.test('fixture /proc: listening sockets tied to their processes', async (t) => {
  const tree = await buildProcTree();
  t.teardown(tree.cleanup);
  const { entries, unread } = await portsCollector.collect(procContext(tree.root, tree.proc));
  t.same(entries, {
    'tcp:0.0.0.0:22': { process: '/usr/sbin/sshd' },
    'tcp6:[::]:22': { process: '/usr/sbin/sshd' },
    'tcp:127.0.0.1:5432': {},
    'tcp:0.0.0.0:5355': { process: '/usr/lib/systemd/systemd' },
    'udp:127.0.0.1:323': { process: '/usr/bin/app' },
  }, 'shared sockets go to the service, not PID 1; an unheld socket has no process; connected ones are left out');
  t.same(unread, [], 'no udp6 table (a kernel without IPv6) is not an error');
  for (const e of Object.values(entries)) PortEntrySchema.parse(e);
});

t.test('fixture /proc: without net tables there are no ports, and no error', async (t) => {
  const tree = await buildProcTree();
  t.teardown(tree.cleanup);
  await rm(join(tree.proc, 'net'), { recursive: true });
  t.same(await portsCollector.collect(procContext(tree.root, tree.proc)), { entries: {}, unread: [] });
});

t.test('no /proc: the collector refuses to run', async (t) => {
  await t.rejects(portsCollector.collect(procContext('/', null)), { name: 'DriftError', code: 'DRIFT_ERR_USAGE' });
});

const listen = async (host: string): Promise<Server> => {
  const server = createServer();
  server.listen(0, host);
  await once(server, 'listening');
  return server;
};
const bind = async (type: 'udp4' | 'udp6', host: string): Promise<UdpSocket> => {
  const socket = createSocket(type);
  socket.bind(0, host);
  await once(socket, 'listening');
  return socket;
};

t.test('live /proc: this process\'s TCP and UDP listeners, IPv4 and IPv6', async (t) => {
  const tcp4 = await listen('127.0.0.1');
  const tcp6 = await listen('::1');
  const udp4 = await bind('udp4', '127.0.0.1');
  const udp6 = await bind('udp6', '::1');
  const connected = await bind('udp4', '127.0.0.1');
  connected.connect((udp4.address()).port, '127.0.0.1');
  await once(connected, 'connect');
  const client = connect((tcp4.address() as AddressInfo).port, '127.0.0.1');
  await once(client, 'connect');
  t.teardown(async () => {
    client.destroy();
    for (const s of [udp4, udp6, connected]) s.close();
    await Promise.all([tcp4, tcp6].map((s) => new Promise((done) => s.close(done))));
  });

  const me = await realpath(process.execPath);
  const { entries } = await portsCollector.collect(procContext('/', '/proc'));
  t.same(entries[`tcp:127.0.0.1:${(tcp4.address() as AddressInfo).port}`], { process: me });
  t.same(entries[`tcp6:[::1]:${(tcp6.address() as AddressInfo).port}`], { process: me });
  t.same(entries[`udp:127.0.0.1:${udp4.address().port}`], { process: me });
  t.same(entries[`udp6:[::1]:${udp6.address().port}`], { process: me });
  t.equal(entries[`udp:127.0.0.1:${connected.address().port}`], undefined, 'a connected UDP socket does not listen');
  t.equal(entries[`tcp:127.0.0.1:${client.localPort}`], undefined, 'an outgoing TCP connection does not listen');
  for (const e of Object.values(entries)) PortEntrySchema.parse(e);
});

t.test('fixture /proc: an exe link that cannot be read is reported, not swallowed', async (t) => {
  const tree = await buildProcTree();
  t.teardown(tree.cleanup);
  // A regular file where the link should be: readlink fails with EINVAL, not a vanished-process error.
  await rm(join(tree.proc, '103', 'exe'));
  await writeFile(join(tree.proc, '103', 'exe'), '');
  const { unread } = await portsCollector.collect(procContext(tree.root, tree.proc));
  t.same(unread, [{ path: '/proc/103/exe', reason: 'EINVAL' }]);
});
