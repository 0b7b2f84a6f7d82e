import { z } from 'zod';
import { ManifestSchema } from '../../agent/protocol/manifest.js';
import { MAX_PIN_PATH, MAX_PINS } from '../../agent/protocol/pins.js';

/** The request bodies are the wire contract both sides share (agent/protocol/wire.ts). */
export { EnrollRequestSchema, ReportEnvelopeSchema, SPOOL_DROPPED_MAX, type EnrollRequest, type ReportEnvelope } from '../../agent/protocol/wire.js';

/**
 * How far ahead of the collector's clock a report's seq may be (agents take seqs
 * from their clock in ms): a seq further ahead would block the host's later reports
 * (seqs only grow) for as long; beyond it the report is refused.
 */
export const SEQ_AHEAD_MAX_MS = 86_400_000;

/**
 * `POST /v1/hosts/{id}/pins/repin` body: which paths to re-pin (all when absent),
 * who asks and why — both go to the pin journal.
 */
export const RepinRequestSchema = z.strictObject({
  paths: z.array(z.string().min(1).max(MAX_PIN_PATH).startsWith('/', 'an absolute path')).min(1).max(MAX_PINS).optional(),
  reason: z.string().trim().min(1, 'say why (it is journaled)').max(1000),
  by: z.string().trim().min(1).max(128).optional(),
});
export type RepinRequest = z.infer<typeof RepinRequestSchema>;

/** The section schemas of a manifest, to check the sections of a partial report one by one. */
export const SectionSchemas = {
  packages: ManifestSchema.shape.packages,
  files: ManifestSchema.shape.files,
  processes: ManifestSchema.shape.processes,
  ports: ManifestSchema.shape.ports,
} as const;

/** A manifest without its sections (checked one by one, see SectionSchemas). */
export const ManifestHeadSchema = ManifestSchema.omit({ packages: true, files: true, processes: true, ports: true });

/** The first issue of a zod error, as `path: message`. */
export function firstIssue(error: z.ZodError, prefix = ''): string {
  const issue = error.issues[0];
  if (!issue) return 'invalid';
  const path = [prefix, ...issue.path.map(String)].filter((p) => p !== '').join('.');
  return `${path || '(top)'}: ${issue.message}`;
}
