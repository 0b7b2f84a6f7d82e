import { z } from 'zod';
import { REPORT_REQUEST_SCHEMA } from '../../agent/protocol/manifest.js';
import { DigestsSchema, HostInfoSchema, LIMITS, ManifestSchema } from '../../agent/protocol/manifest.js';
import { MAX_PIN_PATH, MAX_PINS } from '../../agent/protocol/pins.js';

/**
 * Most reports one request may announce as dropped from the agent's spool: far above
 * what a spool (1,000 entries by default) drops between two deliveries, so one host
 * cannot inflate drift_agent_spool_dropped_total beyond what it could have dropped.
 */
export const SPOOL_DROPPED_MAX = 1_000_000;

/**
 * How far ahead of the collector's clock a report's seq may be (agents take seqs
 * from their clock in ms): a seq further ahead would block the host's later reports
 * (seqs only grow) for as long; beyond it the report is refused.
 */
export const SEQ_AHEAD_MAX_MS = 86_400_000;

/** `POST /v1/enroll` body. */
export const EnrollRequestSchema = z.object({
  hostId: z.string().min(1).max(LIMITS.id),
  hostname: z.string().max(LIMITS.hostname),
  imageId: z.string().min(1).max(LIMITS.id).nullable().optional(),
  /** The host's current node key: the proof that re-enrolls an already enrolled host id. */
  nodeKey: z.string().max(128).optional(),
});
export type EnrollRequest = z.infer<typeof EnrollRequestSchema>;

/**
 * `POST /v1/reports` envelope. `manifest` and `sections` are checked apart (their
 * failures answer 422, an envelope failure 400), so they are `unknown` here.
 */
export const ReportEnvelopeSchema = z.object({
  schema: z.literal(REPORT_REQUEST_SCHEMA),
  seq: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
  collectedAt: z.string().max(64),
  /** The enrolled host id; when absent, host.machineId is checked against the key's host. */
  hostId: z.string().min(1).max(LIMITS.id).optional(),
  role: z.string().min(1).max(128).nullable().optional(),
  spoolDropped: z.number().int().nonnegative().max(SPOOL_DROPPED_MAX).optional(),
  host: HostInfoSchema,
  digests: DigestsSchema,
  manifest: z.unknown().optional(),
  sections: z.record(z.string().max(16), z.unknown()).optional(),
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
