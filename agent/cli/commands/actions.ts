import type { Command } from 'commander';
import { z } from 'zod';
import { DriftError } from '../../protocol/errors.js';
import { adminJson, readSecretFile } from '../../transport/client.js';
import { exit } from '../exit.js';
import { visible } from '../format/common.js';

/**
 * `drift actions` and `drift replace`: an operator's HTTP client of the collector's
 * actions ledger (docs/api.md, "Actions"). They never call a provider: `drift audit`
 * carries out what the ledger admits.
 */

interface Remote { collector?: string; adminTokenFile?: string; format: string }

const ActionSchema = z.looseObject({
  id: z.string(), hostId: z.string(), hostname: z.string(), instanceId: z.string().nullable(), cohort: z.string(),
  reason: z.string(), provider: z.string(), actor: z.string(), forced: z.string().nullable(), state: z.string(),
  attempts: z.number(), providerRef: z.string().nullable(), error: z.string().nullable(), createdAt: z.string(),
});
type ActionView = z.infer<typeof ActionSchema>;
const BlockedSchema = z.looseObject({ hostId: z.string(), hostname: z.string(), cohort: z.string(), blocked: z.array(z.object({ guard: z.string(), why: z.string() })) });

function parse<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  throw new DriftError('DRIFT_ERR_MANIFEST', `the collector answered ${what} this drift does not understand (${issue ? `${issue.path.join('.') || '(top)'}: ${issue.message}` : 'invalid'}); is it the same version?`);
}

async function connect(o: Remote, cmd: string): Promise<{ url: string; token: string }> {
  if (!o.collector) throw new DriftError('DRIFT_ERR_USAGE', `${cmd}: --collector URL is required (the collector's address, e.g. https://drift.internal:8750)`);
  if (!o.adminTokenFile) throw new DriftError('DRIFT_ERR_USAGE', `${cmd}: --admin-token-file FILE is required (the collector's admin token)`);
  if (o.format !== 'text' && o.format !== 'json') throw new DriftError('DRIFT_ERR_USAGE', `${cmd}: --format must be text or json, got ${JSON.stringify(o.format)}`);
  return { url: o.collector, token: await readSecretFile(o.adminTokenFile) };
}

const short = (id: string): string => id.slice(0, 8);

function line(a: ActionView): string {
  const extra = a.error ? ` — ${a.error}` : a.forced ? ` — forced: ${a.forced}` : '';
  // Hostnames, reasons and provider errors come from hosts, operators and providers: escaped for the terminal.
  return visible(`${short(a.id)}  ${a.state.padEnd(9)}  ${a.hostname} (${a.hostId})  ${a.provider}  ${a.createdAt}  ${a.reason}${extra}`);
}

function out(o: Remote, json: unknown, text: string): void {
  process.stdout.write(o.format === 'json' ? `${JSON.stringify(json, null, 2)}\n` : text);
}

const common = (c: Command): Command => c
  .option('--collector <url>', 'the collector (drift server) URL')
  .option('--admin-token-file <file>', 'the collector\'s admin token')
  .option('--format <format>', 'text or json', 'text');

