import { z } from 'zod';
import { ManifestSchema } from '../../agent/protocol/manifest.js';

/** The request bodies are the wire contract both sides share (agent/protocol/wire.ts). */
export { EnrollRequestSchema, ReportEnvelopeSchema, type EnrollRequest, type ReportEnvelope } from '../../agent/protocol/wire.js';

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
