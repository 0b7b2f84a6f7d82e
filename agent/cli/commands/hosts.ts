import { Option, type Command } from 'commander';
import { DriftError } from '../../protocol/errors.js';
import { readSecretFile } from '../../transport/client.js';
import { clientOptions } from '../common.js';
import { sortedJson } from '../../protocol/canonical.js';
import { hostTable, remoteHosts } from '../remote.js';

interface HostsOptions {
  collector?: string;
  adminTokenFile?: string;
  caFile?: string;
  format: 'text' | 'json';
}

export const HOSTS_SCHEMA = 'drift.hosts/v1';

/** `drift hosts`: the collector's hosts, one line each, for an operator to pick one from. */
export function register(program: Command): void {
  program
    .command('hosts')
    .description('List the hosts a collector knows: host, id, image, status, findings, last seen, snowflake score.')
    .option('--collector <url>', 'the collector (drift server); required')
    .option('--admin-token-file <file>', 'the collector\'s admin token; required')
    .option('--ca-file <file>', 'extra CA certificates (PEM) to trust for an HTTPS collector')
    .addOption(new Option('--format <format>', 'output format').choices(['text', 'json']).default('text'))
    .addHelpText('after', `
Status: clean, drifted (at least one finding), silent (no report for --silent-after), unknown-image
(no baseline for its image, or no image stamp). JSON: { "schema": "${HOSTS_SCHEMA}", "hosts": [...] }
as GET /v1/hosts answers (docs/api.md). See one host with drift scan --collector URL --host NAME.

Examples:
  drift hosts --collector https://drift.internal:8750 --admin-token-file ~/.drift-admin
  drift hosts --collector https://drift.internal:8750 --admin-token-file ~/.drift-admin --format json`)
    .action(async (opts: HostsOptions) => {
      if (!opts.collector) throw new DriftError('DRIFT_ERR_USAGE', 'hosts: --collector URL is required (the collector to ask)');
      if (!opts.adminTokenFile) throw new DriftError('DRIFT_ERR_USAGE', 'hosts: --admin-token-file FILE is required (the collector\'s admin token)');
      const token = await readSecretFile(opts.adminTokenFile);
      const hosts = await remoteHosts(opts.collector, token, await clientOptions(opts.caFile));
      if (opts.format === 'json') process.stdout.write(sortedJson({ schema: HOSTS_SCHEMA, hosts }));
      else process.stdout.write(hosts.length === 0 ? `no hosts have reported to ${opts.collector} yet\n` : `${hostTable(hosts).join('\n')}\n`);
    });
}
