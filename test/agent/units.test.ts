import t from 'tap';
import { durationOption, parseDuration, parseSize, sizeOption } from '../../agent/units.js';
import { parseSize as serverSize } from '../../server/config.js';
import { parseSize as agentSize } from '../../agent/config.js';

t.test('sizes are binary, for the agent and the collector alike', async (t) => {
  t.equal(parseSize('512M'), 512 * 1024 * 1024);
  t.equal(parseSize('512MB'), 512 * 1024 * 1024);
  t.equal(parseSize('512MiB'), 512 * 1024 * 1024);
  t.equal(parseSize('1g'), 1024 ** 3);
  t.equal(parseSize('64 KiB'), 65536);
  t.equal(parseSize('268435456'), 268435456);
  t.equal(agentSize('512M'), serverSize('512M', '--max-body'), 'one meaning of 512M on both sides');
  t.equal(parseSize('1.5G'), null, 'whole numbers only');
  t.equal(parseSize('12 parsecs'), null);
  t.equal(parseSize(''), null);
});

t.test('durations', async (t) => {
  t.equal(parseDuration('1h30m'), 5_400_000);
  t.equal(parseDuration('250ms'), 250);
  t.equal(parseDuration('30'), 30_000, 'a bare number is seconds');
  t.equal(parseDuration('30d'), 30 * 86_400_000);
  t.equal(parseDuration('5 minutes'), null);
  t.equal(durationOption('15m', '--retention'), 900_000);
  t.throws(() => durationOption('0s', '--retention'), { message: '--retention must be longer than 0 (got "0s")' });
  t.throws(() => sizeOption('0', '--max-body'), { message: /--max-body must be a size in bytes/ });
});

t.test('hostile input: overlong text and overflowing numbers are refused, quickly', async (t) => {
  t.equal(parseSize(`${'9'.repeat(400)}G`), null, 'too long');
  t.equal(parseSize('99999999999999G'), null, 'beyond a safe integer');
  t.equal(parseDuration('9'.repeat(60) + 'd'), null, 'beyond a safe integer');
  t.equal(parseDuration('1s'.repeat(100)), null, 'too long');
  t.equal(parseDuration(`${'1'.repeat(30)}x`), null);
});
