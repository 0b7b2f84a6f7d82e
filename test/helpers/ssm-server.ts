import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { spawn } from 'node:child_process';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { driftBin } from './paths.js';
import { startMoto } from './moto.js';

/**
 * A small SSM endpoint speaking the JSON 1.1 protocol for what moto lacks:
 * StartAutomationExecution and GetAutomationExecution. It checks each request's
 * target, content type, signature header and shape, keeps one execution per
 * ClientToken (a retried start gets the same execution, as SSM does), and moves
 * executions InProgress → Success, or → Failed for instance ids in `failFor`, after
 * `pollsToFinish` reads. `faults` answers the next requests with an error instead.
 *
 * Run Command: SendCommand (only `AWS-RunShellScript`, one instance id that is in
 * `instances`, `Parameters.commands` a list of strings) really runs the received
 * commands with `sh -c`, with that instance's PATH, and GetCommandInvocation answers
 * InProgress until the shell ended, then Success or Failed with its exit code and its
 * output cut to 24,000 characters (stdout) and 8,000 (stderr), as SSM does. With
 * `OutputS3BucketName` (and `OutputS3KeyPrefix`), the whole output is uploaded with the
 * real S3 client to `s3Endpoint` (moto) under
 * `PREFIX/COMMAND-ID/INSTANCE-ID/awsrunShellScript/0.awsrunShellScript/stdout` (and
 * `stderr` when there is any), as the SSM agent does, before the invocation ends.
 */
export interface SsmCommand {
  id: string;
  instanceId: string;
  document: string;
  commands: string[];
  parameters: Record<string, string[]>;
  status: 'InProgress' | 'Success' | 'Failed';
  code: number;
  stdout: string;
  stderr: string;
  /** Characters of stdout before SSM's cut. */
  fullStdout: number;
  /** SendCommand's OutputS3BucketName and OutputS3KeyPrefix, when given. */
  outputS3?: { bucket: string; prefix: string | null };
  /** The keys the output was uploaded to, or why the upload failed. */
  s3Keys: string[];
  s3Error?: string;
}

/** An instance the server can run commands on: the PATH its shell gets. */
export interface SsmInstance {
  path: string;
}

/** SSM's cut of a command's standard output and error in GetCommandInvocation. */
export const SSM_STDOUT_MAX = 24_000;
export const SSM_STDERR_MAX = 8_000;

/**
 * A `drift` for an instance whose "/" is `root`: the built drift with `--root root`, and
 * the baked baseline and trust folder read from under `root` (paths under /etc/drift
 * are taken below the root). Writes `dir/drift`; put `dir` first on the instance's PATH.
 */
export async function instanceDrift(dir: string, root: string, stateDir: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
  const script = `#!/bin/sh
# drift on an instance whose / is ${root}
for a; do shift; case "$a" in /etc/drift/*) set -- "$@" ${q(root)}"$a";; *) set -- "$@" "$a";; esac; done
exec ${q(process.execPath)} ${q(driftBin)} "$@" --root ${q(root)} --state-dir ${q(stateDir)} --trust-dir ${q(join(root, 'etc/drift/keys'))}
`;
  await writeFile(join(dir, 'drift'), script);
  await chmod(join(dir, 'drift'), 0o755);
  return dir;
}
export interface SsmExecution {
  id: string;
  token: string;
  document: string;
  parameters: Record<string, string[]>;
  polls: number;
  status: 'InProgress' | 'Success' | 'Failed';
}

export type SsmFault = 'throttle' | '500' | 'validation';

export interface SsmServer {
  endpoint: string;
  executions: Map<string, SsmExecution>;
  /** Every request: its target and whether it was well formed. */
  requests: { target: string; ok: boolean }[];
  /** Requests answered with an error that a client got wrong (bad target, shape or headers). */
  malformed: string[];
  faults: SsmFault[];
  failFor: Set<string>;
  pollsToFinish: number;
  /** Run Command: the instances commands can run on, and every command sent. */
  instances: Map<string, SsmInstance>;
  commands: Map<string, SsmCommand>;
  /** The S3 endpoint (moto) output is uploaded to when a command asks for it. */
  s3Endpoint?: string | undefined;
  /** Called on each request (after it was counted): lets a test act at an exact moment. */
  onRequest?: ((target: string) => void) | undefined;
  close(): Promise<void>;
}

const PREFIX = 'AmazonSSM.';

