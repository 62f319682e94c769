//! Where offline commands (`plot`, `top`, `detect`) read events from: the
//! history database or an events JSON-lines file, with a time range and
//! filters.

use std::{
    cell::Cell,
    fs::File,
    io::{BufRead, BufReader, Read},
    path::PathBuf,
    rc::Rc,
};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::{
    cmd::history::HistorySpec,
    progress::{Progress, Unit},
    record::{now_ns, read_lines, Record},
    store::{existing_db, Filter, History, HistorySource},
    units::{Cidr, HumanDuration, ProtoArg, TimeArg},
};

/// Input, range and filter options shared by the offline commands.
#[derive(Args, Debug, Clone, Default)]
pub struct SourceArgs {
    /// Read the history database (default path without a value:
    /// /var/lib/fireplot/fireplot.db as root, ./fireplot.db otherwise).
    /// This is the default input.
    #[arg(long, value_name = "PATH", num_args = 0..=1, default_missing_value = "", conflicts_with_all = ["events", "postgres"])]
    pub db: Option<PathBuf>,

    /// Read the fleet's PostgreSQL database (what `fireplot collect`
    /// keeps: every sensor, merged in time order), e.g.
    /// postgres://fireplot@centre:5432/fireplot.
    #[arg(long, value_name = "URL", conflicts_with = "events")]
    pub postgres: Option<String>,

    /// With --postgres: only this sensor's events and alerts.
    #[arg(long, value_name = "NAME", requires = "postgres")]
    pub sensor: Option<String>,

    /// Read an events JSON-lines file (`-` for stdin) instead of the database.
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,

    /// The window ending now (default 24h for the database; the whole file for --events).
    #[arg(long, value_name = "DURATION", conflicts_with_all = ["from", "to"])]
    pub last: Option<HumanDuration>,

    /// Start of the range: RFC 3339, `now`, or how long ago (2h, 3d).
    #[arg(long, value_name = "TIME")]
    pub from: Option<TimeArg>,

    /// End of the range (default now; for --events without --from, the file's end).
    #[arg(long, value_name = "TIME")]
    pub to: Option<TimeArg>,

    /// Only events that arrived on this interface.
    #[arg(long)]
    pub iface: Option<String>,

    /// Only this protocol: tcp, udp, icmp, icmpv6, sctp, udplite, dccp or a
    /// number.
    #[arg(long)]
    pub proto: Option<ProtoArg>,

    /// Only this address family: 4 or 6.
    #[arg(long, value_parser = parse_family)]
    pub family: Option<u8>,

    /// Only sources in this prefix (198.51.100.0/24, 2001:db8::/32).
    #[arg(long, value_name = "CIDR")]
    pub src: Option<Cidr>,
}

/// The input with its range resolved.
pub struct Source {
    input: Input,
    pub filter: Filter,
    iface_name: Option<String>,
    /// What the title calls the input.
    pub label: String,
}

enum Input {
    Db(Box<dyn History>),
    Events(PathBuf),
}

fn open_events(path: &PathBuf) -> Result<Box<dyn BufRead>> {
    open_counted(path, None)
}

/// As [`open_events`], adding the bytes read to `counter` (progress).
fn open_counted(path: &PathBuf, counter: Option<Rc<Cell<u64>>>) -> Result<Box<dyn BufRead>> {
    let read: Box<dyn Read> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(
            File::open(path)
                .with_context(|| format!("cannot open events file `{}`", path.display()))?,
        )
    };
    Ok(Box::new(BufReader::with_capacity(
        1 << 20,
        Counted { read, counter },
    )))
}

/// A reader that counts the bytes it reads.
struct Counted {
    read: Box<dyn Read>,
    counter: Option<Rc<Cell<u64>>>,
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.read.read(buf)?;
        if let Some(c) = &self.counter {
            c.set(c.get() + n as u64);
        }
        Ok(n)
    }
}

