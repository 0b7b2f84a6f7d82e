import type { FileEntry, PackageEntry, PortEntry, ProcessEntry, Unread } from './manifest.js';
import type { Change, FindingKind, PolicyAction, Severity } from './rules.js';
import type { FirstBoot } from './pins.js';

/** A finding that breaks a first-boot pin: `before` is then the pinned value, seen first at `firstSeen`. */
export interface PinnedRef {
  firstSeen: string;
}

/** The finding another one follows from: a removed package for each file it owned, a new folder for what is in it. */
export interface Cause {
  kind: FindingKind;
  key: string;
}

/** A raw difference between a baseline entry and a manifest entry, before rules judge it. */
export interface Difference<K extends string, T> {
  kind: K;
  /** The manifest key: a path, `dpkg:name:arch`, `exe|user`, `tcp:addr:port`. */
  key: string;
  change: Change;
  /** Attribute names that differ (`sha256`, `mode`, `version`, ...); empty for added/removed. */
  changed: string[];
  before: T | null;
  after: T | null;
}

interface FindingBase<K extends string, T> extends Difference<K, T> {
  severity: Severity;
  action: PolicyAction;
  /** `file:line` of the policy rule that set severity and action, or null for the default. */
  rule: string | null;
  /** One sentence a person can act on. */
  explanation: string;
  /** Unified diff of the content, where both sides are known. */
  diff?: string;
  /** Set when the finding breaks a first-boot pin (agent/engine/pins.ts). */
  pinned?: PinnedRef;
  /**
   * Set by `buildReport` on a finding that follows from another finding of the same
   * report (its root cause, never a chain): human formats print it under its cause.
   */
  cause?: Cause;
}

/**
 * What a scan could see at a path the baseline covered: `paths` is how many
 * baseline paths lie at or below it that the side could read; `reason` is the
 * error that hid them (after side only).
 */
export interface CoverageEntry {
  paths: number;
  reason?: string;
}

/** One difference between a host and its image's baseline (DESIGN.md §5). */
export type Finding =
  | FindingBase<'package', PackageEntry>
  | FindingBase<'file', FileEntry>
  | FindingBase<'process', ProcessEntry>
  | FindingBase<'port', PortEntry>
  | FindingBase<'coverage', CoverageEntry>;

/** Differences a rule dropped before they became findings, counted per rule. */
export interface Drop {
  /** `file:line` of the rule, or `(a rule made in code)`. */
  rule: string;
  /** The kind of rule: an ignore rule, an expect rule, or a policy rule with action ignore. */
  by: 'ignore' | 'expect' | 'policy';
  count: number;
}

export const REPORT_SCHEMA = 'drift.report/v1';

/** What was checked of a baseline's signature before it was compared. */
export type SignatureStatus = 'verified' | 'unverified' | 'unsigned';

/**
 * `verified`: signed by a trusted key (`keyId`); `unverified`: signed by `keyId`, but
 * no trusted key was there to check it, so the findings are only as good as the file;
 * `unsigned`: no signature at all (`keyId` null).
 */
export interface SignatureCheck {
  status: SignatureStatus;
  keyId: string | null;
}

/** The baseline a report was judged against. */
export interface ReportBaseline {
  imageId: string;
  digest: string;
  signature: SignatureCheck;
}

/** The result of a scan, as `--format json` prints it (documented in README). */
export interface Report {
  schema: typeof REPORT_SCHEMA;
  target: string;
  baseline: ReportBaseline;
  summary: {
    findings: number;
    bySeverity: Record<Severity, number>;
    /** Findings by kind and change, zeros included. */
    byKind: Record<FindingKind, Record<Change, number>>;
  };
  findings: Finding[];
  /** What the scan could not read: a clean report must not hide blind spots. */
  unread: Unread[];
  /** How many differences each ignore, expect and policy-ignore rule dropped (a local scan only). */
  dropped?: Drop[];
  /** First-boot pinning of the target, where it applies (a host's scan or the collector's view of it). */
  firstBoot?: FirstBoot;
}
