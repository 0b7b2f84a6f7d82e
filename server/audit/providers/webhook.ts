import { createHmac } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { ProviderConfig } from '../config.js';
import { actionPayload, ProviderError, type Provider, type ReplaceContext } from './contract.js';

type WebhookConfig = Extract<ProviderConfig, { kind: 'webhook' }>;

/** `X-Drift-Signature: sha256=<hex>` over `<timestamp>.<body>`; the receiver checks it and refuses stale or replayed timestamps. */
export function signWebhook(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

/**
 * POSTs the action as JSON, signed with HMAC-SHA256 over timestamp + body
 * (`X-Drift-Timestamp`, `X-Drift-Signature`), with `X-Drift-Action-Id` as the
 * receiver's idempotency key. 2xx = accepted; 408, 429 and 5xx and network errors are
 * retryable; any other 4xx fails at once. Each attempt signs afresh.
 */
export class WebhookProvider implements Provider {
  readonly name = 'webhook';
  readonly requiresInstanceId = false;
  constructor(private readonly cfg: WebhookConfig, private readonly secret: string) {}

  async replace(ctx: ReplaceContext): Promise<{ note: string }> {
    await ctx.checkCancelled();
    const body = JSON.stringify(actionPayload(ctx.action));
    const ts = String(Math.floor(ctx.now() / 1000));
    const url = new URL(this.cfg.url);
    const headers = {
      'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)),
      'x-drift-timestamp': ts, 'x-drift-signature': signWebhook(this.secret, ts, body), 'x-drift-action-id': ctx.action.id,
    };
    const status = await new Promise<number>((resolve, reject) => {
      const req = (url.protocol === 'https:' ? httpsRequest : httpRequest)(url, { method: 'POST', headers, timeout: this.cfg.timeout });
      req.on('timeout', () => req.destroy(new Error(`no answer within ${this.cfg.timeout} ms`)));
      req.on('error', reject);
      req.on('response', (res) => { res.resume(); res.on('end', () => resolve(res.statusCode ?? 0)); res.on('error', reject); });
      req.end(body);
    }).catch((err: Error) => { throw new ProviderError(`webhook ${url.origin}${url.pathname}: ${err.message}`, { retryable: true, cause: err }); });
    if (status >= 200 && status < 300) return { note: `webhook ${url.origin}${url.pathname} accepted (${status})` };
    const retryable = status === 408 || status === 429 || status >= 500;
    throw new ProviderError(`webhook ${url.origin}${url.pathname} answered ${status}`, { retryable });
  }
}
