import { DriftError } from '../protocol/errors.js';
import type { Manifest, SectionName } from '../protocol/manifest.js';
import type { RuleSet } from '../protocol/rules.js';

/** A host reached over SSH: `[USER@]HOST[:PORT]`. */
export interface SshTarget { user?: string; host: string; port?: number }

/** Parse `[USER@]HOST[:PORT]`. */
export function parseSshTarget(text: string): SshTarget {
  const m = /^(?:([A-Za-z0-9._-]{1,64})@)?([A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::(\d{1,5}))?$/.exec(text);
  if (!m) throw new DriftError('DRIFT_ERR_USAGE', `ssh: ${JSON.stringify(text.slice(0, 200))} is not [USER@]HOST[:PORT]`);
  const target: SshTarget = { host: (m[2] as string).replace(/^\[|\]$/g, '') };
  if (m[1] !== undefined) target.user = m[1];
  if (m[3] !== undefined) {
    const port = Number(m[3]);
    if (port < 1 || port > 65535) throw new DriftError('DRIFT_ERR_USAGE', `ssh: port ${m[3]} of ${JSON.stringify(text)} is not 1-65535`);
    target.port = port;
  }
  return target;
}

/** How to reach and trust an SSH host. */
export interface SshOptions { knownHosts?: string; acceptNew?: boolean; identity?: string; connectTimeoutMs?: number; timeoutMs?: number; remoteDrift?: string }

/** Collect a host's manifest over SSH. */
export async function collectOverSsh(_target: SshTarget, _opts: SshOptions, _scan: { rules: RuleSet; sections?: readonly SectionName[] }): Promise<Manifest> {
  throw new DriftError('DRIFT_ERR_USAGE', 'ssh: not available');
}
