/**
 * The collector's Prometheus metrics, kept in memory and rendered in the text
 * exposition format (version 0.0.4) by `render`. Hand-written: four families do not
 * justify a client library.
 */
const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

export class Metrics {
  reportsReceived = 0;
  reportsAccepted = 0;
  reportsNeedSections = 0;
  /** Reports decided, by where: on the main thread or in a report worker. */
  readonly reportsDecided: Record<'main' | 'worker', number> = { main: 0, worker: 0 };
  /** Reports agents dropped from their spools (the `spoolDropped` they announce). */
  agentSpoolDropped = 0;
  readonly refused = new Map<string, number>();
  /** Refused enrollments by reason (a re-enrollment without proof among them). */
  readonly enrollRefused = new Map<string, number>();
  private readonly durations = new Map<string, { buckets: number[]; sum: number; count: number }>();

  /** Count a refused report under a short reason (`unauthorized`, `replayed`, ...). */
  refuse(reason: string): void {
    this.refused.set(reason, (this.refused.get(reason) ?? 0) + 1);
  }

  /** Count a refused enrollment under a short reason (`unauthorized`, `unproven-reenroll`, `rate-limited`, `malformed`). */
  refuseEnroll(reason: string): void {
    this.enrollRefused.set(reason, (this.enrollRefused.get(reason) ?? 0) + 1);
  }

  /** Record one request's duration (seconds) under its route pattern. */
  observe(route: string, seconds: number): void {
    let h = this.durations.get(route);
    if (!h) this.durations.set(route, (h = { buckets: BUCKETS.map(() => 0), sum: 0, count: 0 }));
    for (let i = 0; i < BUCKETS.length; i++) if (seconds <= (BUCKETS[i] as number)) h.buckets[i] = (h.buckets[i] as number) + 1;
    h.sum += seconds;
    h.count++;
  }

  /** The exposition text; `hostsByStatus`, `dbBytes` and `reportWorkers` (threads running) are read at scrape time. */
  render(hostsByStatus: Record<string, number>, dbBytes: number, reportWorkers: number): string {
    const out: string[] = [];
    out.push('# HELP drift_reports_received_total Reports received on POST /v1/reports.', '# TYPE drift_reports_received_total counter', `drift_reports_received_total ${this.reportsReceived}`);
    out.push('# HELP drift_reports_accepted_total Reports stored.', '# TYPE drift_reports_accepted_total counter', `drift_reports_accepted_total ${this.reportsAccepted}`);
    out.push('# HELP drift_reports_need_sections_total Reports answered with the sections the collector needs.', '# TYPE drift_reports_need_sections_total counter', `drift_reports_need_sections_total ${this.reportsNeedSections}`);
    out.push('# HELP drift_reports_decided_total Reports decided (stored, refused or answered with the sections needed), by where: on the main thread or in a report worker.', '# TYPE drift_reports_decided_total counter');
    for (const [where, n] of Object.entries(this.reportsDecided)) out.push(`drift_reports_decided_total{where="${where}"} ${n}`);
    out.push('# HELP drift_agent_spool_dropped_total Reports agents dropped from a full spool, as they announce them.', '# TYPE drift_agent_spool_dropped_total counter', `drift_agent_spool_dropped_total ${this.agentSpoolDropped}`);
    out.push('# HELP drift_reports_refused_total Reports refused, by reason.', '# TYPE drift_reports_refused_total counter');
    for (const [reason, n] of [...this.refused].sort()) out.push(`drift_reports_refused_total{reason="${reason}"} ${n}`);
    out.push('# HELP drift_enroll_refused_total Enrollments refused, by reason.', '# TYPE drift_enroll_refused_total counter');
    for (const [reason, n] of [...this.enrollRefused].sort()) out.push(`drift_enroll_refused_total{reason="${reason}"} ${n}`);
    out.push('# HELP drift_hosts Hosts by status.', '# TYPE drift_hosts gauge');
    for (const [status, n] of Object.entries(hostsByStatus)) out.push(`drift_hosts{status="${status}"} ${n}`);
    out.push('# HELP drift_http_request_duration_seconds Request durations by route.', '# TYPE drift_http_request_duration_seconds histogram');
    for (const [route, h] of [...this.durations].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
      const r = route.replace(/["\\\n]/g, '_');
      BUCKETS.forEach((b, i) => out.push(`drift_http_request_duration_seconds_bucket{route="${r}",le="${b}"} ${h.buckets[i] ?? 0}`));
      out.push(`drift_http_request_duration_seconds_bucket{route="${r}",le="+Inf"} ${h.count}`);
      out.push(`drift_http_request_duration_seconds_sum{route="${r}"} ${h.sum}`, `drift_http_request_duration_seconds_count{route="${r}"} ${h.count}`);
    }
    out.push('# HELP drift_report_workers Report worker threads running (they start when reports need them).', '# TYPE drift_report_workers gauge', `drift_report_workers ${reportWorkers}`);
    out.push('# HELP drift_db_size_bytes Size of the database file and its WAL.', '# TYPE drift_db_size_bytes gauge', `drift_db_size_bytes ${dbBytes}`);
    return `${out.join('\n')}\n`;
  }
}
