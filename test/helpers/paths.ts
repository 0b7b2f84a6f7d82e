import { fileURLToPath } from 'node:url';
import { dirname, join, resolve } from 'node:path';

/** The repository root (tests run from dist/test/..., fixtures stay in test/fixtures). */
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const fixtures = (...parts: string[]): string => join(repoRoot, 'test', 'fixtures', ...parts);
/** The CLI launcher, for tests that run `drift` as a user would. */
export const driftBin = join(repoRoot, 'bin', 'drift.js');
