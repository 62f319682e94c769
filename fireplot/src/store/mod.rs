//! The history store: an embedded SQLite database (WAL) of events, counter
//! snapshots and alerts, with a versioned schema migrated on open.
//!
//! Events are written in batches, one transaction each, by a dedicated
//! writer thread ([`writer`]) so that the live sensor never waits on the
//! disk and a failing disk never stops it; a file input waits instead and
//! loses nothing.

mod bins;
mod blocks;
mod console;
mod filter;
mod history;
mod origins;
pub(crate) use origins::split_tags;
mod schema;
pub mod tiles;
pub mod writer;

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use thiserror::Error;

use crate::record::{bytes_addr, Record};

pub use console::Source;
pub use filter::{in_prefix, Filter};
pub use history::{History, HistorySource, SqliteHistory};
/// The fixed-width event row (72 bytes, little-endian) of the store's
/// blocks, also what the fleet sends over NATS.
pub(crate) mod row {
    pub(crate) use super::blocks::{decode, encode, ROW};
}

/// The schema version this build writes. Version 1 (the first release) had
/// no `ip_id`/`tcp_seq`/`tcp_window` columns and no `alerts` table; version
/// 2 no pre-binned counts ([`tiles`]), version 3 no packet count per row
/// (`n`: aggregates of a flood stand for many packets), version 4 one row
/// per event and per bin (see [`blocks`]).
pub const SCHEMA_VERSION: i64 = 5;

/// Errors of the history store.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The file could not be opened or is not a database.
    #[error("cannot open history database `{path}`")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// There is no database at that path.
    #[error("no history database at `{path}`; pass --db PATH or --events FILE")]
    Missing { path: PathBuf },
    /// The database is from a newer fireplot.
    #[error("history database `{path}` has schema version {found}, newer than this fireplot's {SCHEMA_VERSION}")]
    TooNew { path: PathBuf, found: i64 },
    /// A statement failed (disk full, locked, corrupt, read-only).
    #[error("history database `{path}`: {action} failed")]
    Sql {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    /// A statement on the fleet's PostgreSQL failed.
    #[error("PostgreSQL {what}")]
    Postgres {
        what: String,
        #[source]
        source: tokio_postgres::Error,
    },
    /// The fleet's PostgreSQL could not be reached.
    #[error("PostgreSQL at `{url}`: cannot connect")]
    PostgresConnect {
        /// Without its password.
        url: String,
        #[source]
        source: tokio_postgres::Error,
    },
    /// The runtime that drives the PostgreSQL client could not start.
    #[error("PostgreSQL: cannot start the client's runtime")]
    PostgresRuntime(#[source] std::io::Error),
    /// The database has no fireplot schema (or it cannot be read).
    #[error("PostgreSQL at `{url}`: no fireplot data here (no fireplot_schema table): run `fireplot collect` into it first")]
    NotFleet {
        url: String,
        #[source]
        source: tokio_postgres::Error,
    },
    /// The fleet's database is from a newer fireplot.
    #[error(
        "PostgreSQL at `{url}`: schema version {found} is newer than this fireplot's {supported}"
    )]
    PostgresTooNew {
        url: String,
        found: i32,
        supported: i32,
    },
    /// The fireplot schema table is there but empty.
    #[error("PostgreSQL at `{url}`: the fireplot schema is empty")]
    PostgresEmpty { url: String },
    /// `--sensor` names no sensor of the fleet.
    #[error("PostgreSQL at `{url}`: no sensor `{name}` (known: {known:?})")]
    NoSensor {
        url: String,
        name: String,
        known: Vec<String>,
    },
}

impl StoreError {
    /// The filesystem is full (SQLite says SQLITE_FULL when a write
    /// fails with ENOSPC).
    pub fn is_disk_full(&self) -> bool {
        let source = match self {
            StoreError::Open { source, .. } | StoreError::Sql { source, .. } => source,
            _ => return false,
        };
        // A full tmpfs also fails growing the WAL's shared memory.
        let shm = matches!(source, rusqlite::Error::SqliteFailure(e, _)
            if e.extended_code == rusqlite::ffi::SQLITE_IOERR_SHMSIZE);
        shm || source.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)
    }
}

