/**
 * The packages collector on a root (default /): packages, owned paths, and the
 * in-process time of one collection. Run by bench/packages.sh.
 */
import { packagesCollector } from '../agent/collectors/packages/index.js';
import { OwnerIndex } from '../agent/collectors/packages/owners.js';
import { emptyRuleSet } from '../agent/protocol/rules.js';

const root = process.argv[2] ?? '/';
const started = process.hrtime.bigint();
const result = await packagesCollector.collect({ root, proc: null, rules: emptyRuleSet(), stateDir: null, forceRehash: false });
const ms = Number(process.hrtime.bigint() - started) / 1e6;
process.stdout.write(`packages=${Object.keys(result.entries).length} owned=${result.owners instanceof OwnerIndex ? result.owners.size : 0} unread=${result.unread.length} ms=${ms.toFixed(0)}\n`);
