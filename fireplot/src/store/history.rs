//! The history as the reading commands see it (DESIGN §8: one store
//! trait, two implementations): the embedded SQLite [`Store`] of one
//! router, or the fleet's PostgreSQL (`fleet::pgstore`, which implements
//! this trait). `plot`, `top`, `detect` and `serve` hold a `&dyn History`
//! and do not know which they got: the command chose it (`cmd::history`).

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    path::PathBuf,
};

use super::{
    console::Source,
    tiles::{PortCounts, Tile},
    Filter, Store, StoreError,
};
use crate::record::{GroupBy, Origin, Record};

/// What the reading commands ask of a history.
pub trait History: Send {
    /// What titles and messages call it (a path, a database).
    fn label(&self) -> String;
    /// The matching records in time order (across sensors: merged).
    fn scan(&self, filter: &Filter, f: &mut dyn FnMut(Record)) -> Result<u64, StoreError>;
    /// The matching records in any order (plots, counts).
    fn scan_unordered(
        &self,
        filter: &Filter,
        f: &mut dyn FnMut(&Record),
    ) -> Result<u64, StoreError> {
        self.scan(filter, &mut |r| f(&r))
    }
    /// For a plot: pre-binned minutes where the history has them, events
    /// elsewhere. Without bins, every event.
    fn scan_tiled(
        &self,
        filter: &Filter,
        _tile: &mut dyn FnMut(&Tile),
        event: &mut dyn FnMut(&Record),
    ) -> Result<u64, StoreError> {
        self.scan_unordered(filter, event)
    }
    /// Alert records overlapping a range: (first ns, last ns, kind, JSON).
    fn alerts(
        &self,
        from_ns: i64,
        to_ns: i64,
    ) -> Result<Vec<(i64, i64, String, String)>, StoreError>;
    /// Interface indexes (as records carry them) and names.
    fn interfaces(&self) -> Result<Vec<(u32, String)>, StoreError>;
    fn interface_index(&self, name: &str) -> Result<Option<u32>, StoreError> {
        Ok(self
            .interfaces()?
            .into_iter()
            .find(|(_, n)| n == name)
            .map(|(i, _)| i))
    }
    /// Are there pre-binned counts to plot and count ports from?
    fn has_bins(&self) -> bool {
        false
    }
    /// The fleet sensor a record's interface belongs to (None: one router).
    fn sensor_of(&self, _ifindex: u32) -> Option<String> {
        None
    }
    /// First and last event time.
    fn span(&self) -> Result<Option<(i64, i64)>, StoreError>;
    /// The newest counter summary: (time, interface, JSON).
    fn last_counters(&self) -> Result<Option<(i64, String, String)>, StoreError>;
    /// The live stream's cursor: the newest event's, and events after one.
    fn last_cursor(&self) -> Result<i64, StoreError>;
    fn events_after(&self, after: i64, limit: u32) -> Result<Vec<(i64, Record)>, StoreError>;
    /// Whether a row may become visible with a cursor below the newest
    /// one already visible: several writers commit at once and a lower
    /// cursor can commit last (PostgreSQL's collectors). Then the live
    /// stream also re-reads the recent gaps below its cursor.
    fn late_rows(&self) -> bool {
        false
    }
    /// `events_after`, and the rows whose cursors lie inside one of `gaps`
    /// (open intervals (lo, hi)), all in cursor order, `limit` at most.
    fn events_after_and_in(
        &self,
        after: i64,
        gaps: &[(i64, i64)],
        limit: u32,
    ) -> Result<Vec<(i64, Record)>, StoreError> {
        let _ = gaps;
        self.events_after(after, limit)
    }
    /// Top (protocol, port)s and the number of events (from per-hour bins
    /// where there are some).
    fn top_ports(&self, filter: &Filter, n: usize) -> Result<(u64, PortCounts), StoreError> {
        let mut ports: HashMap<(u8, u16), u64> = HashMap::new();
        let total = self.scan_unordered(filter, &mut |r| {
            if r.has_ports() {
                *ports.entry((r.proto, r.dport)).or_default() += u64::from(r.count);
            }
        })?;
        let mut v: PortCounts = ports.into_iter().map(|((p, d), c)| (p, d, c)).collect();
        v.sort_by(|x, y| y.2.cmp(&x.2).then((x.0, x.1).cmp(&(y.0, y.1))));
        v.truncate(n);
        Ok((total, v))
    }
    /// Top sources (addresses, or the /24 or /48 of an aggregate).
    fn top_sources(
        &self,
        filter: &Filter,
        n: usize,
    ) -> Result<(u64, Vec<(Source, u64)>), StoreError> {
        let mut sources: HashMap<Source, u64> = HashMap::new();
        let total = self.scan_unordered(filter, &mut |r| {
            if let Some(s) = Source::of(r) {
                *sources.entry(s).or_default() += u64::from(r.count);
            }
        })?;
        let mut v: Vec<_> = sources.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(n);
        Ok((total, v))
    }
    /// Who a source is, as stored.
    fn origin(&self, a: IpAddr) -> Result<Option<Origin>, StoreError>;
    fn sources_where(
        &self,
        country: Option<&str>,
        asn: Option<u32>,
        tag: Option<&str>,
    ) -> Result<HashSet<IpAddr>, StoreError>;
    fn origin_groups(&self, by: GroupBy) -> Result<HashMap<IpAddr, String>, StoreError>;
}

