import { GetCommandInvocationCommand, SendCommandCommand, SSMClient } from '@aws-sdk/client-ssm';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { DriftError } from '../protocol/errors.js';
import { parseVerdict, WHOLE_VERDICT_LIMITS, type Verdict } from '../cli/format/verdict.js';
import { visible } from '../cli/format/common.js';

/**
 * Agentless scans over AWS Systems Manager: `SendCommand` of `AWS-RunShellScript`
 * running the drift baked into the instance's image against its own baked baseline,
 * then `GetCommandInvocation` polled to completion. SSM hands back at most 24,000
 * characters of output, so the instance prints a compact verdict
 * (`drift scan --format verdict`), decoded here as hostile input.
 *
 * The commands are fixed: nothing from the target list, the instance or the operator
 * is interpolated into them. They read only: `drift scan --read-only` keeps no stat
 * cache and writes no first-boot pins on the instance.
 *
 * With an S3 output location (`--ssm-output-s3`), SSM writes the command's whole
 * output there; the instance then prints the whole verdict (report and manifest,
 * never cut), read back from S3 with a size bound and decoded as hostile input.
 */
export const SSM_DOCUMENT = 'AWS-RunShellScript';
export const SSM_BASELINE = '/etc/drift/baseline.json';
/** The exit status the script uses when drift is not on the instance's PATH (the shell's "not found"). */
const NO_DRIFT = 127;
const CHECK_DRIFT = `command -v drift >/dev/null 2>&1 || { echo "drift is not installed on this instance (no drift on PATH)" >&2; exit ${NO_DRIFT}; }`;
export const SSM_COMMANDS: readonly string[] = Object.freeze([
  CHECK_DRIFT,
  `exec drift scan --read-only --baseline ${SSM_BASELINE} --format verdict`,
]);
/** The commands when SSM writes the whole output to S3: the verdict is not cut to 24,000 characters. */
export const SSM_COMMANDS_WHOLE: readonly string[] = Object.freeze([
  CHECK_DRIFT,
  `exec drift scan --read-only --baseline ${SSM_BASELINE} --format verdict --whole-verdict`,
]);
/** Where the SSM agent uploads the standard output of AWS-RunShellScript's one step. */
export const SSM_S3_STDOUT = 'awsrunShellScript/0.awsrunShellScript/stdout';

/** An S3 location for SSM's output: `s3://BUCKET/PREFIX`. */
export interface S3Location {
  bucket: string;
  /** Without leading or trailing slashes; may be empty. */
  prefix: string;
}

