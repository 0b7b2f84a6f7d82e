/**
 * The collector's schema, as numbered migrations applied in order, each once, each
 * in its own transaction; `schema_migrations` records which ran. Never edit a
 * migration that has shipped: add the next number.
 *
 * Layout (why it is shaped this way):
 * - `blobs` holds sections content-addressed by the raw 32 bytes of their digest,
 *   deflate-compressed canonical JSON. A baseline's sections live here; a clean host
 *   whose section digest equals the baseline's points at the same blob through its
 *   digest alone, so 10,000 clean hosts of one image cost no section bytes at all.
 * - `host_deltas` holds, for a drifted section only, a delta blob (the keys that
 *   differ from the base section plus the removed keys) and the base it applies to;
 *   identical drift on several hosts shares one delta blob.
 * - hosts are referenced by an integer `rowid` everywhere, to keep per-host rows small.
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

CREATE TABLE hosts (
  rowid         INTEGER PRIMARY KEY,
  id            TEXT NOT NULL UNIQUE,
  hostname      TEXT NOT NULL,
  image_id      TEXT,
  role          TEXT,
  node_key_hash BLOB NOT NULL UNIQUE, -- sha256 of the node key; the key itself is never stored
  enrolled_at   INTEGER NOT NULL,
  last_seq      INTEGER NOT NULL DEFAULT 0,
  last_seen     INTEGER,              -- ms since epoch of the last accepted report
  baseline_digest TEXT,               -- the baseline its findings were computed against
  d_root BLOB, d_packages BLOB, d_files BLOB, d_processes BLOB, d_ports BLOB,
  findings      INTEGER NOT NULL DEFAULT 0,
  machine_id    TEXT,                 -- machine-id of the first accepted report (a key used elsewhere is refused)
  unread        TEXT                  -- JSON of the last full manifest's unread list
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
  data       TEXT NOT NULL,           -- the Finding as JSON
  first_seen INTEGER NOT NULL,
  last_seen  INTEGER NOT NULL,
  PRIMARY KEY (host, kind, key, change)
) WITHOUT ROWID;

CREATE TABLE reports (
  host        INTEGER NOT NULL REFERENCES hosts(rowid) ON DELETE CASCADE,
  seq         INTEGER NOT NULL,
  received_at INTEGER NOT NULL,
  root        BLOB NOT NULL,          -- root digest of the reported state
  accepted    INTEGER NOT NULL,       -- 1: stored (full, partial or unchanged digests)
  kind        TEXT NOT NULL,          -- full | partial | digests
  PRIMARY KEY (host, seq)
) WITHOUT ROWID;
CREATE INDEX reports_received ON reports(received_at);
`,
  },
];