/** A path-style S3 client of moto's endpoint with moto's credentials. */
export function motoS3(endpoint: string): S3Client {
  return new S3Client({ region: 'us-east-1', endpoint, forcePathStyle: true, credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' } });
}

/**
 * S3 for SSM's command output, for one test: moto started (and stopped after), `bucket`
 * created in it, and `ssm` uploading there until the test ends.
 */
export async function startS3Output(t: { teardown(fn: () => unknown): void }, ssm: SsmServer, bucket: string): Promise<{ endpoint: string; s3: S3Client }> {
  const { endpoint } = await startMoto(t);
  const s3 = motoS3(endpoint);
  t.teardown(() => s3.destroy());
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  ssm.s3Endpoint = endpoint;
  t.teardown(() => { ssm.s3Endpoint = undefined; });
  return { endpoint, s3 };
}

/** Upload each [key, text] to `bucket` as the SSM agent does (moto's endpoint, path-style). */
async function uploadOutput(endpoint: string | undefined, bucket: string, files: ReadonlyArray<readonly [string, string]>): Promise<string[]> {
  if (!endpoint) throw new Error('the SSM server has no s3Endpoint to upload output to');
  const s3 = motoS3(endpoint);
  try {
    for (const [key, text] of files) await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: text }));
    return files.map(([key]) => key);
  } finally {
    s3.destroy();
  }
}