impl dyn History + '_ {
    /// [`History::scan`] with a closure.
    pub fn for_each(&self, filter: &Filter, mut f: impl FnMut(Record)) -> Result<u64, StoreError> {
        self.scan(filter, &mut f)
    }

    /// [`History::scan_unordered`] with a closure.
    pub fn for_each_plot(
        &self,
        filter: &Filter,
        mut f: impl FnMut(&Record),
    ) -> Result<u64, StoreError> {
        self.scan_unordered(filter, &mut f)
    }
}

impl History for Store {
    fn label(&self) -> String {
        self.path.display().to_string()
    }
    fn scan(&self, filter: &Filter, f: &mut dyn FnMut(Record)) -> Result<u64, StoreError> {
        Store::for_each(self, filter, f)
    }
    fn scan_unordered(
        &self,
        filter: &Filter,
        f: &mut dyn FnMut(&Record),
    ) -> Result<u64, StoreError> {
        Store::for_each_plot(self, filter, f)
    }
    fn scan_tiled(
        &self,
        filter: &Filter,
        tile: &mut dyn FnMut(&Tile),
        event: &mut dyn FnMut(&Record),
    ) -> Result<u64, StoreError> {
        Store::for_each_plot_tiled(self, filter, tile, event)
    }
    fn has_bins(&self) -> bool {
        true
    }
    fn alerts(
        &self,
        from_ns: i64,
        to_ns: i64,
    ) -> Result<Vec<(i64, i64, String, String)>, StoreError> {
        Store::alerts(self, from_ns, to_ns)
    }
    fn interfaces(&self) -> Result<Vec<(u32, String)>, StoreError> {
        Store::interfaces(self)
    }
    fn interface_index(&self, name: &str) -> Result<Option<u32>, StoreError> {
        Store::interface_index(self, name)
    }
    fn span(&self) -> Result<Option<(i64, i64)>, StoreError> {
        Store::span(self)
    }
    fn last_counters(&self) -> Result<Option<(i64, String, String)>, StoreError> {
        Store::last_counters(self)
    }
    fn last_cursor(&self) -> Result<i64, StoreError> {
        Store::last_rowid(self)
    }
    fn events_after(&self, after: i64, limit: u32) -> Result<Vec<(i64, Record)>, StoreError> {
        Store::events_after(self, after, limit)
    }
    fn top_ports(&self, filter: &Filter, n: usize) -> Result<(u64, PortCounts), StoreError> {
        Store::top_ports_binned(self, filter, n)
    }
    fn origin(&self, a: IpAddr) -> Result<Option<Origin>, StoreError> {
        Store::origin(self, a)
    }
    fn sources_where(
        &self,
        country: Option<&str>,
        asn: Option<u32>,
        tag: Option<&str>,
    ) -> Result<HashSet<IpAddr>, StoreError> {
        Store::sources_where(self, country, asn, tag)
    }
    fn origin_groups(&self, by: GroupBy) -> Result<HashMap<IpAddr, String>, StoreError> {
        Store::origin_groups(self, by)
    }
}

/// Where a history is, opened anew for each use: the console opens one
/// per request, on its blocking threads. Which backend it is (`--db` or
/// `--postgres`) the command chose.
pub trait HistorySource: Send + Sync + std::fmt::Debug {
    fn open(&self) -> Result<Box<dyn History>, StoreError>;
}

/// A SQLite history file, opened read-only.
#[derive(Clone, Debug)]
pub struct SqliteHistory(pub PathBuf);

impl HistorySource for SqliteHistory {
    fn open(&self) -> Result<Box<dyn History>, StoreError> {
        Ok(Box::new(Store::open_read_only(&self.0)?))
    }
}
