import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';

/** One import of a module: its specifier and, for ours, the repository-relative file it names. */
export interface Edge {
  from: string;
  specifier: string;
  /** Repository-relative path of the imported module, or null for a package or node builtin. */
  to: string | null;
}

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sources(p));
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/**
 * Every import specifier of every TypeScript file under `dirs` (relative to `root`):
 * static imports, re-exports, side-effect imports and dynamic `import()` with a literal,
 * as TypeScript's own pre-processor reads them. A relative specifier is resolved the way
 * NodeNext does it for our sources (`./x.js` → `x.ts`).
 */
export function importEdges(root: string, dirs: readonly string[]): Edge[] {
  const edges: Edge[] = [];
  for (const dir of dirs) {
    for (const file of sources(join(root, dir))) {
      const from = relative(root, file);
      const info = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
      for (const ref of info.importedFiles) {
        const s = ref.fileName;
        const to = s.startsWith('.') ? relative(root, resolve(dirname(file), s)).replace(/\.js$/, '.ts') : null;
        edges.push({ from, specifier: s, to });
      }
    }
  }
  return edges;
}

/** `import()` calls whose argument is not a string literal: their target cannot be checked. */
export function computedImports(root: string, dirs: readonly string[]): string[] {
  const out: string[] = [];
  for (const dir of dirs) {
    for (const file of sources(join(root, dir))) {
      const text = readFileSync(file, 'utf8');
      const re = /\bimport\(\s*(?!['"`][^'"`$]*['"`]\s*\))/g;
      for (let m = re.exec(text); m; m = re.exec(text)) {
        const line = text.slice(0, m.index).split('\n').length;
        out.push(`${relative(root, file)}:${line}`);
      }
    }
  }
  return out;
}

/** Edges that break a layering rule, each as `from → specifier (why)`. */
export function boundaryViolations(edges: readonly Edge[]): string[] {
  const out: string[] = [];
  for (const e of edges) {
    if (e.to === null) continue;
    if (e.from.startsWith('agent/') && !e.to.startsWith('agent/')) {
      out.push(`${e.from} → ${e.specifier} (the host side imports nothing outside agent/)`);
    } else if (e.from.startsWith('agent/protocol/') && !e.to.startsWith('agent/protocol/')) {
      out.push(`${e.from} → ${e.specifier} (agent/protocol imports nothing of ours outside itself)`);
    }
  }
  return out;
}

/** Every import cycle among our modules (strongly connected components of more than one module, or a self-import). */
export function importCycles(edges: readonly Edge[]): string[][] {
  const graph = new Map<string, string[]>();
  for (const e of edges) {
    if (e.to === null) continue;
    const list = graph.get(e.from) ?? [];
    list.push(e.to);
    graph.set(e.from, list);
    if (!graph.has(e.to)) graph.set(e.to, []);
  }
  // Tarjan's algorithm, iterative so that a deep chain cannot overflow the stack.
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const cycles: string[][] = [];
  let counter = 0;
  for (const start of [...graph.keys()].sort()) {
    if (index.has(start)) continue;
    const work: { node: string; next: number }[] = [{ node: start, next: 0 }];
    index.set(start, counter);
    low.set(start, counter++);
    stack.push(start);
    onStack.add(start);
    while (work.length > 0) {
      const top = work[work.length - 1] as { node: string; next: number };
      const succ = graph.get(top.node) ?? [];
      if (top.next < succ.length) {
        const w = succ[top.next++] as string;
        if (!index.has(w)) {
          index.set(w, counter);
          low.set(w, counter++);
          stack.push(w);
          onStack.add(w);
          work.push({ node: w, next: 0 });
        } else if (onStack.has(w)) {
          low.set(top.node, Math.min(low.get(top.node) as number, index.get(w) as number));
        }
        continue;
      }
      work.pop();
      const parent = work[work.length - 1];
      if (parent) low.set(parent.node, Math.min(low.get(parent.node) as number, low.get(top.node) as number));
      if (low.get(top.node) === index.get(top.node)) {
        const scc: string[] = [];
        for (;;) {
          const w = stack.pop() as string;
          onStack.delete(w);
          scc.push(w);
          if (w === top.node) break;
        }
        if (scc.length > 1 || succ.includes(top.node)) cycles.push(scc.sort());
      }
    }
  }
  return cycles;
}