/// Opening for a file input: a full disk is not an error yet (the
/// writer waits for space, `--store-wait`); anything else is.
pub fn open_waiting(path: &Path) -> Result<(), StoreError> {
    match Store::open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.is_disk_full() => {
            log::warn!(
                "{}: the disk is full; waiting for space",
                crate::error_chain(&e)
            );
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// The default database path for a daemon: `/var/lib/fireplot/fireplot.db`
/// as root, else `./fireplot.db`.
pub fn default_path() -> PathBuf {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        PathBuf::from("/var/lib/fireplot/fireplot.db")
    } else {
        PathBuf::from("fireplot.db")
    }
}

/// The database a `--db [PATH]` option names: PATH, or the default one
/// when it has no value. An error if there is no such file.
pub fn existing_db(db: Option<&Path>) -> Result<PathBuf, StoreError> {
    let path = match db {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => default_path(),
    };
    if !path.exists() {
        return Err(StoreError::Missing { path });
    }
    Ok(path)
}

/// An open history database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

const COLUMNS: &str =
    "ts_ns, family, proto, src, dst, sport, dport, tcp_flags, ttl, len, class, ifindex, \
                       icmp_type, icmp_code, pkt_flags, ip_id, tcp_seq, tcp_window, n";

/// A schema-4 events row of `COLUMNS` starting at column `base`.
fn decode_row(row: &rusqlite::Row<'_>, base: usize) -> rusqlite::Result<Record> {
    let addr = |i: usize| {
        bytes_addr(
            row.get_ref(base + i)
                .ok()
                .and_then(|v| v.as_blob_or_null().ok().flatten()),
        )
    };
    Ok(Record {
        ts_ns: row.get(base)?,
        family: row.get(base + 1)?,
        proto: row.get(base + 2)?,
        src: addr(3),
        dst: addr(4),
        sport: row.get(base + 5)?,
        dport: row.get(base + 6)?,
        tcp_flags: row.get(base + 7)?,
        ttl: row.get(base + 8)?,
        len: row.get(base + 9)?,
        class: row.get(base + 10)?,
        ifindex: row.get(base + 11)?,
        icmp_type: row.get(base + 12)?,
        icmp_code: row.get(base + 13)?,
        pkt_flags: row.get(base + 14)?,
        ip_id: row.get(base + 15)?,
        tcp_seq: row.get(base + 16)?,
        tcp_window: row.get(base + 17)?,
        count: row.get(base + 18)?,
    })
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.into(),
            source,
        })?;
        let mut store = Store {
            conn,
            path: path.into(),
        };
        store.setup()?;
        Ok(store)
    }

    /// Opens an existing database read-only (plots, top, detect).
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(
            |source| StoreError::Open {
                path: path.into(),
                source,
            },
        )?;
        let store = Store {
            conn,
            path: path.into(),
        };
        let v = store.version()?;
        if v > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: path.into(),
                found: v,
            });
        }
        if v < SCHEMA_VERSION {
            return Err(StoreError::Sql {
                path: path.into(),
                action: "reading an old schema read-only (open it once read-write to migrate)",
                source: rusqlite::Error::InvalidQuery,
            });
        }
        Ok(store)
    }

    fn sql(&self, action: &'static str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Sql {
            path: self.path.clone(),
            action,
            source,
        }
    }

    /// Inserts events in one transaction.
    pub fn insert(&mut self, records: &[Record]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let err = |action| {
            let path = path.clone();
            move |source| StoreError::Sql {
                path,
                action,
                source,
            }
        };
        let tx = self
            .conn
            .transaction()
            .map_err(err("starting a transaction"))?;
        blocks::append(&tx, records).map_err(err("inserting events"))?;
        bins::add(&tx, records).map_err(err("binning events"))?;
        tx.commit().map_err(err("committing events"))
    }

    /// Remembers an interface name for `--iface` filters.
    pub fn set_interface(&self, ifindex: u32, name: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO interfaces (ifindex, name) VALUES (?1, ?2)",
                params![ifindex, name],
            )
            .map_err(self.sql("recording the interface"))?;
        Ok(())
    }

    /// The ifindex recorded for an interface name.
    pub fn interface_index(&self, name: &str) -> Result<Option<u32>, StoreError> {
        self.conn
            .query_row(
                "SELECT ifindex FROM interfaces WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sql("looking up the interface"))
    }

    /// Stores a counter summary.
    pub fn insert_counters(
        &self,
        ts_ns: i64,
        iface: &str,
        summary_json: &str,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO counters (ts_ns, iface, summary) VALUES (?1, ?2, ?3)",
                params![ts_ns, iface, summary_json],
            )
            .map_err(self.sql("storing counters"))?;
        Ok(())
    }

    /// The highest episode id of the stored alert records (0 when none):
    /// a daemon numbers its episodes on from here.
    pub fn max_alert_id(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row(
                "SELECT COALESCE(MAX(CAST(json_extract(json, '$.id') AS INTEGER)), 0) FROM alerts",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n.max(0) as u64)
            .map_err(self.sql("reading the highest episode id"))
    }

    /// Stores an alert (its JSON line).
    pub fn insert_alert(
        &self,
        first_ns: i64,
        last_ns: i64,
        kind: &str,
        json: &str,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO alerts (first_seen_ns, last_seen_ns, kind, json) VALUES (?1, ?2, ?3, ?4)",
                params![first_ns, last_ns, kind, json],
            )
            .map_err(self.sql("storing an alert"))?;
        Ok(())
    }

    /// Alerts overlapping `[from, to)`: (first_seen_ns, last_seen_ns, kind, json).
    pub fn alerts(
        &self,
        from_ns: i64,
        to_ns: i64,
    ) -> Result<Vec<(i64, i64, String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT first_seen_ns, last_seen_ns, kind, json FROM alerts \
                 WHERE last_seen_ns >= ?1 AND first_seen_ns < ?2 ORDER BY first_seen_ns",
            )
            .map_err(self.sql("reading alerts"))?;
        let rows = stmt
            .query_map(params![from_ns, to_ns], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .map_err(self.sql("reading alerts"))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(self.sql("reading alerts"))
    }

    /// Streams the events matching `filter` in time order, without loading
    /// them all: `f` sees one record at a time. Returns the packets.
    pub fn for_each(&self, filter: &Filter, f: impl FnMut(Record)) -> Result<u64, StoreError> {
        blocks::for_each_ordered(&self.conn, filter, f).map_err(self.sql("querying events"))
    }

    /// The events matching `filter` in no particular order (plots, counts):
    /// no buffering to put blocks in time order. Returns the packets.
    pub fn for_each_plot(
        &self,
        filter: &Filter,
        f: impl FnMut(&Record),
    ) -> Result<u64, StoreError> {
        blocks::for_each_unordered(&self.conn, filter, f).map_err(self.sql("querying events"))
    }

    /// The time span of the stored events, if any.
    pub fn span(&self) -> Result<Option<(i64, i64)>, StoreError> {
        self.conn
            // Apart, each is one step down the time index; together in one
            // SELECT, SQLite scans the table.
            .query_row(
                "SELECT (SELECT min(ts_lo) FROM event_blocks), (SELECT max(ts_hi) FROM event_blocks)",
                [],
                |r| {
                    Ok(
                        match (r.get::<_, Option<i64>>(0)?, r.get::<_, Option<i64>>(1)?) {
                            (Some(a), Some(b)) => Some((a, b)),
                            _ => None,
                        },
                    )
                },
            )
            .map_err(self.sql("reading the time span"))
    }

    /// Deletes up to `chunk` events (and counters, alerts) older than
    /// `before_ns`; returns how many events went. Call repeatedly: small
    /// chunks keep each write transaction short.
    pub fn delete_older(&self, before_ns: i64, chunk: u32) -> Result<usize, StoreError> {
        // The bins of the minute (hour) being cut stop being used first:
        // what is left of it is read from the events.
        if self.tiles_since()? < before_ns {
            tiles::set_since(&self.conn, before_ns).map_err(self.sql("moving tiles_since"))?;
        }
        let n = blocks::delete_older(&self.conn, before_ns, chunk)
            .map_err(self.sql("deleting old events"))?;
        if n < chunk as usize {
            self.conn
                .execute("DELETE FROM counters WHERE ts_ns < ?1", params![before_ns])
                .map_err(self.sql("deleting old counters"))?;
            self.conn
                .execute(
                    "DELETE FROM alerts WHERE last_seen_ns < ?1",
                    params![before_ns],
                )
                .map_err(self.sql("deleting old alerts"))?;
            // Whole bins before the cut.
            self.conn
                .execute(
                    "DELETE FROM tile_counts WHERE minute < ?1",
                    params![before_ns.div_euclid(tiles::TILE_NS)],
                )
                .map_err(self.sql("deleting old tiles"))?;
            self.conn
                .execute(
                    "DELETE FROM port_counts WHERE hour < ?1",
                    params![before_ns.div_euclid(tiles::HOUR_NS)],
                )
                .map_err(self.sql("deleting old port counts"))?;
        }
        Ok(n)
    }

    /// Number of stored events.
    pub fn count(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row("SELECT coalesce(sum(rows), 0) FROM event_blocks", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(self.sql("counting events"))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod tests_writer;
