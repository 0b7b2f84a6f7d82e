/**
 * The one catalogue of error codes. Every error a user can meet says what went
 * wrong, where, and what to do; the code decides the HTTP status and exit code.
 */
export const ERRORS = {
  DRIFT_ERR_USAGE: { status: 400, exit: 2 },
  DRIFT_ERR_CONFIG: { status: 500, exit: 2 },
  DRIFT_ERR_RULES: { status: 400, exit: 2 },
  DRIFT_ERR_MANIFEST: { status: 400, exit: 2 },
  DRIFT_ERR_SIGNATURE: { status: 400, exit: 2 },
  DRIFT_ERR_IO: { status: 500, exit: 2 },
  DRIFT_ERR_UNAUTHORIZED: { status: 401, exit: 2 },
  DRIFT_ERR_FORBIDDEN: { status: 403, exit: 2 },
  DRIFT_ERR_NOT_FOUND: { status: 404, exit: 2 },
  DRIFT_ERR_CONFLICT: { status: 409, exit: 2 },
  DRIFT_ERR_TOO_LARGE: { status: 413, exit: 2 },
  DRIFT_ERR_RATE_LIMITED: { status: 429, exit: 2 },
  DRIFT_ERR_UNREACHABLE: { status: 502, exit: 2 },
} as const;

export type ErrorCode = keyof typeof ERRORS;

export class DriftError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'DriftError';
    this.code = code;
  }
  get status(): number { return ERRORS[this.code].status; }
  get exitCode(): number { return ERRORS[this.code].exit; }
}

/** The errno code of a Node.js system error (`ENOENT`, `EACCES`), else a short name. */
export function errnoOf(err: unknown): string {
  if (err && typeof err === 'object' && 'code' in err && typeof (err as { code: unknown }).code === 'string') {
    return (err as { code: string }).code;
  }
  return err instanceof Error ? err.message : String(err);
}
