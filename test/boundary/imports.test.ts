import t from 'tap';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { boundaryViolations, computedImports, importCycles, importEdges } from '../helpers/imports.js';
import { repoRoot } from '../helpers/paths.js';

const OURS = ['agent', 'server', 'tools'];

t.test('nothing under agent/ imports server/, agent/protocol imports only itself', async (t) => {
  const edges = importEdges(repoRoot, OURS);
  t.ok(edges.some((e) => e.from === 'server/cli/main.ts' && e.to === 'agent/cli/main.ts'), 'the scan sees our imports');
  t.ok(edges.some((e) => e.from === 'agent/cli/main.ts' && e.specifier === './commands/scan.js'), 'the scan sees dynamic imports');
  t.same(boundaryViolations(edges), []);
});

t.test('every dynamic import names its module literally (so the boundary can be checked)', async (t) => {
  t.same(computedImports(repoRoot, OURS), []);
});

t.test('no import cycles among our modules', async (t) => {
  t.same(importCycles(importEdges(repoRoot, OURS)), []);
});

t.test('the checks fail on a tree that breaks the rules', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'drift-imports-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const files: Record<string, string> = {
    'agent/cli/a.ts': "import { b } from './b.js';\nexport const a = 1;\nconst x = 'server';\nvoid import(`../../${x}/store.js`);\n",
    'agent/cli/b.ts': "export async function b() { return import('./a.js'); }\n",
    'agent/protocol/p.ts': "import { z } from 'zod';\nexport type { Q } from '../cli/b.js';\n",
    'agent/daemon.ts': "const s = await import('../server/store/store.js');\n",
    'server/store/store.ts': "import '../../agent/protocol/p.js';\n",
  };
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  const edges = importEdges(root, ['agent', 'server']);
  t.same(boundaryViolations(edges).sort(), [
    'agent/daemon.ts → ../server/store/store.js (the host side imports nothing outside agent/)',
    'agent/protocol/p.ts → ../cli/b.js (agent/protocol imports nothing of ours outside itself)',
  ]);
  t.same(importCycles(edges), [['agent/cli/a.ts', 'agent/cli/b.ts']]);
  t.same(computedImports(root, ['agent']), ['agent/cli/a.ts:4']);
});
