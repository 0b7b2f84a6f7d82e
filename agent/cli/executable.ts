/**
 * Entry of the single executable (`npm run package` bundles this file and everything it
 * imports into one script embedded in a copy of the node binary). It carries the host
 * commands only: nothing here reaches the collector's modules. Command modules are
 * loaded when their command runs (agent/cli/main.ts); the worker threads run a script of
 * their own (agent/workers.ts).
 */
import { getAsset, isSea } from 'node:sea';
import { WORKER_ASSET, runBundled } from '../bundle.js';
import { main } from './main.js';
import { runCli } from './run.js';

if (isSea()) runBundled(process.execPath, () => getAsset(WORKER_ASSET, 'utf8'));
runCli(main, process.argv.slice(2));
