import { spawn } from 'node:child_process';
import type { ProviderConfig } from '../config.js';
import { actionPayload, ProviderError, type Provider, type ReplaceContext } from './contract.js';

type CommandConfig = Extract<ProviderConfig, { kind: 'command' }>;

/** Output kept from the command for the ledger's reason (its tail). */
const KEEP = 4096;

/**
 * Runs a configured argv (no shell) with the action as JSON on stdin and DRIFT_*
 * variables: for Terraform, Nomad, kubectl or anything else. Exit 0 = replaced.
 * A timeout kills the process group and counts as retryable; another exit code is
 * a failure with the tail of stderr. The command gets DRIFT_ACTION_ID and should use
 * it as its own idempotency key: after a crash it may run again for the same action.
 */
export class CommandProvider implements Provider {
  readonly name = 'command';
  readonly requiresInstanceId = false;
  constructor(private readonly cfg: CommandConfig) {}

  async replace(ctx: ReplaceContext): Promise<{ note: string }> {
    const a = ctx.action;
    const [cmd, ...args] = this.cfg.argv as [string, ...string[]];
    const env: NodeJS.ProcessEnv = {
      PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...this.cfg.env,
      DRIFT_ACTION_ID: a.id, DRIFT_HOST_ID: a.hostId, DRIFT_HOSTNAME: a.hostname, DRIFT_INSTANCE_ID: a.instanceId ?? '',
      DRIFT_COHORT: a.cohort, DRIFT_REASON: a.reason, DRIFT_ATTEMPT: String(a.attempts),
    };
    await ctx.checkCancelled();
    const r = await new Promise<{ code: number | null; signal: string | null; err: string; timedOut: boolean; spawnError?: Error }>((resolve) => {
      const child = spawn(cmd, args, { env, stdio: ['pipe', 'ignore', 'pipe'], detached: true });
      let err = '';
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        try { process.kill(-(child.pid as number), 'SIGKILL'); } catch { child.kill('SIGKILL'); }
      }, this.cfg.timeout);
      child.stderr.on('data', (b: Buffer) => { err = (err + b.toString('utf8')).slice(-KEEP); });
      child.stdin.on('error', () => { /* the command need not read its stdin */ });
      child.stdin.end(JSON.stringify(actionPayload(a)));
      child.on('error', (e) => { clearTimeout(timer); resolve({ code: null, signal: null, err, timedOut, spawnError: e }); });
      child.on('close', (code, signal) => { clearTimeout(timer); resolve({ code, signal, err, timedOut }); });
    });
    if (r.spawnError) throw new ProviderError(`command ${cmd} could not start: ${r.spawnError.message}; check provider.argv in the audit config`);
    if (r.timedOut) throw new ProviderError(`command ${cmd} timed out after ${this.cfg.timeout} ms and was killed`, { retryable: true });
    if (r.code !== 0) {
      const tail = r.err.trim().split('\n').slice(-3).join(' | ');
      throw new ProviderError(`command ${cmd} exited ${r.code ?? `on ${r.signal ?? 'a signal'}`}${tail ? `: ${tail}` : ''}`, { retryable: r.code === 75 });
    }
    return { note: `command ${cmd} exited 0` };
  }
}
