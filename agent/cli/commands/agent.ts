import type { Command } from 'commander';
import { resolveAgentConfig } from '../../config.js';
import { AgentDaemon, jsonLogger } from '../../daemon.js';
import { collectManifest } from '../../manifest.js';
import { loadRuleSet } from '../../rules/load.js';
import { collect } from '../common.js';
import { exit } from '../exit.js';
import { BUDGET_HELP } from '../common.js';

/** Commander's camelCase option names → the config's flag/file key names. */
const KEYS: Record<string, string> = {
  collector: 'collector', enrollSecretFile: 'enroll-secret-file', root: 'root', proc: 'proc', stateDir: 'state-dir',
  interval: 'interval', splay: 'splay', timeout: 'timeout', once: 'once', hostId: 'host-id', role: 'role', rules: 'rules',
  spoolMax: 'spool-max', spoolMaxBytes: 'spool-max-bytes', maxFileBytes: 'max-file-bytes', maxScanBytes: 'max-scan-bytes', caFile: 'ca-file', config: 'config', sections: 'sections',
};

/** `drift agent`: the per-host daemon that reports to the collector. */
export function register(program: Command): void {
  program
    .command('agent')
    .description('Report this host (or a root folder) to the collector: collect on an interval with splay, send digests or the full manifest, spool on disk while the collector is away.')
    .option('--collector <url>', 'collector base URL, e.g. https://collector.internal:8443')
    .option('--enroll-secret-file <file>', 'file holding the enrollment secret (mode 0600)')
    .option('--root <dir>', 'root folder to collect (default /, the live host)')
    .option('--proc <dir>', 'read processes and ports from this /proc (default: /proc for the live host, none for --root)')
    .option('--state-dir <dir>', 'node key, seq, spool, stat cache and packages cache (default $DRIFT_STATE_DIR, $STATE_DIRECTORY, /var/lib/drift as root)')
    .option('--interval <duration>', 'time between collections (default 5m)')
    .option('--splay <duration>', 'random delay before the first collection and jitter of each interval (default 30s)')
    .option('--timeout <duration>', 'deadline of one request to the collector (default 30s)')
    .option('--once', 'collect and deliver once, then exit: 0 delivered, 2 spooled or refused')
    .option('--host-id <id>', 'host identity to report under (default: the root\'s etc/machine-id)')
    .option('--role <role>', 'cohort role (web, db, ...): hosts of one image and role are compared together')
    .option('--rules <dir>', 'site rule folder, after the shipped rules (repeatable; added to those of --config); used only where the image has no baked scope', collect)
    .option('--spool-max <n>', 'most reports kept on disk while the collector is away; the oldest are dropped first (default 1000)')
    .option('--spool-max-bytes <size>', 'most bytes of manifests kept in the spool, e.g. 512MiB; the oldest reports are dropped first (default 256MiB)')
    .option('--max-file-bytes <size>', BUDGET_HELP.file)
    .option('--max-scan-bytes <size>', BUDGET_HELP.scan)
    .option('--ca-file <file>', 'extra CA certificates (PEM) to trust for an HTTPS collector')
    .option('--sections <list>', 'collect only these sections: packages,files,processes,ports (comma-separated)')
    .option('--config <file>', 'YAML file with the same settings, keys named like the flags (collector, enroll-secret-file, interval, ...); flags win')
    .addHelpText('after', `
Identity: the host is its root's etc/machine-id (or --host-id), its image the stamp
etc/drift/image.json written by \`drift baseline --stamp\`.

Scope: the agent collects the scope baked into the image: the watch, ignore and expect
rules recorded in etc/drift/baseline.json (bake with --out /etc/drift/baseline.json
--stamp), used when its digest is the one the stamp names. Without it the agent warns
and collects with this host's rule files (shipped and --rules).

Delivery: every report is written to the spool (STATE_DIR/spool) before it is sent and
delivered in order. Connection refused, timeouts and 5xx answers keep it spooled and
are retried with full-jitter backoff (1s .. 5m); a report the collector refuses with
another 4xx is logged and dropped; a 409 conflict (the collector already committed
that seq, the answer was lost) counts as delivered. The spool keeps at most
--spool-max reports and --spool-max-bytes of manifests, dropping the oldest first
(the drops are counted and announced to the collector). Logs are JSON lines on
standard error.

Configuration errors: an enrolment secret the collector refuses, a TLS certificate this
host does not trust (pass --ca-file) or a URL that does not speak TLS are logged as
errors with "fatal":true: retrying cannot help, the report waits in the spool until the
configuration is fixed, and --once exits 2. The daemon tries again at the next
collection. STATE_DIR/drift-agent.prom (node_exporter textfile) counts them
(drift_agent_config_errors_total) with the spooled reports and the last delivery.
A root without an image stamp (etc/drift/image.json) is warned about once.

${BUDGET_HELP.after}

Stopping: SIGTERM or SIGINT never interrupts a collection in progress (a first run
of a live host takes tens of seconds): the agent finishes it, spools the report in
hand, stops any delivery and exits 0; with --once the exit is then 2 (spooled). The
systemd unit allows 5 minutes for this (TimeoutStopSec=5min).

Examples:
  drift agent --collector https://collector:8443 --enroll-secret-file /etc/drift/enroll-secret
  drift agent --config /etc/drift/agent.yaml --once
  drift agent --collector http://127.0.0.1:8080 --enroll-secret-file s --root /mnt/img --host-id img-check --once`)
    .action(async (opts: Record<string, unknown>) => {
      const flags: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(opts)) if (v !== undefined) flags[KEYS[k] ?? k] = v;
      const cfg = await resolveAgentConfig(flags);
      const log = jsonLogger();
      const daemon = await AgentDaemon.open(cfg, { collect: collectManifest, loadRules: (dirs) => loadRuleSet(dirs), log });
      const ac = new AbortController();
      const onSignal = (sig: NodeJS.Signals): void => {
        log.info('signal received; stopping', { signal: sig });
        ac.abort();
      };
      process.on('SIGTERM', onSignal);
      process.on('SIGINT', onSignal);
      try {
        if (cfg.once) exit(await daemon.runOnce(ac.signal));
        else { await daemon.runLoop(ac.signal); exit(0); }
      } finally {
        process.off('SIGTERM', onSignal);
        process.off('SIGINT', onSignal);
        await daemon.close();
      }
    });
}
