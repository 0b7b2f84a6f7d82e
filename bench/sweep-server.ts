import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { instanceDrift, startSsmServer } from '../test/helpers/ssm-server.js';

/**
 * The SSM side of bench/sweep.sh: the local SSM server of the tests (it runs the
 * received commands with sh) with N instances, all with the baked root ROOT as their /
 * and a state folder each. Prints the endpoint, then serves until stdin closes.
 * Usage: node dist/bench/sweep-server.js ROOT WORKDIR N
 */
const [root, work, n] = process.argv.slice(2);
if (!root || !work || !n) throw new Error('usage: sweep-server.js ROOT WORKDIR N');
const ssm = await startSsmServer();
const path = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
for (let i = 1; i <= Number(n); i++) {
  const id = `i-${i.toString(16).padStart(17, '0')}`;
  await mkdir(join(work, id), { recursive: true });
  ssm.instances.set(id, { path: `${await instanceDrift(join(work, id, 'bin'), root, join(work, id, 'state'))}:${path}` });
  process.stderr.write(`ssm://${id}\n`);
}
process.stdout.write(`${ssm.endpoint}\n`);
process.stdin.resume();
process.stdin.on('end', () => { void ssm.close().then(() => process.exit(0)); });