impl SourceArgs {
    /// Opens the input and works out the time range.
    pub fn open(&self) -> Result<Source> {
        let mut filter = Filter::range(i64::MIN, i64::MAX);
        filter.family = self.family;
        filter.proto = self.proto.map(|p| p.0);
        filter.src = self.src.map(|c| (c.0, c.1));
        let now = now_ns();
        let (input, label) = match &self.events {
            Some(p) => (Input::Events(p.clone()), p.display().to_string()),
            None => {
                let spec = match &self.postgres {
                    Some(url) => HistorySpec::Postgres {
                        url: url.clone(),
                        sensor: self.sensor.clone(),
                    },
                    None => HistorySpec::Sqlite(existing_db(self.db.as_deref())?),
                };
                let store = spec.open()?;
                if let Some(name) = &self.iface {
                    match store.interface_index(name)? {
                        Some(i) => filter.ifindex = Some(i),
                        None => {
                            bail!("the database has no events recorded from interface `{name}`")
                        }
                    }
                }
                let label = store.label();
                (Input::Db(store), label)
            }
        };
        let (from, to) = match (self.last, self.from, self.to) {
            (Some(l), _, _) => (now - l.0.as_nanos() as i64, now),
            (None, Some(f), t) => (f.0, t.map(|t| t.0).unwrap_or(now)),
            (None, None, t) => {
                match &input {
                    Input::Db(_) => {
                        let to = t.map(|t| t.0).unwrap_or(now);
                        (to - 86_400_000_000_000, to)
                    }
                    Input::Events(p) => {
                        // The file's own span: one pass to find it.
                        let (mut lo, mut hi) = (i64::MAX, i64::MIN);
                        if p.as_os_str() == "-" {
                            bail!("reading stdin needs --from/--to or --last (it cannot be read twice)");
                        }
                        let read = read_lines(
                            open_events(p)?,
                            |r, _| {
                                lo = lo.min(r.ts_ns);
                                hi = hi.max(r.ts_ns);
                            },
                            |_| {},
                        )?;
                        if let Some(e) = read.none_usable(&format!("`{}`", p.display())) {
                            bail!(e);
                        }
                        if read.ok == 0 {
                            // A quiet run writes an empty file: nothing to
                            // replay is a valid answer, said out loud.
                            log::warn!(
                                "`{}` holds no events; using the hour before --to (or now)",
                                p.display()
                            );
                            let to = t.map(|t| t.0).unwrap_or(now);
                            (to - 3_600_000_000_000, to)
                        } else {
                            // Pad so the last event is inside the half-open range.
                            let pad = ((hi - lo) / 50).max(1_000_000_000);
                            (lo - pad, t.map(|t| t.0).unwrap_or(hi + pad))
                        }
                    }
                }
            }
        };
        if from >= to {
            bail!("the range is empty: --from must be before --to");
        }
        filter.from_ns = from;
        filter.to_ns = to;
        Ok(Source {
            input,
            filter,
            iface_name: self.iface.clone(),
            label,
        })
    }
}

impl Source {
    /// Streams the matching records in file or time order. Returns
    /// (records passed to `f`, unreadable lines).
    pub fn for_each(&self, f: impl FnMut(&Record)) -> Result<(u64, u64)> {
        self.for_each_counted(f, None)
    }

    /// As [`Source::for_each`], showing progress as `what` (the
    /// command): a file's bytes read out of its size, or the database's
    /// events done (see [`crate::progress`]).
    pub fn for_each_shown(
        &self,
        what: &'static str,
        quiet: bool,
        mut f: impl FnMut(&Record),
    ) -> Result<(u64, u64)> {
        let file = match &self.input {
            Input::Events(p) => Some(p),
            Input::Db(_) => None,
        };
        let (unit, total) = match file {
            Some(p) => (
                Unit::Bytes,
                std::fs::metadata(p)
                    .ok()
                    .filter(|m| m.is_file())
                    .map(|m| m.len()),
            ),
            None => (Unit::Items("events"), None),
        };
        let mut progress = Progress::start(what, unit, total, quiet);
        let counter: Rc<Cell<u64>> = Rc::default();
        let mut n = 0u64;
        let done = self.for_each_counted(
            |r| {
                n += 1;
                progress.set(if file.is_some() { counter.get() } else { n });
                f(r)
            },
            file.map(|_| counter.clone()),
        );
        progress.finish();
        done
    }

    fn for_each_counted(
        &self,
        mut f: impl FnMut(&Record),
        counter: Option<Rc<Cell<u64>>>,
    ) -> Result<(u64, u64)> {
        match &self.input {
            Input::Db(store) => Ok((store.for_each(&self.filter, |r| f(&r))?, 0)),
            Input::Events(p) => {
                let mut n = 0;
                let read = read_lines(
                    open_counted(p, counter)?,
                    |r, iface| {
                        if let (Some(want), Some(have)) = (&self.iface_name, iface) {
                            if want != have {
                                return;
                            }
                        }
                        if self.filter.matches(&r) {
                            n += 1;
                            f(&r);
                        }
                    },
                    |_| {},
                )?;
                let what = if p.as_os_str() == "-" {
                    "standard input".to_string()
                } else {
                    format!("`{}`", p.display())
                };
                if let Some(e) = read.none_usable(&what) {
                    bail!(e);
                }
                let bad = read.bad;
                if let Some(e) = read.first_bad {
                    log::warn!("{bad} unreadable lines in {what} were skipped (first: {e})");
                }
                Ok((n, bad))
            }
        }
    }

    /// Bins the source into `d`: from a database its pre-binned minutes
    /// where they fit ([`Density::fill`]), from a file every event.
    pub fn fill(&self, d: &mut crate::plot::Density, quiet: bool) -> Result<(u64, u64)> {
        match &self.input {
            Input::Db(store) => Ok((d.fill(store.as_ref(), &self.filter)?, 0)),
            Input::Events(_) => self.for_each_shown("plot", quiet, |r| d.add(r)),
        }
    }

    /// Alerts stored in the database for the range (empty for files).
    /// The store, when the input is one.
    pub fn store(&self) -> Option<&dyn History> {
        match &self.input {
            Input::Db(s) => Some(s.as_ref()),
            Input::Events(_) => None,
        }
    }

    pub fn alerts(&self) -> Result<Vec<(i64, i64, String, String)>> {
        match &self.input {
            Input::Db(store) => Ok(store.alerts(self.filter.from_ns, self.filter.to_ns)?),
            Input::Events(_) => Ok(Vec::new()),
        }
    }
}

fn parse_family(s: &str) -> Result<u8, String> {
    match s.trim_start_matches("ipv") {
        "4" => Ok(4),
        "6" => Ok(6),
        _ => Err(format!("invalid family `{s}`; use 4 or 6")),
    }
}
