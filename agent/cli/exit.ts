/**
 * The exit code a command handler sets. Kept apart from the entry point so that
 * command modules never import the module that loads them.
 */
let code = 0;

/** Set the process exit code from inside a command handler. */
export function exit(c: number): void { code = c; }

/** Read the code a handler set, and reset it for the next run in this process. */
export function takeExitCode(): number {
  const c = code;
  code = 0;
  return c;
}
