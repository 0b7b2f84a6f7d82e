/**
 * Entry of the single executable (`npm run package` bundles this file and everything it
 * imports into one script embedded in a copy of the node binary). It carries the host
 * commands only: nothing here reaches the collector's modules.
 */
import { getAsset, isSea } from 'node:sea';
import { isMainThread } from 'node:worker_threads';
import { BUNDLE_ASSET, runBundled } from '../bundle.js';
// Modules that double as worker threads: a worker runs this same script, and these
// imports are what make it act as one (each checks its workerData).
import '../hash.js';
import '../walk.js';
import { main } from './main.js';
import { runCli } from './run.js';

if (isMainThread) {
  if (isSea()) runBundled(getAsset(BUNDLE_ASSET, 'utf8'), process.execPath);
  runCli(main, process.argv.slice(2));
}
