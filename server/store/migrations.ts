/**
 * The collector's schema, as numbered migrations applied in order, each once, each
 * in its own transaction; `schema_migrations` records which ran. Never edit a
 * migration that has shipped: add the next number.
 *
 * Layout (why it is shaped this way: a fleet is thousands of hosts in a few states,
 * so what is per host must be small and what hosts share must be stored once):
 * - `blobs` holds sections content-addressed by the raw 32 bytes of their digest,
 *   deflate-compressed canonical JSON. A baseline's sections live here; a clean host
 *   whose section digest equals the baseline's points at the same blob through its
 *   digest alone, so 10,000 clean hosts of one image cost no section bytes at all.
 * - `host_deltas` holds, for a drifted section only, a delta blob (the keys that
 *   differ from the base section plus the removed keys) and the base it applies to;
 *   identical drift on several hosts shares one delta blob.
 * - `states` holds each distinct set of digests (root + sections) once; hosts and
 *   history rows point at it by number, so the 5,000 clean hosts of one image share
 *   one row of digests.
 * - `strings` holds the short texts many hosts repeat (image ids, roles, baseline
 *   digests) once; hosts point at them by number.
 * - `hosts` keeps per host only what is its own. Its id is stored as 16 raw bytes
 *   when it is 32 lowercase hex digits (a machine-id, the usual case), else as text;
 *   its node key is `<rowid>.<secret>` and only 16 bytes of the secret's sha256 are kept,
 *   so a key is found by the integer primary key and needs no index of its own.
 * - `history` has a row per change, not per report: consecutive reports (seq
 *   following seq) of the same state extend the last row (last_seq, last_at), so the
 *   history answers "which seqs were stored and when did this host change" in one row
 *   per change. `epoch` counts enrollments of the host (a re-enrolled agent restarts
 *   its seqs at 1). Retention deletes rows whose last report is older than the limit.
 * - hosts are referenced by their integer `rowid` everywhere, to keep per-host rows small.
 * - First-boot pins (migration 2): `pins` has a row per pinned path of a host, the
 *   path as a `strings` id and the pinned file entry as a `blobs` digest, so the values
 *   a cohort shares (the default user's keys, passwd, sudoers) are stored once and
 *   only per-instance values (hostname, host keys) cost a blob per host;
 *   `hosts.pinned_at` says when a host was pinned; `pin_books` (only for hosts with
 *   an authorized_keys verdict) how its keys were judged and its last launch keys;
 *   `pin_journal` records every pinning that pinned something (first boot, re-pins)
 *   and is never pruned.
 */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial schema',
    sql: `
CREATE TABLE blobs (
  digest BLOB PRIMARY KEY,          -- 32 raw bytes of sha256 over the canonical JSON
  data   BLOB NOT NULL              -- deflate-raw of the canonical JSON
);

CREATE TABLE baselines (
  image_id    TEXT PRIMARY KEY,
  digest      TEXT NOT NULL,        -- sha256:<hex> over the canonical baseline without its signature
  key_id      TEXT,                 -- signing key id, NULL when unsigned
  head        BLOB NOT NULL,        -- deflate-raw canonical JSON of the baseline minus its sections
  d_packages  BLOB, d_files BLOB, d_processes BLOB, d_ports BLOB,
  received_at INTEGER NOT NULL
);

CREATE TABLE strings (
  id   INTEGER PRIMARY KEY,
  text TEXT NOT NULL UNIQUE
);

CREATE TABLE states (
  id   INTEGER PRIMARY KEY,
  root BLOB NOT NULL UNIQUE,        -- 32 raw bytes of the root digest
  d_packages BLOB, d_files BLOB, d_processes BLOB, d_ports BLOB
);

CREATE TABLE hosts (
  rowid       INTEGER PRIMARY KEY,
  id          BLOB NOT NULL UNIQUE, -- 16 raw bytes when 32 lowercase hex digits, else the text
  hostname    TEXT NOT NULL,
  image       INTEGER,              -- strings.id of the image id
  role        INTEGER,              -- strings.id of the role
  key_hash    BLOB NOT NULL,        -- first 16 bytes of the sha256 of the node key's secret part; the key is never stored
  enrolled_at INTEGER NOT NULL,
  epoch       INTEGER NOT NULL DEFAULT 1, -- enrollments so far
  last_seq    INTEGER NOT NULL DEFAULT 0,
  last_seen   INTEGER,              -- ms since epoch of the last accepted report
  baseline    INTEGER,              -- strings.id of the digest of the baseline its findings were computed against
  state       INTEGER,              -- states.id of the last stored state
  findings    INTEGER NOT NULL DEFAULT 0,
  machine_id  TEXT,                 -- of the first accepted report ('' = the host id); a key used elsewhere is refused
  unread      TEXT                  -- JSON of the last full manifest's unread list; NULL when empty
);

CREATE TABLE host_deltas (
  host    INTEGER NOT NULL REFERENCES hosts(rowid) ON DELETE CASCADE,
  section TEXT NOT NULL,
  base    BLOB NOT NULL,              -- digest of the section the delta applies to
  delta   BLOB NOT NULL,              -- digest of the delta blob
  PRIMARY KEY (host, section)
) WITHOUT ROWID;

CREATE TABLE findings (
  host       INTEGER NOT NULL REFERENCES hosts(rowid) ON DELETE CASCADE,
  kind       TEXT NOT NULL,
  key        TEXT NOT NULL,
  change     TEXT NOT NULL,
  data       BLOB NOT NULL,           -- the Finding as deflate-raw JSON
  first_seen INTEGER NOT NULL,
  last_seen  INTEGER NOT NULL,
  PRIMARY KEY (host, kind, key, change)
) WITHOUT ROWID;

CREATE TABLE history (
  host      INTEGER NOT NULL REFERENCES hosts(rowid) ON DELETE CASCADE,
  epoch     INTEGER NOT NULL,
  first_seq INTEGER NOT NULL,
  last_seq  INTEGER NOT NULL,
  first_at  INTEGER NOT NULL,       -- ms since epoch
  last_at   INTEGER NOT NULL,
  state     INTEGER NOT NULL,       -- states.id
  PRIMARY KEY (host, epoch, first_seq)
) WITHOUT ROWID;
`,
  },
  {
    version: 2,
    name: 'untrusted claims, omitted findings, re-enrollment approvals',
    sql: `
ALTER TABLE hosts ADD COLUMN flags TEXT;           -- JSON list of claims the collector did not trust (role, image); NULL when none
ALTER TABLE hosts ADD COLUMN omitted TEXT;         -- JSON summary of the findings beyond the stored bound; NULL when all are stored
ALTER TABLE hosts ADD COLUMN reenroll_until INTEGER; -- ms since epoch: an operator approved one re-enrollment until then
`,
  },
  {
    version: 3,
    name: 'first-boot pins',
    sql: `
-- When the host's first boot was pinned (ms since epoch); NULL before its first compare
-- against a baseline. A column, not a row: a host whose first boot changed nothing costs a few bytes.
ALTER TABLE hosts ADD COLUMN pinned_at INTEGER;

CREATE TABLE pin_books (
  host      INTEGER PRIMARY KEY REFERENCES hosts(rowid) ON DELETE CASCADE,
  keys      TEXT,                   -- 'verified' | 'trust' | NULL: how the default user's keys were judged last
  instance_keys TEXT                -- JSON of the last report's host.instanceKeys (for a re-pin's compare); NULL when none
);

CREATE TABLE pins (
  host       INTEGER NOT NULL REFERENCES hosts(rowid) ON DELETE CASCADE,
  path       INTEGER NOT NULL,      -- strings.id of the path
  value      BLOB,                  -- blobs.digest of the pinned file entry; NULL when first boot removed the path
  first_seen INTEGER NOT NULL,      -- ms since epoch
  PRIMARY KEY (host, path)
) WITHOUT ROWID;

CREATE TABLE pin_journal (
  id     INTEGER PRIMARY KEY,
  host   INTEGER NOT NULL REFERENCES hosts(rowid) ON DELETE CASCADE,
  at     INTEGER NOT NULL,          -- ms since epoch
  action TEXT NOT NULL,             -- 'first-boot' | 'repin'
  by     TEXT,                      -- who re-pinned, as the operator named themself; NULL for first boot
  reason TEXT,                      -- why (required for a re-pin)
  paths  TEXT NOT NULL              -- JSON list of the paths whose pins were set, changed or dropped
);
CREATE INDEX pin_journal_host ON pin_journal (host, id);
`,
  },
  {
    version: 4,
    name: 'actions ledger',
    // Self-contained: the replacement ledger (server/fleet/actions.ts) and the cloud
    // instance id each host reports, which is how a provider finds what to replace.
    sql: `
CREATE TABLE host_instances (
  host        INTEGER PRIMARY KEY REFERENCES hosts(rowid) ON DELETE CASCADE,
  instance_id TEXT NOT NULL           -- host.instanceId of its last report (e.g. i-0abc...)
);
CREATE INDEX host_instances_id ON host_instances(instance_id);

CREATE TABLE actions (
  id           TEXT PRIMARY KEY,      -- random; also the provider's idempotency token (ClientToken)
  host_id      TEXT NOT NULL,
  hostname     TEXT NOT NULL,
  instance_id  TEXT,
  cohort       TEXT NOT NULL,         -- <imageId>|<role>
  reason       TEXT NOT NULL,
  findings     TEXT NOT NULL,         -- JSON list of { kind, key, change } that made the host a candidate
  provider     TEXT NOT NULL,
  actor        TEXT NOT NULL,         -- who asked: audit, or operator
  forced       TEXT,                  -- the journaled reason of an operator's --force; NULL when guarded
  state        TEXT NOT NULL CHECK (state IN ('planned','started','succeeded','failed','blocked','cancelled','verified')),
  attempts     INTEGER NOT NULL DEFAULT 0,
  provider_ref TEXT,                  -- what the provider calls it (execution id, activity id)
  progress     TEXT,                  -- JSON the provider keeps between steps, so a restart resumes without repeating one
  error        TEXT,                  -- why it failed or was blocked
  owner        TEXT,                  -- the drift audit carrying it out (host:config), while its lease runs
  lease_until  INTEGER,               -- ms since epoch; another audit may take the action over after it
  created_at   INTEGER NOT NULL,      -- ms since epoch, admission time
  updated_at   INTEGER NOT NULL,
  started_at   INTEGER,
  finished_at  INTEGER
);
CREATE INDEX actions_state ON actions(state);
CREATE INDEX actions_host ON actions(host_id, created_at);
CREATE INDEX actions_created ON actions(created_at);

CREATE TABLE action_events (
  action_id TEXT NOT NULL REFERENCES actions(id) ON DELETE CASCADE,
  seq       INTEGER NOT NULL,
  at        INTEGER NOT NULL,
  state     TEXT NOT NULL,
  note      TEXT NOT NULL,
  PRIMARY KEY (action_id, seq)
) WITHOUT ROWID;

CREATE TABLE enforcement (
  id         INTEGER PRIMARY KEY CHECK (id = 1),
  paused     INTEGER NOT NULL,
  reason     TEXT,
  updated_at INTEGER NOT NULL
);
INSERT INTO enforcement (id, paused, reason, updated_at) VALUES (1, 0, NULL, 0);

CREATE TABLE breakers (
  cohort    TEXT PRIMARY KEY,
  opened_at INTEGER NOT NULL,
  reason    TEXT NOT NULL,
  action_id TEXT
);
`,
  },
  {
    version: 5,
    name: 'agentless hosts',
    // Hosts without an agent, posted by a sweep with the admin token (POST /v1/agentless/reports):
    // how they were reached. NULL for a host that enrolled with its own agent.
    sql: `ALTER TABLE hosts ADD COLUMN via TEXT CHECK (via IN ('ssh', 'ssm'));`,
  },
];
