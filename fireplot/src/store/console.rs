//! What the web console asks of the store beyond the offline commands:
//! new rows for the live streams, counts for the panels, the last counter
//! summary, the interfaces.

use std::net::IpAddr;

use rusqlite::params;

use fireplot_common::{
    agg::{PREFIX_V4, PREFIX_V6},
    event::{PKT_AGGREGATE, PKT_AGG_ONE_SOURCE},
};

use super::{bytes_addr, Filter, Store, StoreError, COLUMNS};
use crate::record::Record;

impl Store {
    /// The `n` busiest sources matching `filter` (which must have no
    /// source prefix: that one is checked in Rust), and the number of
    /// events. Reads only the source column (a GROUP BY over the source
    /// blobs sorts them all: several times slower than a hash here).
    pub fn top_sources(
        &self,
        filter: &Filter,
        n: usize,
    ) -> Result<(u64, Vec<(Source, u64)>), StoreError> {
        use std::collections::HashMap;
        let sql = format!(
            "SELECT src, n, pkt_flags FROM events WHERE {}",
            filter.sql_where()
        );
        let e = || self.sql("counting sources");
        let mut stmt = self.conn.prepare(&sql).map_err(e())?;
        let mut rows = stmt
            .query(params![filter.from_ns, filter.to_ns])
            .map_err(e())?;
        let mut sources: HashMap<([u8; 16], bool), (u8, u64)> = HashMap::new();
        let mut total = 0u64;
        while let Some(row) = rows.next().map_err(e())? {
            let n = row.get::<_, i64>(1).map_err(e())?.max(0) as u64;
            let flags = row.get::<_, i64>(2).map_err(e())?;
            // An aggregate's source is a prefix unless one source sent it all.
            let agg =
                flags & i64::from(PKT_AGGREGATE) != 0 && flags & i64::from(PKT_AGG_ONE_SOURCE) == 0;
            total += n;
            if let Ok(rusqlite::types::ValueRef::Blob(b)) = row.get_ref(0) {
                let mut key = [0u8; 16];
                let len = b.len().min(16);
                key[..len].copy_from_slice(&b[..len]);
                sources.entry((key, agg)).or_insert((len as u8, 0)).1 += n;
            }
        }
        let mut srcs: Vec<(Source, u64)> = sources
            .into_iter()
            .filter_map(|((k, agg), (len, c))| {
                bytes_addr(Some(&k[..len as usize])).map(|a| {
                    let prefix = agg.then_some(if a.is_ipv4() { PREFIX_V4 } else { PREFIX_V6 });
                    (Source { addr: a, prefix }, c)
                })
            })
            .collect();
        srcs.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        srcs.truncate(n);
        Ok((total, srcs))
    }

    /// The largest event rowid (0 when empty): where a live reader starts.
    pub fn last_rowid(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT coalesce(max(rowid), 0) FROM events", [], |r| {
                r.get(0)
            })
            .map_err(self.sql("reading the last event"))
    }

    /// Up to `limit` events stored after rowid `after`, in rowid order.
    pub fn events_after(&self, after: i64, limit: u32) -> Result<Vec<(i64, Record)>, StoreError> {
        let sql =
            format!("SELECT rowid, {COLUMNS} FROM events WHERE rowid > ?1 ORDER BY rowid LIMIT ?2");
        let mut stmt = self
            .conn
            .prepare_cached(&sql)
            .map_err(self.sql("querying new events"))?;
        let mut rows = stmt
            .query(params![after, limit])
            .map_err(self.sql("querying new events"))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(self.sql("reading events"))? {
            let id: i64 = row.get(0).map_err(self.sql("reading events"))?;
            out.push((id, self.decode(row, 1)?));
        }
        Ok(out)
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
