import { z } from 'zod';

/**
 * Rule files (DESIGN.md §4): what to watch, what to ignore, what is expected to
 * change at first boot, and what a finding is worth. Files are YAML; this is the
 * shape of one file after parsing. `rules/README.md` is the reference.
 */

export const SEVERITIES = ['low', 'medium', 'high', 'critical'] as const;
export type Severity = (typeof SEVERITIES)[number];

export const ACTIONS = ['report', 'replace', 'ignore'] as const;
export type PolicyAction = (typeof ACTIONS)[number];

/**
 * `coverage`: a path the baseline recorded that this collection could not read
 * (a folder it cannot list, a file it cannot hash): drift there would go unseen,
 * so the loss of sight is itself a finding.
 */
export const FINDING_KINDS = ['package', 'file', 'process', 'port', 'coverage'] as const;
export type FindingKind = (typeof FINDING_KINDS)[number];

export const CHANGES = ['added', 'removed', 'modified'] as const;
export type Change = (typeof CHANGES)[number];

/** Where a rule was written, so that a finding can name the rule that judged it. */
export interface RuleSource {
  file: string;
  line: number;
  col: number;
}

/** Watch paths matching a glob (`**` crosses folders, `{a,b}` alternates). */
export const WatchRuleSchema = z.strictObject({
  path: z.string().min(1),
  /**
   * `true`: keep small text content for unified diffs (never for secrets).
   * `names`: keep only the first `:`-separated field of each line (user and group
   * names of /etc/shadow and /etc/gshadow), so that added users show without secrets.
   */
  content: z.union([z.boolean(), z.literal('names')]).optional(),
});

/** Leave something out of collection and comparison; `why` is mandatory. */
export const IgnoreRuleSchema = z.strictObject({
  path: z.string().min(1).optional(),
  process: z.string().min(1).optional(),
  package: z.string().min(1).optional(),
  port: z.string().min(1).optional(),
  why: z.string().min(1),
  /**
   * The acknowledgement a broad rule needs: one that ignores everything, or
   * everything under a top-level folder (`/**`, `/usr/**`, `package: "*"`), is
   * refused without `broad: true`, since it blinds drift to a whole area.
   */
  broad: z.literal(true).optional(),
});

/**
 * An expected first-boot change, as narrow as the change itself: `path` may change
 * (`change: modified`) or appear (`added`); with `lines`, only added/removed lines
 * matching one of the regular expressions are expected, any other line is drift.
 * `${name}` in a pattern or path is replaced by the rule variable `name`.
 * First boot happens once: what an expect rule accepts is pinned at a host's first
 * scan or report, and a later change is drift (agent/engine/pins.ts); `pin: false`
 * is for what legitimately changes at every boot (resolv.conf).
 */
export const ExpectRuleSchema = z.strictObject({
  path: z.string().min(1),
  change: z.enum(CHANGES).optional(),
  lines: z.array(z.string()).optional(),
  pin: z.boolean().optional(),
  why: z.string().min(1),
  /** See IgnoreRuleSchema.broad: an expect rule without `lines` drops as much as an ignore rule. */
  broad: z.literal(true).optional(),
});

/** The attribute names a finding's `changed` lists, by kind (what `match.only` may name). */
export const CHANGED_ATTRIBUTES = [
  // files
  'type', 'target', 'mode', 'uid', 'gid', 'size', 'sha256', 'content', 'caps', 'acl', 'defaultAcl', 'xattrs', 'flags', 'nlink', 'device', 'mtime',
  // packages
  'version', 'source',
  // processes
  'exeSha256', 'deleted', 'replaced',
  // ports
  'process',
] as const;

export const PolicyMatchSchema = z.strictObject({
  kind: z.enum(FINDING_KINDS).optional(),
  change: z.enum(CHANGES).optional(),
  /** Glob over the finding key's path (files) or name (packages, processes, ports). */
  path: z.string().min(1).optional(),
  name: z.string().min(1).optional(),
  /**
   * Files only: the mode gains this bit, or the file gains a capability (a new file
   * that has it counts as a gain).
   */
  gains: z.enum(['setuid', 'setgid', 'capability']).optional(),
  /** A modified finding whose changed attributes are all among these (`[mtime]`: touched, nothing else). */
  only: z.array(z.enum(CHANGED_ATTRIBUTES)).min(1).optional(),
});

export const PolicyRuleSchema = z.strictObject({
  match: PolicyMatchSchema,
  severity: z.enum(SEVERITIES),
  action: z.enum(ACTIONS),
  /** See IgnoreRuleSchema.broad: a policy rule with action `ignore` drops as much as an ignore rule. */
  broad: z.literal(true).optional(),
});

export const RuleFileSchema = z.strictObject({
  /** Variables for `${name}` in expect rules (e.g. `cloudInitUser: admin`). */
  vars: z.record(z.string(), z.string()).optional(),
  watch: z.array(WatchRuleSchema).optional(),
  ignore: z.array(IgnoreRuleSchema).optional(),
  expect: z.array(ExpectRuleSchema).optional(),
  policy: z.array(PolicyRuleSchema).optional(),
});
export type RuleFile = z.infer<typeof RuleFileSchema>;

export type WatchRule = z.infer<typeof WatchRuleSchema> & { source?: RuleSource | undefined };
export type IgnoreRule = z.infer<typeof IgnoreRuleSchema> & { source?: RuleSource | undefined };
export type ExpectRule = z.infer<typeof ExpectRuleSchema> & { source?: RuleSource | undefined };
export type PolicyRule = z.infer<typeof PolicyRuleSchema> & { source?: RuleSource | undefined };

/** Rule files merged in order: shipped `rules/` first, then each `--rules` folder. */
export interface RuleSet {
  vars: Record<string, string>;
  watch: WatchRule[];
  ignore: IgnoreRule[];
  expect: ExpectRule[];
  policy: PolicyRule[];
}

export function emptyRuleSet(): RuleSet {
  return { vars: {}, watch: [], ignore: [], expect: [], policy: [] };
}

/** `file:line` of a rule, as findings name it; `null` for a rule made in code. */
export function ruleRef(rule: { source?: RuleSource | undefined }): string | null {
  return rule.source ? `${rule.source.file}:${rule.source.line}` : null;
}