const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const KEY_PREFIX = /^[A-Za-z0-9!_.*'()/-]{0,500}$/;

/** Parse `s3://BUCKET[/PREFIX]`; `where` names the option in errors. */
export function parseS3Location(text: string, where = '--ssm-output-s3'): S3Location {
  const m = /^s3:\/\/([^/]+)(?:\/(.*))?$/.exec(text);
  const bucket = m?.[1] ?? '';
  const prefix = (m?.[2] ?? '').replace(/^\/+|\/+$/g, '');
  if (!m || !BUCKET.test(bucket) || bucket.includes('..')) {
    throw new DriftError('DRIFT_ERR_USAGE', `${where}: ${visible(JSON.stringify(text.slice(0, 200)))} is not s3://BUCKET/PREFIX (a bucket name: 3-63 lowercase letters, digits, dots and hyphens)`);
  }
  if (!KEY_PREFIX.test(prefix) || prefix.split('/').some((p) => p === '' || p === '.' || p === '..')) {
    throw new DriftError('DRIFT_ERR_USAGE', `${where}: key prefix ${visible(JSON.stringify(prefix.slice(0, 200)))} must be at most 500 characters of letters, digits and !_.*'()/- with no empty, . or .. parts`);
  }
  return { bucket, prefix };
}

/** The key of a command's standard output under `loc`, as the SSM agent writes it. */
export function s3StdoutKey(loc: S3Location, commandId: string, instanceId: string): string {
  return [loc.prefix, commandId, instanceId, SSM_S3_STDOUT].filter((p) => p !== '').join('/');
}

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
  /** Have SSM write the whole output here, and read the whole verdict from it. */
  outputS3?: S3Location;
  /** Another S3 endpoint (a VPC endpoint, or a local server in tests): path-style requests. */
  s3Endpoint?: string;
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
export async function scanOverSsm(instanceId: string, opts: SsmScanOptions, client?: SSMClient, s3?: S3Client): Promise<SsmScan> {
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
      Parameters: { commands: [...(opts.outputS3 ? SSM_COMMANDS_WHOLE : SSM_COMMANDS)], executionTimeout: [String(Math.max(30, Math.ceil(opts.timeoutMs / 1000)))] },
      Comment: 'drift scan --ssm (read-only)',
      ...(opts.outputS3 ? { OutputS3BucketName: opts.outputS3.bucket, ...(opts.outputS3.prefix ? { OutputS3KeyPrefix: opts.outputS3.prefix } : {}) } : {}),
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
      if (opts.outputS3) {
        const key = s3StdoutKey(opts.outputS3, commandId, instanceId);
        const text = await readS3Output(s3 ?? newS3Client(opts), opts.outputS3.bucket, key, `${where}: s3://${opts.outputS3.bucket}/${key}`, left());
        return { instanceId, commandId, verdict: parseVerdict(text, `${where} (command ${commandId}, s3://${opts.outputS3.bucket}/${key})`, WHOLE_VERDICT_LIMITS) };
      }
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

/**
 * Read a command's output SSM wrote to S3 (hostile input): at most
 * WHOLE_VERDICT_LIMITS.maxChars bytes (the request asks for no more; a longer body is refused).
 */
async function readS3Output(s3: S3Client, bucket: string, key: string, where: string, timeoutMs: number): Promise<string> {
  const max = WHOLE_VERDICT_LIMITS.maxChars;
  const signal = AbortSignal.timeout(timeoutMs);
  let body;
  try {
    const r = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key, Range: `bytes=0-${max}` }), { abortSignal: signal });
    body = r.Body;
  } catch (err) {
    throw new DriftError('DRIFT_ERR_UNREACHABLE', `${where}: cannot read the command's output: ${awsMessage(err)}; check the bucket, its region and s3:GetObject on it`, { cause: err });
  }
  if (!body) throw new DriftError('DRIFT_ERR_UNREACHABLE', `${where}: S3 answered no body`);
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of body as AsyncIterable<Uint8Array>) {
      size += chunk.length;
      if (size > max) {
        (body as { destroy?: () => void }).destroy?.();
        throw new DriftError('DRIFT_ERR_TOO_LARGE', `${where}: the command's output is more than ${max} bytes; refused`);
      }
      chunks.push(Buffer.from(chunk));
    }
  } catch (err) {
    if (err instanceof DriftError) throw err;
    throw new DriftError('DRIFT_ERR_UNREACHABLE', `${where}: reading the command's output failed: ${awsMessage(err)}`, { cause: err });
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** The AWS SDK warns on every run that later releases will need a newer Node.js; only that warning is turned off, and only when the operator did not set it. */
function quietSdk(): void {
  process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';
}

function regionOf(opts: { region?: string }, what: string): string {
  const region = opts.region ?? process.env['AWS_REGION'] ?? process.env['AWS_DEFAULT_REGION'];
  if (!region) throw new DriftError('DRIFT_ERR_USAGE', `${what}: no AWS region: pass --region or set AWS_REGION`);
  return region;
}

/** An SSM client: region and credentials the SDK's usual way, `endpoint` when given. */
export function newSsmClient(opts: { region?: string; endpoint?: string }): SSMClient {
  const region = regionOf(opts, 'ssm');
  quietSdk();
  return new SSMClient({ region, ...(opts.endpoint ? { endpoint: opts.endpoint } : {}), maxAttempts: 3 });
}

/** An S3 client for SSM's output: the same region and credentials; `s3Endpoint` when given (path-style). */
export function newS3Client(opts: { region?: string; s3Endpoint?: string }): S3Client {
  const region = regionOf(opts, 'ssm');
  quietSdk();
  return new S3Client({ region, ...(opts.s3Endpoint ? { endpoint: opts.s3Endpoint, forcePathStyle: true } : {}), maxAttempts: 3 });
}
