//! The history store: an embedded SQLite database (WAL) of events, counter
//! snapshots and alerts, with a versioned schema migrated on open.
//!
//! Events are written in batches, one transaction each, by a dedicated
//! writer thread ([`writer`]) so that ingest never waits on the disk and a
//! failing disk never stops the sensor.

mod console;
mod filter;
mod schema;
pub mod tiles;
pub mod writer;

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use thiserror::Error;

use crate::record::{bytes_addr, Record};

pub use console::Source;
pub use filter::{in_prefix, Filter};

/// The schema version this build writes. Version 1 (the first release) had
/// no `ip_id`/`tcp_seq`/`tcp_window` columns and no `alerts` table; version
/// 2 no pre-binned counts ([`tiles`]), version 3 no packet count per row
/// (`n`: aggregates of a flood stand for many packets).
pub const SCHEMA_VERSION: i64 = 4;

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

/// Events per multi-row INSERT (19 values each, far below SQLite's limit).
const ROWS_PER_INSERT: usize = 64;
const EVENT_PLACEHOLDERS: &str = "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)";

/// Values per event row (`COLUMNS`).
const EVENT_VALUES: usize = 19;

/// Binds one event's values in `COLUMNS` order at parameters `base + 1 ..`,
/// straight from the record (no value is allocated).
fn bind_row(stmt: &mut rusqlite::Statement<'_>, base: usize, r: &Record) -> rusqlite::Result<()> {
    let ints: [i64; 17] = [
        r.ts_ns,
        r.family as i64,
        r.proto as i64,
        r.sport as i64,
        r.dport as i64,
        r.tcp_flags as i64,
        r.ttl as i64,
        r.len as i64,
        r.class as i64,
        r.ifindex as i64,
        r.icmp_type as i64,
        r.icmp_code as i64,
        r.pkt_flags as i64,
        r.ip_id as i64,
        r.tcp_seq as i64,
        r.tcp_window as i64,
        r.count as i64,
    ];
    // COLUMNS: ts, family, proto, src, dst, then the rest in `ints` order.
    for (i, v) in ints[..3].iter().enumerate() {
        stmt.raw_bind_parameter(base + 1 + i, v)?;
    }
    for (i, a) in [&r.src, &r.dst].into_iter().enumerate() {
        let at = base + 4 + i;
        match a {
            Some(IpAddr::V4(v)) => stmt.raw_bind_parameter(at, &v.octets()[..])?,
            Some(IpAddr::V6(v)) => stmt.raw_bind_parameter(at, &v.octets()[..])?,
            None => stmt.raw_bind_parameter(at, rusqlite::types::Null)?,
        }
    }
    for (i, v) in ints[3..].iter().enumerate() {
        stmt.raw_bind_parameter(base + 6 + i, v)?;
    }
    Ok(())
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
        {
            // Many rows per statement: one trip through SQLite's VM per
            // ROWS_PER_INSERT events instead of one per event.
            let many = format!(
                "INSERT INTO events ({COLUMNS}) VALUES {}",
                vec![EVENT_PLACEHOLDERS; ROWS_PER_INSERT].join(",")
            );
            let mut stmt = tx
                .prepare_cached(&many)
                .map_err(err("preparing the insert"))?;
            let mut one = tx
                .prepare_cached(&format!(
                    "INSERT INTO events ({COLUMNS}) VALUES {EVENT_PLACEHOLDERS}"
                ))
                .map_err(err("preparing the insert"))?;
            let mut chunks = records.chunks_exact(ROWS_PER_INSERT);
            for chunk in &mut chunks {
                for (k, r) in chunk.iter().enumerate() {
                    bind_row(&mut stmt, k * EVENT_VALUES, r).map_err(err("inserting events"))?;
                }
                stmt.raw_execute().map_err(err("inserting events"))?;
            }
            for r in chunks.remainder() {
                bind_row(&mut one, 0, r).map_err(err("inserting events"))?;
                one.raw_execute().map_err(err("inserting events"))?;
            }
        }
        tiles::add(&tx, records).map_err(err("binning events"))?;
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
    /// them all: `f` sees one record at a time.
    pub fn for_each(&self, filter: &Filter, mut f: impl FnMut(Record)) -> Result<u64, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM events WHERE {} ORDER BY ts_ns",
            filter.sql_where()
        );
        let mut stmt = self
            .conn
            .prepare(&sql)
            .map_err(self.sql("querying events"))?;
        let mut rows = stmt
            .query(params![filter.from_ns, filter.to_ns])
            .map_err(self.sql("querying events"))?;
        let mut n = 0;
        while let Some(row) = rows.next().map_err(self.sql("reading events"))? {
            let rec = self.decode(row, 0)?;
            if filter.matches(&rec) {
                n += u64::from(rec.count);
                f(rec);
            }
        }
        Ok(n)
    }

    /// Like [`Store::for_each`] but reads only what a plot needs (time,
    /// family, protocol, destination port, packet flags): about twice as
    /// fast on large ranges. Records passed on have the other fields zero.
    pub fn for_each_plot(
        &self,
        filter: &Filter,
        mut f: impl FnMut(&Record),
    ) -> Result<u64, StoreError> {
        if filter.src.is_some() {
            return self.for_each(filter, |r| f(&r));
        }
        let sql = format!(
            "SELECT ts_ns, family, proto, dport, pkt_flags, n FROM events WHERE {}",
            filter.sql_where()
        );
        let mut stmt = self
            .conn
            .prepare(&sql)
            .map_err(self.sql("querying events"))?;
        let mut rows = stmt
            .query(params![filter.from_ns, filter.to_ns])
            .map_err(self.sql("querying events"))?;
        let mut rec = Record {
            ts_ns: 0,
            family: 0,
            proto: 0,
            src: None,
            dst: None,
            sport: 0,
            dport: 0,
            tcp_flags: 0,
            ttl: 0,
            len: 0,
            class: 0,
            ifindex: 0,
            ip_id: 0,
            tcp_seq: 0,
            tcp_window: 0,
            icmp_type: 0,
            icmp_code: 0,
            pkt_flags: 0,
            count: 1,
        };
        let mut n = 0;
        while let Some(row) = rows.next().map_err(self.sql("reading events"))? {
            let e = self.sql("reading events");
            rec.ts_ns = row.get(0).map_err(&e)?;
            rec.family = row.get(1).map_err(&e)?;
            rec.proto = row.get(2).map_err(&e)?;
            rec.dport = row.get(3).map_err(&e)?;
            rec.pkt_flags = row.get(4).map_err(&e)?;
            rec.count = row.get(5).map_err(&e)?;
            n += u64::from(rec.count);
            f(&rec);
        }
        Ok(n)
    }

    /// An events row of `COLUMNS` starting at column `base`.
    fn decode(&self, row: &rusqlite::Row<'_>, base: usize) -> Result<Record, StoreError> {
        let e = self.sql("reading events");
        let addr = |i: usize| {
            bytes_addr(
                row.get_ref(base + i)
                    .ok()
                    .and_then(|v| v.as_blob_or_null().ok().flatten()),
            )
        };
        Ok(Record {
            ts_ns: row.get(base).map_err(&e)?,
            family: row.get(base + 1).map_err(&e)?,
            proto: row.get(base + 2).map_err(&e)?,
            src: addr(3),
            dst: addr(4),
            sport: row.get(base + 5).map_err(&e)?,
            dport: row.get(base + 6).map_err(&e)?,
            tcp_flags: row.get(base + 7).map_err(&e)?,
            ttl: row.get(base + 8).map_err(&e)?,
            len: row.get(base + 9).map_err(&e)?,
            class: row.get(base + 10).map_err(&e)?,
            ifindex: row.get(base + 11).map_err(&e)?,
            icmp_type: row.get(base + 12).map_err(&e)?,
            icmp_code: row.get(base + 13).map_err(&e)?,
            pkt_flags: row.get(base + 14).map_err(&e)?,
            ip_id: row.get(base + 15).map_err(&e)?,
            tcp_seq: row.get(base + 16).map_err(&e)?,
            tcp_window: row.get(base + 17).map_err(&e)?,
            count: row.get(base + 18).map_err(&e)?,
        })
    }

    /// The time span of the stored events, if any.
    pub fn span(&self) -> Result<Option<(i64, i64)>, StoreError> {
        self.conn
            // Apart, each is one step down the time index; together in one
            // SELECT, SQLite scans the table.
            .query_row(
                "SELECT (SELECT min(ts_ns) FROM events), (SELECT max(ts_ns) FROM events)",
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
        let n = self
            .conn
            .execute(
                "DELETE FROM events WHERE rowid IN (SELECT rowid FROM events WHERE ts_ns < ?1 LIMIT ?2)",
                params![before_ns, chunk],
            )
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
                    "DELETE FROM tiles WHERE minute < ?1",
                    params![before_ns.div_euclid(tiles::TILE_NS)],
                )
                .map_err(self.sql("deleting old tiles"))?;
            self.conn
                .execute(
                    "DELETE FROM port_hours WHERE hour < ?1",
                    params![before_ns.div_euclid(tiles::HOUR_NS)],
                )
                .map_err(self.sql("deleting old port counts"))?;
        }
        Ok(n)
    }

    /// Number of stored events.
    pub fn count(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row("SELECT count(*) FROM events", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(self.sql("counting events"))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
pub(crate) mod tests;
