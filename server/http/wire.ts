import { z } from 'zod';
import { REPORT_REQUEST_SCHEMA } from '../../agent/protocol/manifest.js';
import { DigestsSchema, HostInfoSchema, ManifestSchema } from '../../agent/protocol/manifest.js';
import { MAX_PIN_PATH, MAX_PINS } from '../../agent/protocol/pins.js';

/** Schema name of a report request body (docs/api.md). */

/** `POST /v1/enroll` body. */
export const EnrollRequestSchema = z.object({
  hostId: z.string().min(1).max(256),
  hostname: z.string().max(256),
  imageId: z.string().min(1).max(256).nullable().optional(),
});
export type EnrollRequest = z.infer<typeof EnrollRequestSchema>;

/**
 * `POST /v1/reports` envelope. `manifest` and `sections` are checked apart (their
 * failures answer 422, an envelope failure 400), so they are `unknown` here.
 */
export const ReportEnvelopeSchema = z.object({
  schema: z.literal(REPORT_REQUEST_SCHEMA),
  seq: z.number().int().positive(),
  collectedAt: z.string(),
  /** The enrolled host id; when absent, host.machineId is checked against the key's host. */
  hostId: z.string().min(1).optional(),
  role: z.string().min(1).max(128).nullable().optional(),
  spoolDropped: z.number().int().nonnegative().optional(),
  host: HostInfoSchema,
  digests: DigestsSchema,
  manifest: z.unknown().optional(),
  sections: z.record(z.string(), z.unknown()).optional(),
});
export type ReportEnvelope = z.infer<typeof ReportEnvelopeSchema>;

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
