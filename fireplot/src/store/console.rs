//! What the web console asks of the store beyond the offline commands:
//! new rows for the live streams, counts for the panels, the last counter
//! summary, the interfaces.

use std::net::IpAddr;

use super::{blocks, Store, StoreError};
use crate::record::Record;

impl Store {
    /// The cursor of the last stored event (0 when there is none): where a
    /// live reader starts.
    pub fn last_rowid(&self) -> Result<i64, StoreError> {
        blocks::last_cursor(&self.conn).map_err(self.sql("reading the last event"))
    }

    /// Up to `limit` events stored after cursor `after`, in the order they
    /// were stored, with their cursors.
    pub fn events_after(&self, after: i64, limit: u32) -> Result<Vec<(i64, Record)>, StoreError> {
        blocks::after(&self.conn, after, limit).map_err(self.sql("querying new events"))
    }

    /// The last counter summary stored: (ts_ns, interface, JSON).
    pub fn last_counters(&self) -> Result<Option<(i64, String, String)>, StoreError> {
        use rusqlite::OptionalExtension;
        self.conn
            .query_row(
                "SELECT ts_ns, iface, summary FROM counters ORDER BY ts_ns DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(self.sql("reading counters"))
    }

    /// Names of the interfaces events were recorded from.
    pub fn interfaces(&self) -> Result<Vec<(u32, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT ifindex, name FROM interfaces ORDER BY name")
            .map_err(self.sql("reading interfaces"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(self.sql("reading interfaces"))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(self.sql("reading interfaces"))
    }
}

/// A source in a top list: an address, or the /24 or /48 of an aggregate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Source {
    pub addr: IpAddr,
    pub prefix: Option<u8>,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.prefix {
            Some(len) => write!(f, "{}/{len}", self.addr),
            None => write!(f, "{}", self.addr),
        }
    }
}

impl Source {
    /// The source of a record with one (an aggregate's prefix).
    pub fn of(r: &Record) -> Option<Source> {
        r.src.map(|addr| Source {
            addr,
            prefix: r.src_prefix(),
        })
    }
}