export function register(program: Command): void {
  common(program
    .command('actions')
    .description('Show and steer the replacement ledger the collector keeps: list actions, show one with its journal, cancel one, pause or resume all enforcement.')
    .argument('[verb]', 'list | show | cancel | pause | resume', 'list')
    .argument('[id]', 'the action id (show, cancel; a unique prefix of 8+ characters from list works for show)')
    .option('--state <states>', 'list: only these states, comma-separated (planned,started,succeeded,failed,blocked,cancelled,verified)')
    .option('--host <id>', 'list: only this host')
    .option('--reason <text>', 'cancel, pause: why (journaled)'))
    .addHelpText('after', `
Exit codes: 0 done, 2 trouble (bad arguments, unreachable collector, refused token, no such action).
Examples:
  drift actions --collector https://drift.internal:8750 --admin-token-file ~/.drift-admin list --state started
  drift actions --collector ... --admin-token-file ... pause --reason "incident 42"`)
    .action(async (verb: string, id: string | undefined, o: Remote & { state?: string; host?: string; reason?: string }) => {
      const { url, token } = await connect(o, 'actions');
      const needId = (): string => {
        if (!id) throw new DriftError('DRIFT_ERR_USAGE', `actions ${verb}: give the action id (drift actions list shows them)`);
        return id;
      };
      switch (verb) {
        case 'list': {
          const q = new URLSearchParams();
          if (o.state) q.set('state', o.state);
          if (o.host) q.set('host', o.host);
          const r = await adminJson('GET', url, `/v1/actions${q.size ? `?${q}` : ''}`, token);
          const list = parse(z.array(ActionSchema), r['actions'], 'an action list');
          const e = parse(z.looseObject({ paused: z.boolean(), reason: z.string().nullable(), breakers: z.array(z.looseObject({ cohort: z.string(), reason: z.string() })) }),
            await adminJson('GET', url, '/v1/enforcement', token), 'the enforcement state');
          const head = [`enforcement ${e.paused ? `PAUSED${e.reason ? `: ${e.reason}` : ''}` : 'on'}`, ...e.breakers.map((b) => `breaker open on cohort ${b.cohort}: ${b.reason}`)];
          out(o, { ...r, enforcement: e }, `${[...head, ...(list.length ? list.map(line) : ['no actions'])].join('\n')}\n`);
          return;
        }
        case 'show': {
          let wanted = needId();
          if (wanted.length < 36) {
            const all = parse(z.array(ActionSchema), (await adminJson('GET', url, '/v1/actions?limit=1000', token))['actions'], 'an action list');
            const hits = all.filter((a) => a.id.startsWith(wanted));
            if (hits.length !== 1) throw new DriftError('DRIFT_ERR_NOT_FOUND', `${hits.length === 0 ? 'no' : 'more than one'} action starts with ${wanted}; give the full id`);
            wanted = (hits[0] as ActionView).id;
          }
          const r = await adminJson('GET', url, `/v1/actions/${encodeURIComponent(wanted)}`, token);
          const a = parse(ActionSchema.extend({ events: z.array(z.object({ at: z.string(), state: z.string(), note: z.string() })) }), r, 'an action');
          out(o, r, `${line(a)}\n${a.events.map((ev) => `  ${ev.at}  ${ev.state.padEnd(9)}  ${ev.note}`).join('\n')}\n`);
          return;
        }
        case 'cancel': {
          const r = await adminJson('POST', url, `/v1/actions/${encodeURIComponent(needId())}/cancel`, token, { reason: o.reason ?? 'cancelled by an operator' });
          out(o, r, `${line(parse(ActionSchema, r, 'an action'))}\n`);
          return;
        }
        case 'pause':
        case 'resume': {
          const r = await adminJson('PUT', url, '/v1/enforcement', token, { paused: verb === 'pause', ...(o.reason ? { reason: o.reason } : {}) });
          out(o, r, `enforcement ${verb === 'pause' ? 'paused' : 'resumed'}\n`);
          return;
        }
        default:
          throw new DriftError('DRIFT_ERR_USAGE', `actions: unknown verb ${JSON.stringify(verb)}; use list, show ID, cancel ID, pause or resume`);
      }
    });

  common(program
    .command('replace')
    .description('Ask the collector to replace a host (an operator\'s manual replacement): admitted through the same guards as drift audit, journaled in the ledger, carried out by drift audit.')
    .argument('<host>', 'the host id')
    .requiredOption('--reason <text>', 'why (journaled)')
    .option('--force', 'bypass the guards (never the one-action-per-host rule); the reason is journaled as the force reason', false)
    .option('--provider <name>', 'the provider that should carry it out (any: whichever drift audit runs)', 'any'))
    .addHelpText('after', `
Exit codes: 0 admitted (planned), 1 held back by a guard (each named), 2 trouble.`)
    .action(async (host: string, o: Remote & { reason: string; force: boolean; provider: string }) => {
      const { url, token } = await connect(o, 'replace');
      const r = await adminJson('POST', url, '/v1/actions', token, {
        provider: o.provider, actor: 'operator', hosts: [host], reason: o.reason, ...(o.force ? { force: o.reason } : {}),
      });
      const admitted = parse(z.array(ActionSchema), r['admitted'], 'an admission');
      const blocked = parse(z.array(BlockedSchema), r['blocked'], 'an admission');
      const text = [
        ...admitted.map((a) => `admitted ${a.id}: ${a.hostname} (${a.hostId}) will be replaced by drift audit${a.forced ? ' (forced: guards bypassed)' : ''}`),
        ...blocked.map((b) => `blocked: ${b.hostname} (${b.hostId}):\n${b.blocked.map((g) => `  ${g.guard}: ${g.why}`).join('\n')}`),
      ].join('\n');
      out(o, r, `${text}\n`);
      exit(admitted.length > 0 ? 0 : 1);
    });
}
