import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';

/**
 * A small SSM endpoint speaking the JSON 1.1 protocol for what moto lacks:
 * StartAutomationExecution and GetAutomationExecution. It checks each request's
 * target, content type, signature header and shape, keeps one execution per
 * ClientToken (a retried start gets the same execution, as SSM does), and moves
 * executions InProgress → Success, or → Failed for instance ids in `failFor`, after
 * `pollsToFinish` reads. `faults` answers the next requests with an error instead.
 */
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
  /** Called on each request (after it was counted): lets a test act at an exact moment. */
  onRequest?: ((target: string) => void) | undefined;
  close(): Promise<void>;
}

const PREFIX = 'AmazonSSM.';

export async function startSsmServer(): Promise<SsmServer> {
  const state: SsmServer = {
    endpoint: '', executions: new Map(), requests: [], malformed: [], faults: [], failFor: new Set(), pollsToFinish: 2,
    close: async () => {},
  };
  const byToken = new Map<string, string>();
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
        default:
          return bad(`unknown target ${target}`);
      }
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  state.endpoint = `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
  state.close = () => new Promise<void>((r) => { srv.closeAllConnections(); srv.close(() => r()); });
  return state;
}
