import t from 'tap';
import { EnrollRequestSchema, ReportEnvelopeSchema, ReportRequestSchema, ReportResponseSchema, type ReportRequest } from '../../../agent/protocol/wire.js';
import { EnrollRequestSchema as ServerEnroll, ReportEnvelopeSchema as ServerEnvelope } from '../../../server/http/wire.js';
import { REPORT_REQUEST_SCHEMA } from '../../../agent/protocol/manifest.js';

const digest = `sha256:${'a'.repeat(64)}`;
const request: ReportRequest = {
  schema: REPORT_REQUEST_SCHEMA, seq: 3, collectedAt: '2026-12-01T00:00:00.000Z', hostId: 'h1', role: 'web',
  host: { hostname: 'web-1', machineId: 'm'.repeat(32) }, digests: { root: digest },
  sections: { ports: { 'tcp:0.0.0.0:22': { process: '/usr/sbin/sshd' } } },
};

t.test('the collector parses requests with the schemas the agent builds them from', async (t) => {
  t.equal(ServerEnroll, EnrollRequestSchema, 'one enroll schema');
  t.equal(ServerEnvelope, ReportEnvelopeSchema, 'one report envelope');
  t.ok(ReportRequestSchema.safeParse(request).success);
  t.ok(ReportEnvelopeSchema.safeParse(request).success, 'what the agent sends, the collector takes');
  t.ok(EnrollRequestSchema.safeParse({ hostId: 'h1', hostname: 'web-1', imageId: null }).success, 'unstamped host enrolls');
});

t.test('hostile bodies are refused by bounds', async (t) => {
  t.notOk(ReportEnvelopeSchema.safeParse({ ...request, hostId: 'h'.repeat(257) }).success, 'host id over 256 characters');
  t.notOk(ReportEnvelopeSchema.safeParse({ ...request, role: 'r'.repeat(129) }).success, 'role over 128 characters');
  t.notOk(ReportEnvelopeSchema.safeParse({ ...request, seq: 0 }).success, 'seq starts at 1');
  t.notOk(EnrollRequestSchema.safeParse({ hostId: '', hostname: 'x' }).success, 'empty host id');
  t.notOk(ReportRequestSchema.safeParse({ ...request, sections: { ports: { p: { process: 7 } } } }).success, 'a section entry of the wrong shape');
});

t.test('answers: unknown section names from a newer collector do not break the agent', async (t) => {
  const r = ReportResponseSchema.parse({ accepted: false, seq: 3, need: ['files', 'kernel-modules'] });
  t.same(r.need, ['files', 'kernel-modules']);
  t.same(ReportResponseSchema.parse({ accepted: true, seq: 3 }).need, []);
});