export async function startSsmServer(): Promise<SsmServer> {
  const state: SsmServer = {
    endpoint: '', executions: new Map(), requests: [], malformed: [], faults: [], failFor: new Set(), pollsToFinish: 2,
    instances: new Map(), commands: new Map(),
    close: async () => {},
  };
  const byToken = new Map<string, string>();
  const running = new Set<ReturnType<typeof spawn>>();
  const send = (res: ServerResponse, status: number, body: unknown): void => {
    res.writeHead(status, { 'content-type': 'application/x-amz-json-1.1' }).end(JSON.stringify(body));
  };
  const error = (res: ServerResponse, status: number, type: string, message: string): void => send(res, status, { __type: type, message });
  const srv = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => { size += c.length; if (size < 1024 * 1024) chunks.push(c); });
    req.on('end', () => {
      const target = String(req.headers['x-amz-target'] ?? '');
      const bad = (why: string): void => { state.malformed.push(why); state.requests.push({ target, ok: false }); error(res, 400, 'ValidationException', why); };
      if (req.method !== 'POST' || req.url !== '/') return bad(`${req.method ?? '?'} ${req.url ?? '?'}: SSM takes POST /`);
      if (req.headers['content-type'] !== 'application/x-amz-json-1.1') return bad(`content-type ${String(req.headers['content-type'])}`);
      if (!String(req.headers['authorization'] ?? '').startsWith('AWS4-HMAC-SHA256 Credential=')) return bad('request not signed with SigV4');
      if (!target.startsWith(PREFIX)) return bad(`target ${target}`);
      let body: Record<string, unknown>;
      try { body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>; } catch { return bad('body is not JSON'); }
      state.requests.push({ target, ok: true });
      state.onRequest?.(target);
      const fault = state.faults.shift();
      if (fault === 'throttle') return error(res, 400, 'ThrottlingException', 'Rate exceeded');
      if (fault === '500') return error(res, 500, 'InternalServerError', 'internal failure');
      if (fault === 'validation') return error(res, 400, 'ValidationException', 'injected validation failure');
      switch (target.slice(PREFIX.length)) {
        case 'StartAutomationExecution': {
          const { DocumentName: doc, Parameters: params, ClientToken: token } = body;
          if (typeof doc !== 'string' || !/^[a-zA-Z0-9_.-]{3,128}$/.test(doc)) return bad('DocumentName');
          if (typeof token !== 'string' || token.length < 1 || token.length > 64) return bad('ClientToken');
          if (params === null || typeof params !== 'object' || Object.values(params).some((v) => !Array.isArray(v) || v.some((x) => typeof x !== 'string'))) return bad('Parameters');
          if (doc === 'No-Such-Document') return error(res, 400, 'AutomationDefinitionNotFoundException', `document ${doc} not found`);
          const known = byToken.get(token);
          if (known) return send(res, 200, { AutomationExecutionId: known });
          const id = randomUUID();
          byToken.set(token, id);
          state.executions.set(id, { id, token, document: doc, parameters: params as Record<string, string[]>, polls: 0, status: 'InProgress' });
          return send(res, 200, { AutomationExecutionId: id });
        }
        case 'GetAutomationExecution': {
          const id = body['AutomationExecutionId'];
          const ex = typeof id === 'string' ? state.executions.get(id) : undefined;
          if (!ex) return error(res, 400, 'AutomationExecutionNotFoundException', `no execution ${String(id)}`);
          ex.polls++;
          if (ex.status === 'InProgress' && ex.polls >= state.pollsToFinish) {
            ex.status = (ex.parameters['InstanceId'] ?? []).some((i) => state.failFor.has(i)) ? 'Failed' : 'Success';
          }
          return send(res, 200, {
            AutomationExecution: {
              AutomationExecutionId: ex.id, DocumentName: ex.document, AutomationExecutionStatus: ex.status, Parameters: ex.parameters,
              ...(ex.status === 'Failed' ? { FailureMessage: 'Step fails when it is terminating the instance: UnauthorizedOperation' } : {}),
            },
          });
        }
        case 'SendCommand': {
          const { DocumentName: doc, InstanceIds: ids, Parameters: params } = body;
          if (doc !== 'AWS-RunShellScript') return bad(`DocumentName ${String(doc)}: drift sends AWS-RunShellScript`);
          if (!Array.isArray(ids) || ids.length !== 1 || typeof ids[0] !== 'string') return bad('InstanceIds: one instance id expected');
          if (params === null || typeof params !== 'object') return bad('Parameters');
          const p = params as Record<string, unknown>;
          const commands = p['commands'];
          if (!Array.isArray(commands) || commands.length === 0 || commands.some((c) => typeof c !== 'string')) return bad('Parameters.commands: a list of strings expected');
          if (Object.values(p).some((v) => !Array.isArray(v) || v.some((x) => typeof x !== 'string'))) return bad('Parameters: every value a list of strings');
          const instanceId = ids[0] as string;
          const inst = state.instances.get(instanceId);
          if (!inst) return error(res, 400, 'InvalidInstanceId', `Instances [[${instanceId}]] not in a valid state for account 123456789012`);
          const id = randomUUID();
          const bucket = body['OutputS3BucketName'];
          const prefix = body['OutputS3KeyPrefix'];
          if (bucket !== undefined && (typeof bucket !== 'string' || !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket))) return bad(`OutputS3BucketName ${String(bucket)}`);
          if (prefix !== undefined && (typeof prefix !== 'string' || prefix.length > 500)) return bad('OutputS3KeyPrefix');
          const cmd: SsmCommand = { id, instanceId, document: doc, commands: commands as string[], parameters: p as Record<string, string[]>, status: 'InProgress', code: -1, stdout: '', stderr: '', fullStdout: 0, s3Keys: [] };
          if (typeof bucket === 'string') cmd.outputS3 = { bucket, prefix: typeof prefix === 'string' ? prefix : null };
          state.commands.set(id, cmd);
          const child = spawn('sh', ['-c', cmd.commands.join('\n')], { env: { PATH: inst.path, HOME: '/root', NO_COLOR: '1', LANG: 'C.UTF-8' }, stdio: ['ignore', 'pipe', 'pipe'] });
          running.add(child);
          const out: Buffer[] = [];
          const err: Buffer[] = [];
          child.stdout.on('data', (b: Buffer) => out.push(b));
          child.stderr.on('data', (b: Buffer) => err.push(b));
          child.on('close', (code) => {
            running.delete(child);
            const o = Buffer.concat(out).toString('utf8');
            const e = Buffer.concat(err).toString('utf8');
            cmd.fullStdout = o.length;
            cmd.stdout = o.slice(0, SSM_STDOUT_MAX);
            cmd.stderr = e.slice(0, SSM_STDERR_MAX);
            const finish = (): void => {
              cmd.code = code ?? 255;
              cmd.status = cmd.code === 0 ? 'Success' : 'Failed';
            };
            if (typeof bucket !== 'string') return finish();
            const base = [typeof prefix === 'string' ? prefix : '', id, instanceId, 'awsrunShellScript', '0.awsrunShellScript'].filter((x) => x !== '').join('/');
            const uploads = [['stdout', o], ...(e ? [['stderr', e]] : [])] as const;
            void uploadOutput(state.s3Endpoint, bucket, uploads.map(([name, text]) => [`${base}/${name}`, text] as const))
              .then((keys) => { cmd.s3Keys = keys; }, (why: unknown) => { cmd.s3Error = String(why); })
              .finally(finish);
          });
          return send(res, 200, { Command: { CommandId: id, DocumentName: doc, InstanceIds: [instanceId], Parameters: p, Status: 'Pending' } });
        }
        case 'GetCommandInvocation': {
          const cmd = typeof body['CommandId'] === 'string' ? state.commands.get(body['CommandId']) : undefined;
          if (!cmd || body['InstanceId'] !== cmd.instanceId) return error(res, 400, 'InvocationDoesNotExist', 'no such invocation');
          return send(res, 200, {
            CommandId: cmd.id, InstanceId: cmd.instanceId, DocumentName: cmd.document, PluginName: 'aws:runShellScript',
            Status: cmd.status, StatusDetails: cmd.status, ResponseCode: cmd.code,
            StandardOutputContent: cmd.stdout, StandardErrorContent: cmd.stderr,
          });
        }
        default:
          return bad(`unknown target ${target}`);
      }
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  state.endpoint = `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
  state.close = () => new Promise<void>((r) => {
    // Commands still running (an instance that never answers) end with the server.
    for (const child of running) child.kill('SIGKILL');
    srv.closeAllConnections();
    srv.close(() => r());
  });
  return state;
}
