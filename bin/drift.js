#!/usr/bin/env -S node --max-semi-space-size=2
// Thin launcher: the compiled CLI lives in dist/ (built by `npm install` through the prepare script).
// The shebang caps V8's young generation (2 MB semi-spaces): the files collector allocates many
// short-lived objects, and this keeps a full scan of /etc and /usr under 150 MB at the same speed.
import { main } from '../dist/server/cli/main.js';

// A reader that went away (`drift scan | head`) is not an error worth a stack trace.
process.stdout.on('error', (err) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err) => {
    process.stderr.write(`drift: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 2;
  },
);
