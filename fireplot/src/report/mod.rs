//! The day as a fireplot's author wrote it up: the day's fireplot, the
//! attacks on our hosts, the top actors (new and recurring), port surges,
//! ports nobody probed in the week before, and the day beside the 7 days
//! before it. Built from the records and the alert records of those eight
//! days ([`Day::add`], [`Day::alert`]); said as text, Markdown or one
//! self-contained HTML file ([`render`]).

mod render;

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::{
    detect::{sets::Distinct, Alert},
    record::{line::Proto, parse_rfc3339_ns, Record},
};
pub use render::{render, Format};

const DAY_NS: i64 = 86_400_000_000_000;

/// Rows per table.
const TOP: usize = 10;

/// One day's counts.
#[derive(Clone, Debug, Default)]
pub struct Totals {
    /// Packets (events, and the packets of aggregates).
    pub probes: u64,
    /// Distinct sources (estimated past 8, ±3 %).
    pub sources: u64,
    /// Distinct (protocol, port)s probed.
    pub ports: u64,
    /// Episodes announced (`started` records).
    pub announced: u64,
    /// Episodes seen (every episode that had a record that day).
    pub episodes: u64,
}

/// One actor's day: a source and kind.
#[derive(Clone, Debug)]
pub struct ActorDay {
    pub kind: String,
    pub source: String,
    pub episodes: u64,
    pub severity: u8,
    pub probes: u64,
    /// Its first episode began before the day: "recurring since".
    pub since: Option<String>,
    /// The latest summary.
    pub summary: String,
}

/// A port nobody probed in the 7 days before.
#[derive(Clone, Debug)]
pub struct NewPort {
    pub proto: u8,
    pub port: u16,
    pub sources: u64,
    pub probes: u64,
}

/// What is gathered of the eight days.
pub struct Day {
    /// Unix ns of the day's 00:00 UTC.
    pub start_ns: i64,
    /// What the input is ("history.db").
    pub label: String,
    /// The day itself, and the 7 days before (oldest first).
    days: [DayCounts; 8],
    /// Ports probed in the 7 days before.
    before_ports: HashSet<(u8, u16)>,
    /// The day's ports and their sources.
    ports_today: HashMap<(u8, u16), (Distinct<256>, u64)>,
    /// The latest record of each episode, by (sensor, id), per day.
    episodes: [BTreeMap<(String, u64), Alert>; 8],
    announced: [u64; 8],
}

#[derive(Default)]
struct DayCounts {
    probes: u64,
    sources: Distinct<1024>,
    ports: HashSet<(u8, u16)>,
}

impl Day {
    /// The day that begins at `start_ns` (00:00 UTC).
    pub fn new(start_ns: i64, label: String) -> Day {
        Day {
            start_ns,
            label,
            days: Default::default(),
            before_ports: HashSet::new(),
            ports_today: HashMap::new(),
            episodes: Default::default(),
            announced: [0; 8],
        }
    }

    /// The range to read: the 7 days before, and the day.
    pub fn range(&self) -> (i64, i64) {
        (self.start_ns - 7 * DAY_NS, self.start_ns + DAY_NS)
    }

    /// Which of the eight days a time is in (7: the day itself).
    fn slot(&self, ts_ns: i64) -> Option<usize> {
        let d = (ts_ns - (self.start_ns - 7 * DAY_NS)).div_euclid(DAY_NS);
        (0..8).contains(&d).then_some(d as usize)
    }

    /// Counts one record of the eight days.
    pub fn add(&mut self, r: &Record) {
        let Some(slot) = self.slot(r.ts_ns) else {
            return;
        };
        let n = u64::from(r.count.max(1));
        let d = &mut self.days[slot];
        d.probes += n;
        if let Some(s) = r.src {
            d.sources.insert(crate::detect::probe::key(s));
        }
        if !r.has_ports() {
            return;
        }
        let port = (r.proto, r.dport);
        if slot < 7 {
            self.before_ports.insert(port);
        } else {
            d.ports.insert(port);
            let e = self.ports_today.entry(port).or_default();
            e.1 += n;
            if let Some(s) = r.src {
                e.0.insert(crate::detect::probe::key(s));
            }
        }
    }

