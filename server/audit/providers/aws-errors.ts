import { ProviderError } from './contract.js';

const THROTTLING = new Set(['Throttling', 'ThrottlingException', 'ThrottledException', 'RequestLimitExceeded', 'TooManyRequestsException', 'RequestThrottled']);

/**
 * An AWS SDK failure as a ProviderError: throttling, 5xx, timeouts and network
 * errors are retryable; a 4xx (validation, access denied, not found) is not.
 */
export function awsError(what: string, err: unknown): ProviderError {
  if (err instanceof ProviderError) return err;
  const e = err as { name?: string; message?: string; $metadata?: { httpStatusCode?: number }; code?: string };
  const status = e.$metadata?.httpStatusCode;
  const name = e.name ?? 'Error';
  const retryable = THROTTLING.has(name) || (status !== undefined && status >= 500) || status === undefined || name === 'TimeoutError';
  const where = status !== undefined ? `${status} ${name}` : `${name}${e.code ? ` (${e.code})` : ''}`;
  return new ProviderError(`${what} failed: ${where}: ${(e.message ?? String(err)).split('\n')[0]}`, { retryable, cause: err });
}
