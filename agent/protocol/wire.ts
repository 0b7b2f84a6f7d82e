import { z } from 'zod';
import { DigestsSchema, HostInfoSchema, LIMITS, ManifestSchema, REPORT_REQUEST_SCHEMA } from './manifest.js';

/**
 * The wire contract between agent and collector (docs/api.md), declared once: the
 * collector parses request bodies with these schemas, the agent builds its requests with
 * their types and parses the answers with the response schemas.
 */

/** Bounds of identifiers on the wire: a hostile body cannot make them unbounded. */
const HOST_ID_MAX = LIMITS.id;
const ROLE_MAX = 128;

/**
 * Most reports one request may announce as dropped from the agent's spool: far above
 * what a spool (1,000 entries by default) drops between two deliveries, so one host
 * cannot inflate drift_agent_spool_dropped_total beyond what it could have dropped.
 */
export const SPOOL_DROPPED_MAX = 1_000_000;

/** `POST /v1/enroll` body, sent with the enrollment secret. */
export const EnrollRequestSchema = z.object({
  /** The id the host asks to be known by (its machine-id unless `--host-id`). */
  hostId: z.string().min(1).max(HOST_ID_MAX),
  hostname: z.string().max(LIMITS.hostname),
  /** The image the host was baked from, from its stamp; null when unstamped. */
  imageId: z.string().min(1).max(LIMITS.id).nullable().optional(),
  /** The host's current node key: the proof that re-enrolls an already enrolled host id. */
  nodeKey: z.string().max(128).optional(),
});
export type EnrollRequest = z.infer<typeof EnrollRequestSchema>;

/** `POST /v1/enroll` answer: the node key for every later report. */
export const EnrollResponseSchema = z.object({ hostId: z.string(), nodeKey: z.string().min(1) });
export type EnrollResponse = z.infer<typeof EnrollResponseSchema>;

/** The fields of a report request besides its manifest or sections. */
const reportHead = {
  schema: z.literal(REPORT_REQUEST_SCHEMA),
  /** Increases with every report of a host: the collector refuses replays. */
  seq: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
  collectedAt: z.string().max(64),
  /** The enrolled host id; when absent, host.machineId is checked against the key's host. */
  hostId: z.string().min(1).max(HOST_ID_MAX).optional(),
  /** Cohort role (`--role web`); absent or null when the agent has none. */
  role: z.string().min(1).max(ROLE_MAX).nullable().optional(),
  /** Spooled reports dropped (spool full) since the last accepted report. */
  spoolDropped: z.number().int().nonnegative().max(SPOOL_DROPPED_MAX).optional(),
  host: HostInfoSchema,
  digests: DigestsSchema,
};

/** The sections a partial report carries (those the collector asked for). */
export const ReportSectionsSchema = z.object({
  packages: ManifestSchema.shape.packages,
  files: ManifestSchema.shape.files,
  processes: ManifestSchema.shape.processes,
  ports: ManifestSchema.shape.ports,
}).partial();

/**
 * `POST /v1/reports` body, sent with the node key: digests only, or with the full
 * `manifest`, or with the `sections` the collector asked for.
 */
export const ReportRequestSchema = z.object({
  ...reportHead,
  manifest: ManifestSchema.optional(),
  sections: ReportSectionsSchema.optional(),
});
export type ReportRequest = z.infer<typeof ReportRequestSchema>;

/**
 * The same body as the collector reads it first: the envelope is checked whole (a failure
 * answers 400), `manifest` and `sections` afterwards one section at a time (422), so
 * they are left unparsed here.
 */
export const ReportEnvelopeSchema = z.object({
  ...reportHead,
  manifest: z.unknown().optional(),
  sections: z.record(z.string().max(16), z.unknown()).optional(),
});
export type ReportEnvelope = z.infer<typeof ReportEnvelopeSchema>;

/** `POST /v1/reports` answer: stored, or not yet, with the sections the collector needs. */
export const ReportResponseSchema = z.object({
  accepted: z.boolean(),
  seq: z.number(),
  /** Section names; an agent ignores names it does not know (a newer collector's). */
  need: z.array(z.string()).default([]),
});
export type ReportResponse = z.infer<typeof ReportResponseSchema>;

/** Schema name of `POST /v1/agentless/reports`. */
export const AGENTLESS_SCHEMA = 'drift.agentless-report/v1';

/**
 * `POST /v1/agentless/reports` body, sent with the admin token by a sweep (`drift scan
 * --targets`, `drift audit`'s sweep pass) on behalf of a host without an agent: `report`
 * is a full `drift.report-request/v1` whose `hostId` (required here) is `ssh:…` or `ssm:…`.
 */
export const AgentlessReportSchema = z.object({
  schema: z.literal(AGENTLESS_SCHEMA),
  via: z.enum(['ssh', 'ssm']),
  report: z.unknown(),
});
export type AgentlessReport = Omit<z.infer<typeof AgentlessReportSchema>, 'report'> & { report: ReportRequest };
