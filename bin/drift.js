#!/bin/sh
':' //; exec node --max-semi-space-size=2 "$0" "$@"
// The line above is read by the shell and skipped by node: started as a program (`npx drift`,
// `bin/drift.js`), /bin/sh (BusyBox's too, where `env -S` does not exist) re-executes this
// file with node and a capped young generation (2 MB semi-spaces): the files collector
// allocates many short-lived objects, and this keeps a full scan of /etc and /usr under
// 150 MB at the same speed. V8 reads the flag only when the heap is created, so setting it
// from JavaScript (v8.setFlagsFromString) comes too late. `node bin/drift.js` works too,
// with V8's default young generation.
//
// Thin launcher: the compiled CLI lives in dist/ (built by `npm install` through the prepare script).
import { runCli } from '../dist/agent/cli/run.js';
import { main } from '../dist/server/cli/main.js';

runCli(main, process.argv.slice(2));
