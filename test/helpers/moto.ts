import { spawn, spawnSync } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';

/** True when moto's server is on PATH (test/setup.sh checks it and says what is missing). */
export function haveMoto(): boolean {
  return spawnSync('sh', ['-c', 'command -v moto_server'], { stdio: 'ignore' }).status === 0;
}

export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/**
 * moto's AWS emulator on a free port of 127.0.0.1, started for one test and stopped
 * after it. Ready when it prints its "Running on" line (the event, not a sleep).
 */
export async function startMoto(t: { teardown(fn: () => unknown): void }): Promise<{ endpoint: string }> {
  const port = await freePort();
  const child = spawn('moto_server', ['-H', '127.0.0.1', '-p', String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) { resolve(); return; }
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  }));
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`moto_server did not start within 30 s: ${out.slice(-500)}`)), 30_000);
    const on = (b: Buffer): void => {
      out += b.toString('utf8');
      if (out.includes(`Running on http://127.0.0.1:${port}`)) { clearTimeout(timer); resolve(); }
    };
    child.stdout.on('data', on);
    child.stderr.on('data', on);
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`moto_server exited ${code ?? '?'}: ${out.slice(-500)}`)); });
  });
  child.stdout.resume();
  child.stderr.resume();
  return { endpoint: `http://127.0.0.1:${port}` };
}

/** Credentials moto accepts; set for the SDK's default chain in the test process and its children. */
export const MOTO_ENV = { AWS_ACCESS_KEY_ID: 'testing', AWS_SECRET_ACCESS_KEY: 'testing', AWS_REGION: 'us-east-1', AWS_EC2_METADATA_DISABLED: 'true' };
