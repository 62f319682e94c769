//! Pre-binned counts for the big views (schema 3).
//!
//! A day of 10 M events is too many rows to read for every page load; the
//! picture of it has a million pixels at most. So [`Store::insert`] also
//! keeps, in the same transaction:
//!
//! - `tiles`: events per (minute, interface, family, protocol, log-port
//!   row), [`ROWS`] rows over the port axis (a row is under a pixel on any
//!   plot up to [`ROWS`] pixels tall), row −1 for port-less events;
//! - `port_hours`: events per (hour, interface, family, protocol, exact
//!   destination port), for the busiest ports of a range.
//!
//! Both are exact counts. A query uses them only for whole minutes (hours)
//! inside its range and after `tiles_since` (the first instant they cover:
//! a database from before schema 3 has none for its old events, and
//! retention moves it forward); the ragged edges are read from the events
//! themselves, so the totals are the same as a scan's.

use std::collections::{BTreeMap, HashMap};

use rusqlite::{params, OptionalExtension, Transaction};

use super::{Filter, Store, StoreError};
use crate::record::Record;

/// The time bin of `tiles`.
pub const TILE_NS: i64 = 60_000_000_000;
/// The time bin of `port_hours`.
pub const HOUR_NS: i64 = 3_600_000_000_000;
/// Rows of the log-port axis in `tiles`.
pub const ROWS: i32 = 1024;
/// The row of TCP/UDP events without a port (fragments) and of port-less protocols.
pub const NO_PORT: i32 = -1;

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
fn bin(ts: i64, size: i64) -> i64 {
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

/// Adds the bins of `records` (within the insert's transaction).
pub(super) fn add(tx: &Transaction<'_>, records: &[Record]) -> rusqlite::Result<()> {
    // In key order, so the upserts walk each B-tree front to back
    // instead of jumping around it (several times faster).
    let mut tiles: BTreeMap<(i64, u32, u8, u8, i32), i64> = BTreeMap::new();
    let mut hours: BTreeMap<(i64, u32, u8, u8, u16), i64> = BTreeMap::new();
    for r in records {
        let row = if r.has_ports() && r.dport != 0 {
            port_row(r.dport)
        } else {
            NO_PORT
        };
        *tiles
            .entry((bin(r.ts_ns, TILE_NS), r.ifindex, r.family, r.proto, row))
            .or_default() += i64::from(r.count);
        if r.has_ports() {
            *hours
                .entry((bin(r.ts_ns, HOUR_NS), r.ifindex, r.family, r.proto, r.dport))
                .or_default() += i64::from(r.count);
        }
    }
    upsert(
        tx,
        "tiles (minute, ifindex, family, proto, row, n)",
        tiles
            .into_iter()
            .map(|((m, i, f, p, row), n)| [m, i as i64, f as i64, p as i64, row as i64, n]),
    )?;
    upsert(
        tx,
        "port_hours (hour, ifindex, family, proto, dport, n)",
        hours
            .into_iter()
            .map(|((h, i, f, p, d), n)| [h, i as i64, f as i64, p as i64, d as i64, n]),
    )?;
    Ok(())
}

/// Adds counts (the last of six values) to `table`'s rows, many rows per
/// statement.
fn upsert(
    tx: &Transaction<'_>,
    table: &str,
    rows: impl Iterator<Item = [i64; 6]>,
) -> rusqlite::Result<()> {
    const PER: usize = 64;
    let sql = |k: usize| {
        format!(
            "INSERT INTO {table} VALUES {} ON CONFLICT DO UPDATE SET n = n + excluded.n",
            vec!["(?,?,?,?,?,?)"; k].join(",")
        )
    };
    let mut batch: Vec<i64> = Vec::with_capacity(PER * 6);
    let mut many = tx.prepare_cached(&sql(PER))?;
    for r in rows {
        batch.extend_from_slice(&r);
        if batch.len() == PER * 6 {
            many.execute(rusqlite::params_from_iter(batch.iter()))?;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        tx.prepare(&sql(batch.len() / 6))?
            .execute(rusqlite::params_from_iter(batch.iter()))?;
    }
    Ok(())
}

/// The first instant the bins cover, as stored in `meta`.
pub(super) fn set_since(conn: &rusqlite::Connection, since: i64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('tiles_since', ?1)",
        params![since.to_string()],
    )?;
    Ok(())
}

/// The `tiles`-condition of a filter's family, protocol and interface.
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
    /// The first instant `tiles` and `port_hours` cover.
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
        filter.src.is_none() && filter.ports.is_none()
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
            "SELECT minute, family, proto, row, n FROM tiles WHERE minute >= ?1 AND minute < ?2{}",
            bin_where(filter)
        );
        let e = || self.sql("reading tiles");
        let mut stmt = self.conn.prepare(&sql).map_err(e())?;
        let mut rows = stmt.query(params![a, b]).map_err(e())?;
        while let Some(r) = rows.next().map_err(e())? {
            let t = Tile {
                mid_ns: r.get::<_, i64>(0).map_err(e())? * TILE_NS + TILE_NS / 2,
                family: r.get(1).map_err(e())?,
                proto: r.get(2).map_err(e())?,
                row: r.get(3).map_err(e())?,
                n: r.get::<_, i64>(4).map_err(e())?.max(0) as u64,
            };
            n += t.n;
            tile(&t);
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
    /// events: whole hours from `port_hours`, the edges from the events.
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
                "SELECT proto, dport, sum(n) FROM port_hours WHERE hour >= ?1 AND hour < ?2{} \
                 GROUP BY proto, dport",
                bin_where(filter)
            );
            let mut stmt = self.conn.prepare(&sql).map_err(e())?;
            let mut rows = stmt.query(params![a, b]).map_err(e())?;
            while let Some(r) = rows.next().map_err(e())? {
                let c = r.get::<_, i64>(2).map_err(e())?.max(0) as u64;
                *ports
                    .entry((r.get(0).map_err(e())?, r.get(1).map_err(e())?))
                    .or_default() += c;
            }
            // Every event of those hours, ports or not, from the tiles.
            let sql = format!(
                "SELECT coalesce(sum(n), 0) FROM tiles WHERE minute >= ?1 AND minute < ?2{}",
                bin_where(filter)
            );
            let per = HOUR_NS / TILE_NS;
            total += self
                .conn
                .query_row(&sql, params![a * per, b * per], |r| r.get::<_, i64>(0))
                .map_err(e())?
                .max(0) as u64;
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
