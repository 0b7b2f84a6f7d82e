import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { driftBin, repoRoot } from '../../helpers/paths.js';

// The shipped units start /usr/bin/drift, which a checkout does not install: verify
// copies whose ExecStart runs this checkout's bin/drift.js with this node.
const analyze = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
const skip = analyze.error ? `systemd-analyze is not installed (${analyze.error.message}); apt-get install systemd` : false;

function verify(units: Record<string, string>): { status: number | null; output: string } {
  const dir = mkdtempSync(join(tmpdir(), 'drift-units-'));
  try {
    const files = Object.entries(units).map(([name, text]) => {
      writeFileSync(join(dir, name), text);
      return join(dir, name);
    });
    const r = spawnSync('systemd-analyze', ['verify', ...files], { encoding: 'utf8' });
    return { status: r.status, output: `${r.stdout}${r.stderr}` };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function local(unit: string): string {
  const text = readFileSync(join(repoRoot, 'systemd', unit), 'utf8');
  const rewritten = text.replace(/^ExecStart=\/usr\/bin\/drift /m, `ExecStart=${process.execPath} ${driftBin} `);
  if (rewritten === text) throw new Error(`systemd/${unit} has no ExecStart=/usr/bin/drift line to rewrite`);
  return rewritten;
}

t.test('systemd-analyze verify accepts drift-server.service and drift-agent.service', { skip }, async (t) => {
  const units = { 'drift-server.service': local('drift-server.service'), 'drift-agent.service': local('drift-agent.service') };
  t.match(units['drift-server.service'], `ExecStart=${process.execPath} ${driftBin} server `);
  t.match(units['drift-agent.service'], `ExecStart=${process.execPath} ${driftBin} agent `);
  const r = verify(units);
  t.equal(r.status, 0, r.output);
  t.equal(r.output.trim(), '', 'no warnings');
  // The check can fail: the same unit with a missing executable is refused.
  const broken = verify({ 'drift-server.service': units['drift-server.service'].replace(`${process.execPath} `, '/nonexistent/node ') });
  t.not(broken.status, 0, 'a unit whose ExecStart binary is missing fails verify');
  t.match(broken.output, /nonexistent/);
});

t.test('systemd-analyze verify accepts drift-audit.service, hardened like the others', { skip }, async (t) => {
  const unit = local('drift-audit.service');
  t.match(unit, `ExecStart=${process.execPath} ${driftBin} audit --config /etc/drift/audit.yaml`);
  for (const line of ['DynamicUser=yes', 'NoNewPrivileges=yes', 'ProtectSystem=strict', 'CapabilityBoundingSet=', 'StateDirectory=drift-audit']) {
    t.match(unit, new RegExp(`^${line}$`, 'm'), line);
  }
  const r = verify({ 'drift-audit.service': unit });
  t.equal(r.status, 0, r.output);
  t.equal(r.output.trim(), '', 'no warnings');
});