    /// Counts one alert record (stored, or given by detection over a
    /// file) of a sensor ("" for one router).
    pub fn alert(&mut self, sensor: &str, a: Alert) {
        let Some(ts) = parse_rfc3339_ns(&a.last_seen) else {
            return;
        };
        let Some(slot) = self.slot(ts) else {
            return;
        };
        if a.status == "started" {
            self.announced[slot] += 1;
        }
        let key = (sensor.to_string(), a.id);
        self.episodes[slot].insert(key, a);
    }

    /// The eight days' totals, oldest first (the day itself last).
    pub fn totals(&self) -> Vec<Totals> {
        (0..8)
            .map(|i| Totals {
                probes: self.days[i].probes,
                sources: self.days[i].sources.count(),
                ports: if i == 7 {
                    self.days[i].ports.len() as u64
                } else {
                    0
                },
                announced: self.announced[i],
                episodes: self.episodes[i].len() as u64,
            })
            .collect()
    }

    /// The day's episodes of some kinds, most severe and largest first.
    pub fn episodes_of(&self, kinds: &[&str]) -> Vec<&Alert> {
        let mut v: Vec<&Alert> = self.episodes[7]
            .values()
            .filter(|a| kinds.contains(&a.kind.as_str()))
            .collect();
        v.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then(b.probes.cmp(&a.probes))
                .then(a.id.cmp(&b.id))
        });
        v
    }

    /// The day's actors of one source (scans, sweeps, floods...): (new
    /// today, recurring), most severe first.
    pub fn actors(&self) -> (Vec<ActorDay>, Vec<ActorDay>) {
        let mut by: BTreeMap<(String, String), ActorDay> = BTreeMap::new();
        for a in self.episodes[7].values() {
            if a.sources.len() != 1 || matches!(a.kind.as_str(), "port_surge" | "ddos") {
                continue;
            }
            let since = a
                .actor
                .as_ref()
                .filter(|x| parse_rfc3339_ns(&x.since).is_some_and(|t| t < self.start_ns))
                .map(|x| x.since.clone());
            let e = by
                .entry((a.kind.clone(), a.sources[0].clone()))
                .or_insert_with(|| ActorDay {
                    kind: a.kind.clone(),
                    source: a.sources[0].clone(),
                    episodes: 0,
                    severity: 0,
                    probes: 0,
                    since: None,
                    summary: String::new(),
                });
            e.episodes += 1;
            e.probes += a.probes;
            if a.severity >= e.severity {
                e.severity = a.severity;
                e.summary = a.summary.clone();
            }
            if since.is_some() {
                e.since = since;
            }
        }
        let mut all: Vec<ActorDay> = by.into_values().collect();
        all.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then(b.probes.cmp(&a.probes))
                .then(a.source.cmp(&b.source))
        });
        let (mut recurring, mut new): (Vec<_>, Vec<_>) =
            all.into_iter().partition(|a| a.since.is_some());
        new.truncate(TOP);
        recurring.truncate(TOP);
        (new, recurring)
    }

    /// Ports probed today that nobody probed in the 7 days before, most
    /// sources first.
    pub fn new_ports(&self) -> Vec<NewPort> {
        let mut v: Vec<NewPort> = self
            .ports_today
            .iter()
            .filter(|(k, _)| !self.before_ports.contains(k))
            .map(|((proto, port), (s, n))| NewPort {
                proto: *proto,
                port: *port,
                sources: s.count(),
                probes: *n,
            })
            .collect();
        v.sort_by(|a, b| {
            b.sources
                .cmp(&a.sources)
                .then(b.probes.cmp(&a.probes))
                .then((a.proto, a.port).cmp(&(b.proto, b.port)))
        });
        v.truncate(TOP);
        v
    }
}

/// "TCP/7547".
pub fn port_name(proto: u8, port: u16) -> String {
    let p = match Proto::from_number(proto) {
        Proto::Name(n) => n.to_uppercase(),
        Proto::Number(n) => n.to_string(),
    };
    format!("{p}/{port}")
}

#[cfg(test)]
mod tests;
