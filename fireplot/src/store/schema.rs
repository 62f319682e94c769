//! The schema: created on first open, migrated from older versions
//! (1 → 2: fingerprint columns and alerts; 2 → 3: the pre-binned counts;
//! 3 → 4: a packet count per row; 4 → 5: events in blocks and the bins in
//! BLOBs, see [`blocks`](super::blocks), and who the sources are, see
//! [`origins`](super::origins)).

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use super::{bins, blocks, origins, tiles, Store, StoreError, SCHEMA_VERSION};

const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    ts_ns INTEGER NOT NULL, family INTEGER NOT NULL, proto INTEGER NOT NULL,
    src BLOB, dst BLOB, sport INTEGER NOT NULL, dport INTEGER NOT NULL,
    tcp_flags INTEGER NOT NULL, ttl INTEGER NOT NULL, len INTEGER NOT NULL,
    class INTEGER NOT NULL, ifindex INTEGER NOT NULL,
    icmp_type INTEGER NOT NULL, icmp_code INTEGER NOT NULL, pkt_flags INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts_ns);
CREATE TABLE IF NOT EXISTS counters (ts_ns INTEGER NOT NULL, iface TEXT NOT NULL, summary TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS interfaces (ifindex INTEGER PRIMARY KEY, name TEXT NOT NULL);
";

const MIGRATE_V1_TO_V2: &str = "
ALTER TABLE events ADD COLUMN ip_id INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN tcp_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN tcp_window INTEGER NOT NULL DEFAULT 0;
CREATE TABLE IF NOT EXISTS alerts (
    first_seen_ns INTEGER NOT NULL, last_seen_ns INTEGER NOT NULL,
    kind TEXT NOT NULL, json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_ts ON alerts (first_seen_ns);
";

impl Store {
    pub(super) fn version(&self) -> Result<i64, StoreError> {
        let has_meta: bool = self
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'meta'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(self.sql("reading the schema"))?
            > 0;
        if !has_meta {
            return Ok(0);
        }
        let v: Option<String> = self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sql("reading the schema version"))?;
        Ok(v.and_then(|v| v.parse().ok()).unwrap_or(0))
    }

    pub(super) fn setup(&mut self) -> Result<(), StoreError> {
        self.setup_upto(SCHEMA_VERSION)
    }

    /// Creates or migrates the schema up to version `upto` (tests build
    /// old databases with it).
    fn setup_upto(&mut self, upto: i64) -> Result<(), StoreError> {
        self.conn
            .execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 2000;")
            .map_err(self.sql("setting WAL mode"))?;
        let v = self.version()?;
        if v > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: self.path.clone(),
                found: v,
            });
        }
        if v == 0 {
            self.conn
                .execute_batch(SCHEMA_V1)
                .map_err(self.sql("creating the schema"))?;
            self.set_version(1)?;
        }
        if v <= 1 && upto >= 2 {
            self.migrate("migrating to schema 2", 2, |tx| {
                tx.execute_batch(MIGRATE_V1_TO_V2)
            })?;
        }
        if v <= 2 && upto >= 3 {
            // The bins cover what comes from now on: a new database from
            // the start, an old one after its last event (its past is
            // read from the events, as before).
            self.migrate("migrating to schema 3", 3, |tx| {
                tx.execute_batch(tiles::SCHEMA_V3)?;
                let since: Option<i64> =
                    tx.query_row("SELECT max(ts_ns) FROM events", [], |r| r.get(0))?;
                tiles::set_since(tx, since.map_or(i64::MIN, |t| t.saturating_add(1)))
            })?;
        }
        if v <= 3 && upto >= 4 {
            // Every row so far was one packet.
            self.migrate("migrating to schema 4", 4, |tx| {
                tx.execute_batch("ALTER TABLE events ADD COLUMN n INTEGER NOT NULL DEFAULT 1;")
            })?;
        }
        if v <= 4 && upto >= 5 {
            // The rows into blocks, the bins into BLOBs, in one
            // transaction: an interrupted migration leaves schema 4.
            if v >= 1 {
                log::info!(
                    "migrating {} to schema 5 (events in blocks); a large history takes a while",
                    self.path.display()
                );
            }
            self.migrate("migrating to schema 5", 5, |tx| {
                tx.execute_batch(blocks::SCHEMA_V5)?;
                tx.execute_batch(tiles::SCHEMA_V5)?;
                tx.execute_batch(origins::SCHEMA)?;
                blocks::migrate_rows(tx)?;
                tx.execute_batch("DROP TABLE events;")?;
                bins::migrate_bins(tx)
            })?;
        }
        Ok(())
    }

    /// One migration step and the new version, in one transaction.
    fn migrate(
        &mut self,
        action: &'static str,
        to: i64,
        step: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<()>,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let tx = self.conn.transaction();
        tx.and_then(|tx| {
            step(&tx)?;
            tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?1)",
                params![to.to_string()],
            )?;
            tx.commit()
        })
        .map_err(|source| StoreError::Sql {
            path,
            action,
            source,
        })
    }

    fn set_version(&self, v: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?1)",
                params![v.to_string()],
            )
            .map_err(self.sql("writing the schema version"))?;
        Ok(())
    }

    /// Creates a database with the version-1 schema (for migration tests).
    #[doc(hidden)]
    pub fn create_v1(path: &Path) -> Result<(), StoreError> {
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.into(),
            source,
        })?;
        let s = Store {
            conn,
            path: path.into(),
        };
        s.conn
            .execute_batch(SCHEMA_V1)
            .map_err(s.sql("creating the v1 schema"))?;
        s.set_version(1)
    }

    /// Creates (or migrates) a database with the schema of version `v`
    /// (for migration tests).
    #[doc(hidden)]
    pub fn create_at_version(path: &Path, v: i64) -> Result<Store, StoreError> {
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.into(),
            source,
        })?;
        let mut s = Store {
            conn,
            path: path.into(),
        };
        s.setup_upto(v)?;
        Ok(s)
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.version()
    }
}
