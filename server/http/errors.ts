import { DriftError, ERRORS, type ErrorCode } from '../../agent/protocol/errors.js';

/**
 * An error the API answers with: a catalogue code (agent/protocol/errors.ts) and the
 * HTTP status of this answer. The status is usually the catalogue's; the wire API
 * answers 422 for a request that parsed but cannot be accepted (a manifest that
 * fails its schema or its digests, a wrong image, a bad baseline signature), which
 * the catalogue has no code of its own for.
 */
export class HttpError extends DriftError {
  readonly httpStatus: number;
  constructor(code: ErrorCode, message: string, httpStatus: number = ERRORS[code].status, options?: { cause?: unknown }) {
    super(code, message, options);
    this.httpStatus = httpStatus;
  }
}

/** The JSON body of every error answer. */
export interface ErrorBody {
  error: { code: string; message: string };
}

export function errorBody(code: string, message: string): ErrorBody {
  return { error: { code, message } };
}
