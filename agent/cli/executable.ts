/**
 * Entry of the single executable (`npm run package` bundles this file and everything it
 * imports into one script embedded in a copy of the node binary). It carries the host
 * commands only: nothing here reaches the collector's modules. Command modules are
 * loaded when their command runs (agent/cli/main.ts); the worker threads run a script of
 * their own (agent/workers.ts).
 */
import { getAsset, isSea } from 'node:sea';
import { setFlagsFromString } from 'node:v8';
import { WORKER_ASSET, runBundled } from '../bundle.js';
import { main } from './main.js';
import { runCli } from './run.js';

// The collectors make many short-lived objects of which many survive one scavenge, and V8
// answers by doubling the young generation up to 16 MB semi-spaces, held until exit. Its
// size limits are read only when the heap is created (an executable takes no V8 options,
// and a second process to pass them would rebuild what the code cache saves), but the
// growth factor is read at each growth: 1 keeps the semi-spaces at their initial 1 MB, as
// close to the npm launcher's `--max-semi-space-size=2`. Worker threads inherit it.
setFlagsFromString('--semi-space-growth-factor=1');

if (isSea()) runBundled(process.execPath, () => getAsset(WORKER_ASSET, 'utf8'));
runCli(main, process.argv.slice(2));
