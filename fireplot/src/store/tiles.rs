//! Pre-binned counts for the big views (schema 3; BLOBs since schema 5).
//!
//! A day of 10 M events is too many rows to read for every page load; the
//! picture of it has a million pixels at most. So [`Store::insert`] also
//! keeps, in the same transaction:
//!
//! - `tile_counts`: events per (minute, interface, family, protocol,
//!   log-port row), [`ROWS`] rows over the port axis (a row is under a
//!   pixel on any plot up to [`ROWS`] pixels tall), row −1 for port-less
//!   events; one table row per minute, interface, family and protocol;
//! - `port_counts`: events per (hour, interface, family, protocol, exact
//!   destination port), for the busiest ports of a range; one table row per
//!   hour, interface, family, protocol and 4,096 ports.
//!
//! Both are exact counts. A query uses them only for whole minutes (hours)
//! inside its range and after `tiles_since` (the first instant they cover:
//! a database from before schema 3 has none for its old events, and
//! retention moves it forward); the ragged edges are read from the events
//! themselves, so the totals are the same as a scan's.

use std::collections::HashMap;

use rusqlite::{params, OptionalExtension};

use super::{Filter, Store, StoreError};
use crate::record::Record;

/// The time bin of `tile_counts`.
pub const TILE_NS: i64 = 60_000_000_000;
/// The time bin of `port_counts`.
pub const HOUR_NS: i64 = 3_600_000_000_000;
/// Rows of the log-port axis in `tile_counts`.
pub const ROWS: i32 = 1024;
/// The row of events of protocols with ports but without a port (fragments)
/// and of port-less protocols.
pub const NO_PORT: i32 = -1;

/// Schema 3 and 4 kept a row per bin; schema 5 moves them to BLOBs.
pub(super) const SCHEMA_V3: &str = "
CREATE TABLE IF NOT EXISTS tiles (
    minute INTEGER NOT NULL, ifindex INTEGER NOT NULL, family INTEGER NOT NULL,
    proto INTEGER NOT NULL, row INTEGER NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (minute, ifindex, family, proto, row)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS port_hours (
    hour INTEGER NOT NULL, ifindex INTEGER NOT NULL, family INTEGER NOT NULL,
    proto INTEGER NOT NULL, dport INTEGER NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (hour, ifindex, family, proto, dport)
) WITHOUT ROWID;
";

/// The log-port row of a destination port: 0 for port 1, `ROWS - 1` for 65535.
pub fn port_row(port: u16) -> i32 {
    let frac = (port.max(1) as f64).ln() / 65535f64.ln();
    (frac * (ROWS - 1) as f64).round() as i32
}

/// Where a row sits on the log axis, 0 (port 1) to 1 (port 65535).
pub fn row_frac(row: i32) -> f64 {
    row.clamp(0, ROWS - 1) as f64 / (ROWS - 1) as f64
}

/// Busiest ports: (protocol, port, events).
pub type PortCounts = Vec<(u8, u16, u64)>;

/// One tile: `n` events in the minute whose middle is `mid_ns`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    pub mid_ns: i64,
    pub family: u8,
    pub proto: u8,
    pub row: i32,
    pub n: u64,
}

/// Floor division for bins (timestamps before 1970 stay in order).
pub(super) fn bin(ts: i64, size: i64) -> i64 {
    ts.div_euclid(size)
}

/// The whole bins of `size` inside `[from, to)` and at or after `since`:
/// bins `[a, b)` (empty when a >= b).
fn whole_bins(from: i64, to: i64, since: i64, size: i64) -> (i64, i64) {
    let start = from.max(since);
    let a = bin(start, size) + i64::from(start.rem_euclid(size) != 0);
    let b = bin(to, size);
    (a, b.max(a))
}

/// The tables of the bins from schema 5 on: one row per (minute,
/// interface, family, protocol) holding the counts of every log-port row
/// it has, and one per (hour, interface, family, protocol, page of 4,096
/// ports) holding the counts per port. A batch of 8,192 events used to be
/// up to 16,384 upserted rows (one per distinct bin, with random ports
/// nearly one per event); now it is a few dozen small BLOBs read, merged
/// and written back.
pub(super) const SCHEMA_V5: &str = "
CREATE TABLE IF NOT EXISTS tile_counts (
    minute INTEGER NOT NULL, ifindex INTEGER NOT NULL, family INTEGER NOT NULL,
    proto INTEGER NOT NULL, counts BLOB NOT NULL,
    PRIMARY KEY (minute, ifindex, family, proto)
);
CREATE TABLE IF NOT EXISTS port_counts (
    hour INTEGER NOT NULL, ifindex INTEGER NOT NULL, family INTEGER NOT NULL,
    proto INTEGER NOT NULL, page INTEGER NOT NULL, counts BLOB NOT NULL,
    PRIMARY KEY (hour, ifindex, family, proto, page)
);
";

