import { GetCommandInvocationCommand, SendCommandCommand, SSMClient } from '@aws-sdk/client-ssm';
import { DriftError } from '../protocol/errors.js';
import { parseVerdict, type Verdict } from '../cli/format/verdict.js';
import { visible } from '../cli/format/common.js';

/**
 * Agentless scans over AWS Systems Manager: `SendCommand` of `AWS-RunShellScript`
 * running the drift baked into the instance's image against its own baked baseline,
 * then `GetCommandInvocation` polled to completion. SSM hands back at most 24,000
 * characters of output, so the instance prints a compact verdict
 * (`drift scan --format verdict`), decoded here as hostile input.
 *
 * The commands are fixed: nothing from the target list, the instance or the operator
 * is interpolated into them. They read only (the scan keeps its stat cache and
 * first-boot pins in the instance's own state folder, as its agent does).
 */
export const SSM_DOCUMENT = 'AWS-RunShellScript';
export const SSM_BASELINE = '/etc/drift/baseline.json';
/** The exit status the script uses when drift is not on the instance's PATH (the shell's "not found"). */
const NO_DRIFT = 127;
export const SSM_COMMANDS: readonly string[] = Object.freeze([
  `command -v drift >/dev/null 2>&1 || { echo "drift is not installed on this instance (no drift on PATH)" >&2; exit ${NO_DRIFT}; }`,
  `exec drift scan --baseline ${SSM_BASELINE} --format verdict`,
]);

const INSTANCE_ID = /^(?:i-[0-9a-f]{8}(?:[0-9a-f]{9})?|mi-[0-9a-f]{17})$/;

/** Check an EC2 (`i-…`) or managed (`mi-…`) instance id; `where` names its source in the error. */
export function parseInstanceId(text: string, where = 'ssm'): string {
  if (!INSTANCE_ID.test(text)) {
    throw new DriftError('DRIFT_ERR_USAGE', `${where}: ${JSON.stringify(text.slice(0, 100))} is not an instance id (i- and 8 or 17 hex digits, or mi- and 17)`);
  }
  return text;
}

export interface SsmScanOptions {
  region?: string;
  /** Another SSM endpoint (a VPC endpoint, or a local server in tests). */
  endpoint?: string;
  /** The whole scan: sending, running and polling. */
  timeoutMs: number;
  /** First poll interval; doubles up to 5 s. */
  pollMs?: number;
}

export interface SsmScan {
  instanceId: string;
  commandId: string;
  verdict: Verdict;
}

const DONE = new Set(['Success', 'Failed', 'Cancelled', 'TimedOut']);

function awsMessage(err: unknown): string {
  const e = err as { name?: string; message?: string; $metadata?: { httpStatusCode?: number } };
  const status = e.$metadata?.httpStatusCode;
  return visible(`${e.name ?? 'Error'}${status ? ` (HTTP ${status})` : ''}: ${(e.message ?? String(err)).slice(0, 300)}`);
}

/** Run the baked drift on one instance through SSM and return its verdict. */
export async function scanOverSsm(instanceId: string, opts: SsmScanOptions, client?: SSMClient): Promise<SsmScan> {
  parseInstanceId(instanceId);
  const started = Date.now();
  const deadline = started + opts.timeoutMs;
  const left = (): number => Math.max(1, deadline - Date.now());
  const ssm = client ?? newSsmClient(opts);
  const where = `ssm ${instanceId}`;
  let commandId: string;
  try {
    const r = await ssm.send(new SendCommandCommand({
      DocumentName: SSM_DOCUMENT,
      InstanceIds: [instanceId],
      Parameters: { commands: [...SSM_COMMANDS], executionTimeout: [String(Math.max(30, Math.ceil(opts.timeoutMs / 1000)))] },
      Comment: 'drift scan --ssm (read-only)',
    }), { abortSignal: AbortSignal.timeout(left()) });
    if (!r.Command?.CommandId) throw new DriftError('DRIFT_ERR_UNREACHABLE', `${where}: SendCommand answered no CommandId`);
    commandId = r.Command.CommandId;
  } catch (err) {
    if (err instanceof DriftError) throw err;
    throw new DriftError('DRIFT_ERR_UNREACHABLE', `${where}: SendCommand ${SSM_DOCUMENT} failed: ${awsMessage(err)}; check the instance id, --region and that the instance is managed by SSM`, { cause: err });
  }
  let wait = opts.pollMs ?? 500;
  // Bounded: every turn waits at least pollMs and the deadline ends the loop.
  for (let turn = 0; ; turn++) {
    if (Date.now() >= deadline) {
      throw new DriftError('DRIFT_ERR_UNREACHABLE', `${where}: no result within ${opts.timeoutMs} ms (command ${commandId} may still run; see aws ssm list-command-invocations); raise --timeout`);
    }
    if (turn > 0) {
      await new Promise((r) => setTimeout(r, Math.min(wait, left())));
      wait = Math.min(wait * 2, 5000);
    }
    let inv;
    try {
      inv = await ssm.send(new GetCommandInvocationCommand({ CommandId: commandId, InstanceId: instanceId }), { abortSignal: AbortSignal.timeout(left()) });
    } catch (err) {
      // SSM takes a moment to register the invocation after SendCommand.
      if ((err as { name?: string }).name === 'InvocationDoesNotExist') continue;
      if ((err as { name?: string }).name === 'AbortError' || (err as { name?: string }).name === 'TimeoutError') continue;
      throw new DriftError('DRIFT_ERR_UNREACHABLE', `${where}: GetCommandInvocation of command ${commandId} failed: ${awsMessage(err)}`, { cause: err });
    }
    const status = inv.Status ?? 'Pending';
    if (!DONE.has(status)) continue;
    const stdout = inv.StandardOutputContent ?? '';
    const stderr = (inv.StandardErrorContent ?? '').trim();
    const code = inv.ResponseCode ?? -1;
    if (stdout.includes('drift.verdict/v1 ') && (code === 0 || code === 1)) {
      return { instanceId, commandId, verdict: parseVerdict(stdout, `${where} (command ${commandId})`) };
    }
    const said = stderr ? `: ${visible(stderr.slice(-500))}` : '';
    if (code === NO_DRIFT) {
      throw new DriftError('DRIFT_ERR_NOT_FOUND', `${where}: drift is not installed on the instance (no drift on its PATH)${said}; an SSM scan runs the drift baked into the image: install the drift-agent package and bake ${SSM_BASELINE} with drift baseline --out ${SSM_BASELINE} --stamp`);
    }
    if (stderr.includes(SSM_BASELINE)) {
      throw new DriftError('DRIFT_ERR_NOT_FOUND', `${where}: drift is installed but cannot use the baked baseline ${SSM_BASELINE}${said}; bake it into the image with drift baseline --out ${SSM_BASELINE} --stamp`);
    }
    throw new DriftError('DRIFT_ERR_UNREACHABLE', `${where}: command ${commandId} ended ${visible(status)} (exit ${code})${said || ' with no verdict on its output'}`);
  }
}

/** An SSM client: region and credentials the SDK's usual way, `endpoint` when given. */
export function newSsmClient(opts: { region?: string; endpoint?: string }): SSMClient {
  const region = opts.region ?? process.env['AWS_REGION'] ?? process.env['AWS_DEFAULT_REGION'];
  if (!region) throw new DriftError('DRIFT_ERR_USAGE', 'ssm: no AWS region: pass --region or set AWS_REGION');
  return new SSMClient({ region, ...(opts.endpoint ? { endpoint: opts.endpoint } : {}), maxAttempts: 3 });
}
