/**
 * Entry of the single executable's worker threads (`npm run package` bundles it apart from
 * the CLI and embeds it as WORKER_ASSET). Each module imported here acts as a worker when
 * its `workerData` says so; under an npm install a worker starts its own module file instead.
 */
import './hash.js';
import './walk.js';