/// Bytes per entry of a counts BLOB: a u16 key and a u64 count, little-endian.
pub(super) const ENTRY: usize = 10;

/// The entries of a counts BLOB, in key order. A `tile_counts` key is
/// the row + 1 (0 for [`NO_PORT`]); a `port_counts` key is the port.
pub(super) fn entries(b: &[u8]) -> impl Iterator<Item = (u16, u64)> + '_ {
    b.chunks_exact(ENTRY).map(|e| {
        (
            u16::from_le_bytes([e[0], e[1]]),
            u64::from_le_bytes(e[2..10].try_into().expect("8 bytes")),
        )
    })
}

/// The first instant the bins cover, as stored in `meta`.
pub(super) fn set_since(conn: &rusqlite::Connection, since: i64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('tiles_since', ?1)",
        params![since.to_string()],
    )?;
    Ok(())
}

/// The bins-condition of a filter's family, protocol and interface.
fn bin_where(f: &Filter) -> String {
    let mut w = String::new();
    if let Some(fam) = f.family {
        w.push_str(&format!(" AND family = {fam}"));
    }
    if let Some(p) = f.proto {
        w.push_str(&format!(" AND proto = {p}"));
    }
    if let Some(i) = f.ifindex {
        w.push_str(&format!(" AND ifindex = {i}"));
    }
    w
}

impl Store {
    /// The first instant `tile_counts` and `port_counts` cover.
    pub fn tiles_since(&self) -> Result<i64, StoreError> {
        let v: Option<String> = self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'tiles_since'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sql("reading tiles_since"))?;
        Ok(v.and_then(|v| v.parse().ok()).unwrap_or(i64::MAX))
    }

    /// Can the bins answer for `filter` (source and port filters need the events)?
    pub fn binnable(filter: &Filter) -> bool {
        filter.src.is_none() && filter.ports.is_none() && filter.sources.is_none()
    }

    /// The plot's data for `filter` as tiles where whole minutes are
    /// covered and as events at the edges: `tile` sees every tile, `event`
    /// every edge event (with the fields of [`Store::for_each_plot`]).
    /// Returns the number of events. The filter must be [`binnable`](Self::binnable).
    pub fn for_each_plot_tiled(
        &self,
        filter: &Filter,
        mut tile: impl FnMut(&Tile),
        mut event: impl FnMut(&Record),
    ) -> Result<u64, StoreError> {
        let (a, b) = whole_bins(filter.from_ns, filter.to_ns, self.tiles_since()?, TILE_NS);
        if a >= b {
            return self.for_each_plot(filter, event);
        }
        let mut n = self.plot_edges(filter, a * TILE_NS, b * TILE_NS, &mut event)?;
        let sql = format!(
            "SELECT minute, family, proto, counts FROM tile_counts WHERE minute >= ?1 AND minute < ?2{}",
            bin_where(filter)
        );
        let e = || self.sql("reading tiles");
        let mut stmt = self.conn.prepare(&sql).map_err(e())?;
        let mut rows = stmt.query(params![a, b]).map_err(e())?;
        while let Some(r) = rows.next().map_err(e())? {
            let mid_ns = r.get::<_, i64>(0).map_err(e())? * TILE_NS + TILE_NS / 2;
            let (family, proto) = (r.get(1).map_err(e())?, r.get(2).map_err(e())?);
            let counts = r.get_ref(3).and_then(|v| Ok(v.as_blob()?)).map_err(e())?;
            for (key, c) in entries(counts) {
                let t = Tile {
                    mid_ns,
                    family,
                    proto,
                    row: i32::from(key) - 1,
                    n: c,
                };
                n += t.n;
                tile(&t);
            }
        }
        Ok(n)
    }

    /// The events of `filter` outside `[a, b)`.
    fn plot_edges(
        &self,
        filter: &Filter,
        a: i64,
        b: i64,
        event: &mut impl FnMut(&Record),
    ) -> Result<u64, StoreError> {
        let mut n = 0;
        if filter.from_ns < a {
            let f = Filter {
                to_ns: a,
                ..filter.clone()
            };
            n += self.for_each_plot(&f, &mut *event)?;
        }
        if b < filter.to_ns {
            let f = Filter {
                from_ns: b,
                ..filter.clone()
            };
            n += self.for_each_plot(&f, &mut *event)?;
        }
        Ok(n)
    }

    /// The busiest (proto, port)s of `filter` (binnable) and the number of
    /// events: whole hours from `port_counts`, the edges from the events.
    pub fn top_ports_binned(
        &self,
        filter: &Filter,
        n: usize,
    ) -> Result<(u64, PortCounts), StoreError> {
        let since = self.tiles_since()?;
        let (a, b) = whole_bins(filter.from_ns, filter.to_ns, since, HOUR_NS);
        let mut ports: HashMap<(u8, u16), u64> = HashMap::new();
        let mut total = 0u64;
        let e = || self.sql("counting ports");
        if a < b {
            let sql = format!(
                "SELECT proto, counts FROM port_counts WHERE hour >= ?1 AND hour < ?2{}",
                bin_where(filter)
            );
            let mut stmt = self.conn.prepare(&sql).map_err(e())?;
            let mut rows = stmt.query(params![a, b]).map_err(e())?;
            while let Some(r) = rows.next().map_err(e())? {
                let proto: u8 = r.get(0).map_err(e())?;
                let counts = r.get_ref(1).and_then(|v| Ok(v.as_blob()?)).map_err(e())?;
                for (port, c) in entries(counts) {
                    *ports.entry((proto, port)).or_default() += c;
                }
            }
            // Every event of those hours, ports or not, from the tiles.
            let sql = format!(
                "SELECT counts FROM tile_counts WHERE minute >= ?1 AND minute < ?2{}",
                bin_where(filter)
            );
            let per = HOUR_NS / TILE_NS;
            let mut stmt = self.conn.prepare(&sql).map_err(e())?;
            let mut rows = stmt.query(params![a * per, b * per]).map_err(e())?;
            while let Some(r) = rows.next().map_err(e())? {
                let counts = r.get_ref(0).and_then(|v| Ok(v.as_blob()?)).map_err(e())?;
                total += entries(counts).map(|(_, c)| c).sum::<u64>();
            }
            total += self.plot_edges(filter, a * HOUR_NS, b * HOUR_NS, &mut |r: &Record| {
                if r.has_ports() {
                    *ports.entry((r.proto, r.dport)).or_default() += u64::from(r.count);
                }
            })?;
        } else {
            total += self.for_each_plot(filter, |r| {
                if r.has_ports() {
                    *ports.entry((r.proto, r.dport)).or_default() += u64::from(r.count);
                }
            })?;
        }
        let mut ports: Vec<(u8, u16, u64)> =
            ports.into_iter().map(|((p, d), c)| (p, d, c)).collect();
        ports.sort_by(|x, y| y.2.cmp(&x.2).then((x.0, x.1).cmp(&(y.0, y.1))));
        ports.truncate(n);
        Ok((total, ports))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_span_the_axis_in_order() {
        assert_eq!(port_row(0), 0);
        assert_eq!(port_row(1), 0);
        assert_eq!(port_row(65535), ROWS - 1);
        let mut last = 0;
        for p in 1..=65535u16 {
            let r = port_row(p);
            assert!(r >= last, "row of {p} went back");
            last = r;
        }
        // The low ports an operator reads apart keep their own rows.
        assert_ne!(port_row(22), port_row(23));
        assert_ne!(port_row(80), port_row(81));
        assert!((row_frac(port_row(443)) - 443f64.ln() / 65535f64.ln()).abs() < 0.5 / 1023.0);
    }

    #[test]
    fn whole_bins_leave_the_edges() {
        let m = TILE_NS;
        assert_eq!(whole_bins(0, 10 * m, i64::MIN, m), (0, 10));
        assert_eq!(whole_bins(1, 10 * m, i64::MIN, m), (1, 10));
        assert_eq!(whole_bins(1, 10 * m - 1, i64::MIN, m), (1, 9));
        assert_eq!(whole_bins(0, 10 * m, 3 * m + 5, m), (4, 10));
        // No whole bin: an empty span.
        let (a, b) = whole_bins(5, m - 1, i64::MIN, m);
        assert!(a >= b);
        let (a, b) = whole_bins(0, 10 * m, i64::MAX, m);
        assert!(a >= b);
        // Before 1970 (tests use small clocks too).
        assert_eq!(whole_bins(-2 * m, 2 * m, i64::MIN, m), (-2, 2));
    }
}
